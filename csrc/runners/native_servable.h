// What the native Predict path needs of a version to serve it without Python: its signatures
// (aliases to tensor names and types) and a runner that computes without the GIL.
//
// Threads: never touches Python. Immutable once built (with the GIL, on a load thread); read
// from any thread, with or without the GIL. The runner's own rules apply to run(). Dropping the
// last reference may destroy the batcher or the session, whose destructors wait: see theirs.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "batching/native_batcher.h"
#include "runners/tensorflow_session.h"
#include "tensor/tensor.h"

namespace fastserve {

struct TensorSpec {
  std::string name;  // the tensor inside the servable ("x:0")
  DataType dtype = DataType::kInvalid;
};

struct SignatureSpec {
  std::string method_name;
  std::map<std::string, TensorSpec> inputs;   // by alias
  std::map<std::string, TensorSpec> outputs;  // by alias
};

struct NativeServable {
  std::map<std::string, SignatureSpec> signatures;
  std::shared_ptr<tensorflow::TensorFlowSession> session;
  // Set when the version is batched: runs go through it (its queues, then `session`).
  std::shared_ptr<NativeBatcher> batcher;
  std::string runtime;  // the runtime_latency metric's label ("TF1")
};

}  // namespace fastserve
