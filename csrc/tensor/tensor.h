// A tensor the data plane carries between decode, runners and encode: TensorFlow's element
// types by their DataType numbers, a shape, and either a buffer of fixed-size elements or a
// list of byte strings. Plain data: no language runtime, no locks. A Tensor is safe to read
// from many threads at once; writing needs the caller's own synchronization.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace fastserve {

// tensorflow/core/framework/types.proto, by wire value.
enum class DataType : int {
  kInvalid = 0,
  kFloat = 1,
  kDouble = 2,
  kInt32 = 3,
  kUint8 = 4,
  kInt16 = 5,
  kInt8 = 6,
  kString = 7,
  kComplex64 = 8,
  kInt64 = 9,
  kBool = 10,
  kQint8 = 11,
  kQuint8 = 12,
  kQint32 = 13,
  kBfloat16 = 14,
  kQint16 = 15,
  kQuint16 = 16,
  kUint16 = 17,
  kComplex128 = 18,
  kHalf = 19,
  kUint32 = 22,
  kUint64 = 23,
};

// Bytes per element; 0 for strings and for types the data plane does not carry.
std::size_t element_size(DataType dtype);

struct Tensor {
  DataType dtype = DataType::kInvalid;
  std::vector<std::int64_t> shape;
  // Fixed-size elements: `bytes` bytes at `data`, kept alive by `owner` (which may be a
  // vector, a Python object's keeper or a protobuf message: whoever owns the memory).
  std::shared_ptr<const void> owner;
  const void* data = nullptr;
  std::size_t bytes = 0;
  // DT_STRING: one entry per element, row-major.
  std::vector<std::string> strings;

  std::int64_t num_elements() const;

  // A tensor of `dtype` and `shape` owning a zeroed buffer of the right size (fixed-size
  // types), or `num_elements()` empty strings; mutable_data() writes into that buffer.
  static Tensor allocate(DataType dtype, std::vector<std::int64_t> shape);
  void* mutable_data() const { return const_cast<void*>(data); }
};

}  // namespace fastserve
