#include "tensor/tensor.h"

#include <cstring>

namespace fastserve {

std::size_t element_size(DataType dtype) {
  switch (dtype) {
    case DataType::kFloat:
    case DataType::kInt32:
    case DataType::kQint32:
    case DataType::kUint32:
      return 4;
    case DataType::kDouble:
    case DataType::kInt64:
    case DataType::kUint64:
    case DataType::kComplex64:
      return 8;
    case DataType::kComplex128:
      return 16;
    case DataType::kInt16:
    case DataType::kUint16:
    case DataType::kQint16:
    case DataType::kQuint16:
    case DataType::kHalf:
    case DataType::kBfloat16:
      return 2;
    case DataType::kUint8:
    case DataType::kInt8:
    case DataType::kQint8:
    case DataType::kQuint8:
    case DataType::kBool:
      return 1;
    default:
      return 0;
  }
}

std::int64_t Tensor::num_elements() const {
  std::int64_t count = 1;
  for (std::int64_t dim : shape) count *= dim;
  return count;
}

Tensor Tensor::allocate(DataType dtype, std::vector<std::int64_t> shape) {
  Tensor tensor;
  tensor.dtype = dtype;
  tensor.shape = std::move(shape);
  const std::int64_t count = tensor.num_elements();
  if (dtype == DataType::kString) {
    tensor.strings.resize(static_cast<std::size_t>(count));
    return tensor;
  }
  tensor.bytes = static_cast<std::size_t>(count) * element_size(dtype);
  // 64-byte aligned, so that TensorFlow can take the buffer without a copy.
  const std::size_t rounded = (tensor.bytes + 63) / 64 * 64;
  std::shared_ptr<void> buffer(std::aligned_alloc(64, rounded == 0 ? 64 : rounded), std::free);
  std::memset(buffer.get(), 0, rounded == 0 ? 64 : rounded);
  tensor.data = buffer.get();
  tensor.owner = std::move(buffer);
  return tensor;
}

}  // namespace fastserve
