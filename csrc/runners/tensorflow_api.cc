#include "runners/tensorflow_api.h"

#include <dlfcn.h>

#include <map>
#include <memory>
#include <mutex>

namespace fastserve::tensorflow {
namespace {

struct Loaded {
  Api api{};
  std::string error;  // empty when `api` is complete
};

template <typename Function>
bool resolve(void* library, const char* symbol, Function* slot, std::string* error) {
  dlerror();
  void* found = dlsym(library, symbol);
  if (found == nullptr) {
    const char* why = dlerror();
    *error = std::string("TensorFlow's C API has no symbol ") + symbol + (why ? ": " : "") +
             (why ? why : "");
    return false;
  }
  *slot = reinterpret_cast<Function>(found);
  return true;
}

Loaded load(const std::string& library_path) {
  Loaded loaded;
  // Never dlclose'd: TensorFlow does not support being unloaded, and sessions may outlive
  // whoever loaded it.
  void* library = dlopen(library_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    const char* why = dlerror();
    loaded.error = "cannot load TensorFlow's C API from " + library_path + ": " +
                   (why ? why : "unknown dlopen error");
    return loaded;
  }
  Api& api = loaded.api;
  std::string& error = loaded.error;
#define FASTSERVE_RESOLVE(name) \
  if (!resolve(library, "TF_" #name, &api.name, &error)) {          \
    error = library_path + ": " + error;                                 \
    return loaded;                                                       \
  }
  FASTSERVE_RESOLVE(NewStatus)
  FASTSERVE_RESOLVE(DeleteStatus)
  FASTSERVE_RESOLVE(GetCode)
  FASTSERVE_RESOLVE(Message)
  FASTSERVE_RESOLVE(NewTensor)
  FASTSERVE_RESOLVE(AllocateTensor)
  FASTSERVE_RESOLVE(DeleteTensor)
  FASTSERVE_RESOLVE(TensorType)
  FASTSERVE_RESOLVE(NumDims)
  FASTSERVE_RESOLVE(Dim)
  FASTSERVE_RESOLVE(TensorByteSize)
  FASTSERVE_RESOLVE(TensorData)
  FASTSERVE_RESOLVE(StringInit)
  FASTSERVE_RESOLVE(StringCopy)
  FASTSERVE_RESOLVE(StringGetDataPointer)
  FASTSERVE_RESOLVE(StringGetSize)
  FASTSERVE_RESOLVE(StringDealloc)
  FASTSERVE_RESOLVE(NewSessionOptions)
  FASTSERVE_RESOLVE(DeleteSessionOptions)
  FASTSERVE_RESOLVE(SetConfig)
  FASTSERVE_RESOLVE(NewGraph)
  FASTSERVE_RESOLVE(DeleteGraph)
  FASTSERVE_RESOLVE(GraphOperationByName)
  FASTSERVE_RESOLVE(LoadSessionFromSavedModel)
  FASTSERVE_RESOLVE(SessionRun)
  FASTSERVE_RESOLVE(CloseSession)
  FASTSERVE_RESOLVE(DeleteSession)
#undef FASTSERVE_RESOLVE
  return loaded;
}

}  // namespace

const Api* load_tensorflow_api(const std::string& library_path, std::string* error) {
  // One entry per path asked for, leaked on purpose: a table lives as long as its library.
  static std::mutex* mutex = new std::mutex;
  static auto* tables = new std::map<std::string, std::unique_ptr<Loaded>>;
  const Loaded* loaded;
  {
    std::lock_guard<std::mutex> lock(*mutex);
    auto& slot = (*tables)[library_path];
    if (!slot) slot = std::make_unique<Loaded>(load(library_path));
    loaded = slot.get();
  }
  if (!loaded->error.empty()) {
    if (error != nullptr) *error = loaded->error;
    return nullptr;
  }
  return &loaded->api;
}

}  // namespace fastserve::tensorflow
