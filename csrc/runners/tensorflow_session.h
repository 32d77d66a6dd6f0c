// A SavedModel loaded into a TensorFlow session through TensorFlow's C API
// (TF_LoadSessionFromSavedModel) and run with TF_SessionRun: TensorFlow Serving's own way of
// serving a SavedModel. Never touches Python.
//
// Threads: load() runs on one thread (a load thread; it may take seconds) before any run().
// run() may be called from many threads at once, with or without the GIL (callers should not
// hold it: a run may take long). close() may be called from any thread; it waits for the runs
// in progress, and later runs fail with FAILED_PRECONDITION. The destructor closes, so it waits
// too: whoever drops the last reference must not hold the GIL (the binding's deleter releases
// it when Python drops it).
#pragma once

#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "runners/tensorflow_api.h"
#include "tensor/tensor.h"

namespace fastserve::tensorflow {

// TensorFlow's status: `code` is TF_Code, numbered as gRPC's status codes (0 is OK).
struct Status {
  int code = 0;
  std::string message;
  bool ok() const { return code == 0; }
};

inline constexpr int kInvalidArgument = 3;
inline constexpr int kNotFound = 5;
inline constexpr int kFailedPrecondition = 9;
inline constexpr int kUnimplemented = 12;

class TensorFlowSession {
 public:
  explicit TensorFlowSession(const Api* api) : api_(api) {}
  ~TensorFlowSession();
  TensorFlowSession(const TensorFlowSession&) = delete;
  TensorFlowSession& operator=(const TensorFlowSession&) = delete;

  // Loads the meta graph tagged `tags` of the SavedModel in `export_dir` into a new session
  // configured by `config` (a serialized tensorflow.ConfigProto; empty: TensorFlow's defaults).
  // Call once. On failure the session stays unloaded and run() fails.
  Status load(const std::string& export_dir, const std::vector<std::string>& tags,
              const std::string& config);

  // One TF_SessionRun feeding `feeds` (tensor name such as "x:0", value) and fetching
  // `fetches`; on success `*outputs` holds one Tensor per fetch, in order. Fixed-size inputs
  // whose buffer is 64-byte aligned are handed to TensorFlow without a copy (TensorFlow keeps
  // the Tensor's owner alive while it uses the buffer, which may be after run() returns);
  // others are copied. Fixed-size outputs are TensorFlow's buffers, kept alive by each output
  // Tensor's owner; strings are copied out.
  Status run(const std::vector<std::pair<std::string, Tensor>>& feeds,
             const std::vector<std::string>& fetches, std::vector<Tensor>* outputs) const;

  // Closes and frees the session and its graph; idempotent.
  void close();

 private:
  // The graph output a name such as "op:1" (or "op", output 0) refers to, memoized; false
  // when the graph has no such operation.
  bool resolve(const std::string& name, TF_Output* output) const;
  Status to_tensorflow(const Tensor& tensor, TF_Tensor** out) const;
  Status from_tensorflow(TF_Tensor* tensor, const std::string& name, Tensor* out) const;
  Status take(TF_Status* status) const;

  const Api* api_;
  // Shared by runs, exclusive for close(): a run never sees a closed session.
  mutable std::shared_mutex lifetime_;
  TF_Graph* graph_ = nullptr;
  TF_Session* session_ = nullptr;
  mutable std::shared_mutex names_mutex_;
  mutable std::unordered_map<std::string, TF_Output> names_;
};

}  // namespace fastserve::tensorflow
