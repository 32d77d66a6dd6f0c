// TensorFlow's C API, loaded at run time from the installed tensorflow wheel
// (<tensorflow package>/libtensorflow_cc.so.2, dlopen'd RTLD_NOW|RTLD_LOCAL). fastserve has no
// link-time dependency on TensorFlow and builds without its headers: the few types below are
// declared here from the public C API's shapes (tensorflow/c/c_api.h, tf_tensor.h, tf_status.h,
// tf_tstring.h), as opaque structs and function-pointer types.
//
// Threads: load_tensorflow_api() may be called from any thread, with or without the GIL (it
// never touches Python).
// The table's functions are TensorFlow's own and are thread-safe as TensorFlow documents.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

extern "C" {
struct TF_Status;
struct TF_Tensor;
struct TF_Graph;
struct TF_Operation;
struct TF_Session;
struct TF_SessionOptions;

// A protocol buffer's serialized bytes, as TF_Buffer in c_api.h.
struct TF_Buffer {
  const void* data;
  std::size_t length;
  void (*data_deallocator)(void* data, std::size_t length);
};

// One output of an operation, as TF_Output in c_api.h.
struct TF_Output {
  TF_Operation* oper;
  int index;
};

// A TensorFlow 2.x string element (tf_tstring.h): 24 bytes, 8-byte aligned, opaque here; read
// and written only through the TF_String* functions.
struct alignas(8) TF_TString {
  unsigned char raw[24];
};
}

namespace fastserve::tensorflow {

// TF_DataType's values equal DataType's (types.proto); TF_Code's equal gRPC's status codes.
using TFDataType = int;
using TFCode = int;
using TensorDeallocator = void (*)(void* data, std::size_t length, void* arg);

struct Api {
  TF_Status* (*NewStatus)();
  void (*DeleteStatus)(TF_Status*);
  TFCode (*GetCode)(const TF_Status*);
  const char* (*Message)(const TF_Status*);

  TF_Tensor* (*NewTensor)(TFDataType, const std::int64_t* dims, int num_dims, void* data,
                          std::size_t length, TensorDeallocator deallocator, void* arg);
  TF_Tensor* (*AllocateTensor)(TFDataType, const std::int64_t* dims, int num_dims,
                               std::size_t length);
  void (*DeleteTensor)(TF_Tensor*);
  TFDataType (*TensorType)(const TF_Tensor*);
  int (*NumDims)(const TF_Tensor*);
  std::int64_t (*Dim)(const TF_Tensor*, int index);
  std::size_t (*TensorByteSize)(const TF_Tensor*);
  void* (*TensorData)(const TF_Tensor*);

  void (*StringInit)(TF_TString*);
  void (*StringCopy)(TF_TString*, const char* source, std::size_t size);
  const char* (*StringGetDataPointer)(const TF_TString*);
  std::size_t (*StringGetSize)(const TF_TString*);
  void (*StringDealloc)(TF_TString*);

  TF_SessionOptions* (*NewSessionOptions)();
  void (*DeleteSessionOptions)(TF_SessionOptions*);
  void (*SetConfig)(TF_SessionOptions*, const void* proto, std::size_t length, TF_Status*);
  TF_Graph* (*NewGraph)();
  void (*DeleteGraph)(TF_Graph*);
  TF_Operation* (*GraphOperationByName)(TF_Graph*, const char* name);
  TF_Session* (*LoadSessionFromSavedModel)(const TF_SessionOptions*, const TF_Buffer* run_options,
                                           const char* export_dir, const char* const* tags,
                                           int tags_length, TF_Graph*, TF_Buffer* meta_graph,
                                           TF_Status*);
  void (*SessionRun)(TF_Session*, const TF_Buffer* run_options, const TF_Output* inputs,
                     TF_Tensor* const* input_values, int num_inputs, const TF_Output* outputs,
                     TF_Tensor** output_values, int num_outputs,
                     const TF_Operation* const* targets, int num_targets,
                     TF_Buffer* run_metadata, TF_Status*);
  void (*CloseSession)(TF_Session*, TF_Status*);
  void (*DeleteSession)(TF_Session*, TF_Status*);
};

// The C API loaded from `library_path` (libtensorflow_cc.so.2), or nullptr with `*error` saying
// which file or symbol is missing. Each path is tried once per process (later calls return the
// same table or error); a loaded library is never unloaded.
const Api* load_tensorflow_api(const std::string& library_path, std::string* error);

}  // namespace fastserve::tensorflow
