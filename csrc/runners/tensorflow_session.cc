#include "runners/tensorflow_session.h"

#include <cstdlib>
#include <cstring>
#include <mutex>

namespace fastserve::tensorflow {
namespace {

constexpr int kString = static_cast<int>(DataType::kString);
constexpr std::uintptr_t kAlignment = 64;

// TF_Status, freed with its scope.
class StatusHolder {
 public:
  explicit StatusHolder(const Api* api) : api_(api), status_(api->NewStatus()) {}
  ~StatusHolder() { api_->DeleteStatus(status_); }
  TF_Status* get() const { return status_; }

 private:
  const Api* api_;
  TF_Status* status_;
};

// Frees a string tensor's buffer that this file allocated: each TF_TString, then the buffer.
void free_strings(void* data, std::size_t length, void* arg) {
  const Api* api = static_cast<const Api*>(arg);
  auto* strings = static_cast<TF_TString*>(data);
  for (std::size_t i = 0; i < length / sizeof(TF_TString); ++i) api->StringDealloc(&strings[i]);
  std::free(data);
}

// Releases the owner a zero-copy input kept alive while TensorFlow used its buffer.
void release_owner(void*, std::size_t, void* arg) {
  delete static_cast<std::shared_ptr<const void>*>(arg);
}

}  // namespace

TensorFlowSession::~TensorFlowSession() { close(); }

Status TensorFlowSession::take(TF_Status* status) const {
  Status result;
  result.code = api_->GetCode(status);
  if (result.code != 0) result.message = api_->Message(status);
  return result;
}

Status TensorFlowSession::load(const std::string& export_dir,
                               const std::vector<std::string>& tags, const std::string& config) {
  StatusHolder status(api_);
  TF_SessionOptions* options = api_->NewSessionOptions();
  if (!config.empty()) {
    api_->SetConfig(options, config.data(), config.size(), status.get());
    if (api_->GetCode(status.get()) != 0) {
      api_->DeleteSessionOptions(options);
      return take(status.get());
    }
  }
  std::vector<const char*> tag_pointers;
  for (const std::string& tag : tags) tag_pointers.push_back(tag.c_str());
  TF_Graph* graph = api_->NewGraph();
  TF_Session* session = api_->LoadSessionFromSavedModel(
      options, nullptr, export_dir.c_str(), tag_pointers.data(),
      static_cast<int>(tag_pointers.size()), graph, nullptr, status.get());
  api_->DeleteSessionOptions(options);
  Status result = take(status.get());
  if (!result.ok() || session == nullptr) {
    if (session != nullptr) {
      api_->DeleteSession(session, status.get());
    }
    api_->DeleteGraph(graph);
    if (result.ok()) result = {kFailedPrecondition, "TensorFlow returned no session"};
    return result;
  }
  std::unique_lock<std::shared_mutex> lock(lifetime_);
  graph_ = graph;
  session_ = session;
  return result;
}

void TensorFlowSession::close() {
  std::unique_lock<std::shared_mutex> lock(lifetime_);
  if (session_ == nullptr) return;
  StatusHolder status(api_);
  api_->CloseSession(session_, status.get());
  api_->DeleteSession(session_, status.get());
  api_->DeleteGraph(graph_);
  session_ = nullptr;
  graph_ = nullptr;
}

bool TensorFlowSession::resolve(const std::string& name, TF_Output* output) const {
  {
    std::shared_lock<std::shared_mutex> lock(names_mutex_);
    auto found = names_.find(name);
    if (found != names_.end()) {
      *output = found->second;
      return true;
    }
  }
  std::string operation = name;
  int index = 0;
  const std::size_t colon = name.rfind(':');
  if (colon != std::string::npos && colon + 1 < name.size() &&
      name.find_first_not_of("0123456789", colon + 1) == std::string::npos) {
    operation = name.substr(0, colon);
    index = std::atoi(name.c_str() + colon + 1);
  }
  TF_Operation* found = api_->GraphOperationByName(graph_, operation.c_str());
  if (found == nullptr) return false;
  *output = TF_Output{found, index};
  std::unique_lock<std::shared_mutex> lock(names_mutex_);
  names_.emplace(name, *output);
  return true;
}

Status TensorFlowSession::to_tensorflow(const Tensor& tensor, TF_Tensor** out) const {
  const int dtype = static_cast<int>(tensor.dtype);
  const std::int64_t count = tensor.num_elements();
  const int dims = static_cast<int>(tensor.shape.size());
  if (tensor.dtype == DataType::kString) {
    if (tensor.strings.size() != static_cast<std::size_t>(count)) {
      return {kInvalidArgument, "a string tensor of " + std::to_string(count) +
                                    " elements holds " + std::to_string(tensor.strings.size())};
    }
    const std::size_t length = static_cast<std::size_t>(count) * sizeof(TF_TString);
    const std::size_t rounded = (length + kAlignment - 1) / kAlignment * kAlignment;
    auto* strings = static_cast<TF_TString*>(std::aligned_alloc(kAlignment, rounded ? rounded : kAlignment));
    for (std::int64_t i = 0; i < count; ++i) {
      api_->StringInit(&strings[i]);
      const std::string& value = tensor.strings[static_cast<std::size_t>(i)];
      api_->StringCopy(&strings[i], value.data(), value.size());
    }
    *out = api_->NewTensor(dtype, tensor.shape.data(), dims, strings, length, free_strings,
                           const_cast<Api*>(api_));
    return {};
  }
  const std::size_t size = element_size(tensor.dtype);
  if (size == 0) {
    return {kUnimplemented,
            "TensorFlow's C API runner cannot feed a tensor of type " + std::to_string(dtype)};
  }
  const std::size_t length = static_cast<std::size_t>(count) * size;
  if (tensor.bytes != length || (length > 0 && tensor.data == nullptr)) {
    return {kInvalidArgument, "a tensor of " + std::to_string(count) + " elements of " +
                                  std::to_string(size) + " bytes holds " +
                                  std::to_string(tensor.bytes) + " bytes"};
  }
  const auto address = reinterpret_cast<std::uintptr_t>(tensor.data);
  if (length > 0 && address % kAlignment == 0) {
    auto* keeper = new std::shared_ptr<const void>(tensor.owner);
    *out = api_->NewTensor(dtype, tensor.shape.data(), dims, const_cast<void*>(tensor.data),
                           length, release_owner, keeper);
  } else {
    *out = api_->AllocateTensor(dtype, tensor.shape.data(), dims, length);
    if (*out != nullptr && length > 0) std::memcpy(api_->TensorData(*out), tensor.data, length);
  }
  if (*out == nullptr) return {kInvalidArgument, "TensorFlow refused a tensor"};
  return {};
}

Status TensorFlowSession::from_tensorflow(TF_Tensor* tensor, const std::string& name,
                                          Tensor* out) const {
  // Owns `tensor` from here on, whatever happens.
  std::shared_ptr<const void> owner(static_cast<const void*>(tensor), [api = api_](const void* raw) {
    api->DeleteTensor(static_cast<TF_Tensor*>(const_cast<void*>(raw)));
  });
  const int dtype = api_->TensorType(tensor);
  out->dtype = static_cast<DataType>(dtype);
  const int dims = api_->NumDims(tensor);
  out->shape.resize(static_cast<std::size_t>(dims));
  for (int i = 0; i < dims; ++i) out->shape[static_cast<std::size_t>(i)] = api_->Dim(tensor, i);
  if (dtype == kString) {
    const std::int64_t count = out->num_elements();
    const auto* strings = static_cast<const TF_TString*>(api_->TensorData(tensor));
    out->strings.reserve(static_cast<std::size_t>(count));
    for (std::int64_t i = 0; i < count; ++i) {
      out->strings.emplace_back(api_->StringGetDataPointer(&strings[i]),
                                api_->StringGetSize(&strings[i]));
    }
    return {};
  }
  if (element_size(out->dtype) == 0) {
    return {kUnimplemented, "TensorFlow's C API runner cannot fetch " + name + ": type " +
                                std::to_string(dtype) + " is not one the data plane carries"};
  }
  out->data = api_->TensorData(tensor);
  out->bytes = api_->TensorByteSize(tensor);
  out->owner = std::move(owner);
  return {};
}

Status TensorFlowSession::run(const std::vector<std::pair<std::string, Tensor>>& feeds,
                              const std::vector<std::string>& fetches,
                              std::vector<Tensor>* outputs) const {
  std::shared_lock<std::shared_mutex> lifetime(lifetime_);
  if (session_ == nullptr) return {kFailedPrecondition, "Session has been closed."};
  std::vector<TF_Output> inputs(feeds.size());
  std::vector<TF_Tensor*> values(feeds.size(), nullptr);
  std::vector<TF_Output> wanted(fetches.size());
  // Inputs made so far, freed however this returns (TensorFlow never takes them over).
  struct Inputs {
    const Api* api;
    std::vector<TF_Tensor*>* values;
    ~Inputs() {
      for (TF_Tensor* value : *values)
        if (value != nullptr) api->DeleteTensor(value);
    }
  } cleanup{api_, &values};
  for (std::size_t i = 0; i < feeds.size(); ++i) {
    if (!resolve(feeds[i].first, &inputs[i])) {
      return {kNotFound, "FeedInputs: unable to find feed output " + feeds[i].first};
    }
    Status made = to_tensorflow(feeds[i].second, &values[i]);
    if (!made.ok()) return {made.code, feeds[i].first + ": " + made.message};
  }
  for (std::size_t i = 0; i < fetches.size(); ++i) {
    if (!resolve(fetches[i], &wanted[i])) {
      return {kNotFound, "FetchOutputs node " + fetches[i] + ": not found"};
    }
  }
  std::vector<TF_Tensor*> results(fetches.size(), nullptr);
  StatusHolder status(api_);
  api_->SessionRun(session_, nullptr, inputs.data(), values.data(),
                   static_cast<int>(values.size()), wanted.data(), results.data(),
                   static_cast<int>(results.size()), nullptr, 0, nullptr, status.get());
  Status result = take(status.get());
  std::vector<Tensor> made(fetches.size());
  for (std::size_t i = 0; i < results.size(); ++i) {
    if (results[i] == nullptr) continue;
    Status converted = from_tensorflow(results[i], fetches[i], &made[i]);
    if (result.ok() && !converted.ok()) result = std::move(converted);
  }
  if (result.ok()) *outputs = std::move(made);
  return result;
}

}  // namespace fastserve::tensorflow
