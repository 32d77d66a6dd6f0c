// The native Predict path: a request whose model version has a native form (a NativeServable:
// a SavedModel on TensorFlow's C API, batched or not) and that passes every check is resolved,
// checked, run and answered here, without Python. Anything the native path does not take
// (an unknown model or signature, a wrong type, a duplicate in the output filter, ...) is left
// unanswered, for the Python path, which words TF Serving's errors: the native path only ever
// answers successes, the runner's own errors and a batched version's batching errors.
//
// Threads: every function may be called from any thread, without the GIL (none touches
// Python). lookup() never blocks; run_natively() blocks while the servable runs (or waits for
// its batch), so call it where waiting is allowed (the server's worker pool).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fastserve/predict.pb.h"
#include "grpc/call.h"
#include "grpc/request_log.h"
#include "runners/native_servable.h"
#include "table/servable_table.h"
#include "tensor/tensor.h"

namespace fastserve {

struct NativePredictOptions {
  bool check_method_names = false;  // --enable_signature_method_name_check
  bool tensor_content = false;      // --enable_serialization_as_tensor_content
  std::shared_ptr<RequestLog> log;  // null: native runs are not recorded
};

// A request's decoded inputs, by alias.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// TF Serving's bound on an error message: longer ones are cut (on a UTF-8 boundary) and end
// in "...TRUNCATED".
std::string truncated_message(std::string message);

// The version the spec names (by number, by label, or the latest) with a handle on it; an
// empty handle when the table has no such version or the spec names no model.
ServableHandle lookup_version(const ServableTable& table, const wire::ModelSpec& spec);

// Serves `request` (whose tensors are `inputs`) with `servable`, the native form of the
// version `handle` holds, when the request passes every check; returns false, having answered
// nothing, when Python should take it. The handle is released before the response is sent.
bool run_natively(Call& call, const wire::PredictRequest& request, const NamedTensors& inputs,
                  const NativeServable& servable, ServableHandle& handle,
                  const NativePredictOptions& options);

}  // namespace fastserve
