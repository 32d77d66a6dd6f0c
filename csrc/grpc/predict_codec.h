// TensorProto <-> Tensor for the native Predict path.
//
// decode() takes the common, well-formed tensors only: a fixed-size or string type, a known
// shape, and either tensor_content of exactly the right size or typed values with exactly one
// value per element. Anything else (TensorFlow's fill rules for short value lists, quantized
// types, limits, malformed shapes) returns nothing, and the caller hands the
// request to the Python path, which words TF Serving's errors; the native path never has to.
//
// Threads: pure functions of their arguments; call from any thread, without the GIL.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "fastserve/tensor.pb.h"
#include "tensor/tensor.h"

namespace fastserve {

// `owner` keeps `proto` alive (a parsed request); the tensor views its memory where the
// layout allows (tensor_content, and typed values stored as the element type).
// `max_bytes` bounds the decoded size; `max_rank` the dimensions.
std::optional<Tensor> decode_tensor(const wire::TensorProto& proto,
                                    const std::shared_ptr<const void>& owner,
                                    std::int64_t max_bytes, int max_rank);

// Fills `proto` from `tensor`: as tensor_content when `as_content` (and not strings), else in
// the typed value field of its type. False for a type it cannot write.
bool encode_tensor(const Tensor& tensor, bool as_content, wire::TensorProto* proto);

}  // namespace fastserve
