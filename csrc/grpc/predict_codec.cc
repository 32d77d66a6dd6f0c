#include "grpc/predict_codec.h"

#include <cstring>
#include <limits>
#include <type_traits>

namespace fastserve {
namespace {

// A tensor of `dtype` and `shape` viewing `count` elements at `data` (owned by `owner`).
Tensor view(DataType dtype, std::vector<std::int64_t> shape, const void* data,
            std::size_t bytes, const std::shared_ptr<const void>& owner) {
  Tensor tensor;
  tensor.dtype = dtype;
  tensor.shape = std::move(shape);
  tensor.owner = owner;
  tensor.data = data;
  tensor.bytes = bytes;
  return tensor;
}

// Narrowing copy from a repeated field of a wider type (int_val for int8, say).
template <typename To, typename Field>
Tensor narrowed(DataType dtype, std::vector<std::int64_t> shape, const Field& values) {
  Tensor tensor = Tensor::allocate(dtype, std::move(shape));
  To* out = static_cast<To*>(tensor.mutable_data());
  for (int i = 0; i < values.size(); ++i) out[i] = static_cast<To>(values.Get(i));
  return tensor;
}

template <typename T, typename Field>
std::optional<Tensor> same(DataType dtype, std::vector<std::int64_t> shape, const Field& values,
                           std::int64_t count, const std::shared_ptr<const void>& owner) {
  static_assert(std::is_same_v<typename Field::value_type, T>);
  if (values.size() != count) return std::nullopt;
  return view(dtype, std::move(shape), values.data(), sizeof(T) * values.size(), owner);
}

template <typename Field>
void append(Field* field, const void* data, std::size_t count) {
  using T = typename Field::value_type;
  const T* values = static_cast<const T*>(data);
  field->Add(values, values + count);
}

template <typename From, typename Field>
void append_widened(Field* field, const void* data, std::size_t count) {
  const From* values = static_cast<const From*>(data);
  field->Reserve(static_cast<int>(count));
  for (std::size_t i = 0; i < count; ++i) field->AddAlreadyReserved(values[i]);
}

}  // namespace

std::optional<Tensor> decode_tensor(const wire::TensorProto& proto,
                                    const std::shared_ptr<const void>& owner,
                                    std::int64_t max_bytes, int max_rank) {
  const auto dtype = static_cast<DataType>(proto.dtype());
  const std::size_t size = element_size(dtype);
  switch (dtype) {
    case DataType::kQint8:
    case DataType::kQuint8:
    case DataType::kQint16:
    case DataType::kQuint16:
    case DataType::kQint32:
      return std::nullopt;
    default:
      if (size == 0 && dtype != DataType::kString) return std::nullopt;
  }
  const auto& shape_proto = proto.tensor_shape();
  if (shape_proto.unknown_rank() || shape_proto.dim_size() > max_rank) return std::nullopt;
  std::vector<std::int64_t> shape;
  shape.reserve(shape_proto.dim_size());
  std::int64_t count = 1;
  for (const auto& dim : shape_proto.dim()) {
    if (dim.size() < 0) return std::nullopt;
    if (dim.size() > 0 && count > std::numeric_limits<std::int64_t>::max() / dim.size()) {
      return std::nullopt;
    }
    count *= dim.size();
    shape.push_back(dim.size());
  }
  const std::int64_t item = size == 0 ? 1 : static_cast<std::int64_t>(size);
  if (count > max_bytes / item) return std::nullopt;

  if (!proto.tensor_content().empty()) {
    if (dtype == DataType::kString) return std::nullopt;
    const std::string& content = proto.tensor_content();
    if (static_cast<std::int64_t>(content.size()) != count * item) return std::nullopt;
    return view(dtype, std::move(shape), content.data(), content.size(), owner);
  }
  switch (dtype) {
    case DataType::kFloat:
      return same<float>(dtype, std::move(shape), proto.float_val(), count, owner);
    case DataType::kDouble:
      return same<double>(dtype, std::move(shape), proto.double_val(), count, owner);
    case DataType::kInt32:
      return same<std::int32_t>(dtype, std::move(shape), proto.int_val(), count, owner);
    case DataType::kInt64:
      return same<std::int64_t>(dtype, std::move(shape), proto.int64_val(), count, owner);
    case DataType::kUint32:
      return same<std::uint32_t>(dtype, std::move(shape), proto.uint32_val(), count, owner);
    case DataType::kUint64:
      return same<std::uint64_t>(dtype, std::move(shape), proto.uint64_val(), count, owner);
    case DataType::kComplex64:
      if (proto.scomplex_val_size() != 2 * count) return std::nullopt;
      return view(dtype, std::move(shape), proto.scomplex_val().data(),
                  sizeof(float) * proto.scomplex_val_size(), owner);
    case DataType::kComplex128:
      if (proto.dcomplex_val_size() != 2 * count) return std::nullopt;
      return view(dtype, std::move(shape), proto.dcomplex_val().data(),
                  sizeof(double) * proto.dcomplex_val_size(), owner);
    case DataType::kBool:
      if (proto.bool_val_size() != count) return std::nullopt;
      return narrowed<bool>(dtype, std::move(shape), proto.bool_val());
    case DataType::kInt8:
      if (proto.int_val_size() != count) return std::nullopt;
      return narrowed<std::int8_t>(dtype, std::move(shape), proto.int_val());
    case DataType::kUint8:
      if (proto.int_val_size() != count) return std::nullopt;
      return narrowed<std::uint8_t>(dtype, std::move(shape), proto.int_val());
    case DataType::kInt16:
      if (proto.int_val_size() != count) return std::nullopt;
      return narrowed<std::int16_t>(dtype, std::move(shape), proto.int_val());
    case DataType::kUint16:
      if (proto.int_val_size() != count) return std::nullopt;
      return narrowed<std::uint16_t>(dtype, std::move(shape), proto.int_val());
    case DataType::kHalf:
    case DataType::kBfloat16:  // both travel as their 16 bits in half_val
      if (proto.half_val_size() != count) return std::nullopt;
      return narrowed<std::uint16_t>(dtype, std::move(shape), proto.half_val());
    case DataType::kString: {
      if (proto.string_val_size() != count) return std::nullopt;
      Tensor tensor;
      tensor.dtype = dtype;
      tensor.shape = std::move(shape);
      tensor.strings.assign(proto.string_val().begin(), proto.string_val().end());
      return tensor;
    }
    default:
      return std::nullopt;
  }
}

bool encode_tensor(const Tensor& tensor, bool as_content, wire::TensorProto* proto) {
  proto->set_dtype(static_cast<wire::DataType>(tensor.dtype));
  auto* shape = proto->mutable_tensor_shape();
  for (std::int64_t dim : tensor.shape) shape->add_dim()->set_size(dim);
  if (tensor.dtype == DataType::kString) {
    for (const std::string& value : tensor.strings) proto->add_string_val(value);
    return true;
  }
  const std::size_t size = element_size(tensor.dtype);
  if (size == 0) return false;
  if (as_content) {
    proto->set_tensor_content(static_cast<const char*>(tensor.data), tensor.bytes);
    return true;
  }
  const std::size_t count = tensor.bytes / size;
  switch (tensor.dtype) {
    case DataType::kFloat: append(proto->mutable_float_val(), tensor.data, count); break;
    case DataType::kDouble: append(proto->mutable_double_val(), tensor.data, count); break;
    case DataType::kInt32:
    case DataType::kQint32: append(proto->mutable_int_val(), tensor.data, count); break;
    case DataType::kInt64: append(proto->mutable_int64_val(), tensor.data, count); break;
    case DataType::kUint32: append(proto->mutable_uint32_val(), tensor.data, count); break;
    case DataType::kUint64: append(proto->mutable_uint64_val(), tensor.data, count); break;
    case DataType::kComplex64: append(proto->mutable_scomplex_val(), tensor.data, 2 * count); break;
    case DataType::kComplex128: append(proto->mutable_dcomplex_val(), tensor.data, 2 * count); break;
    case DataType::kBool: append_widened<bool>(proto->mutable_bool_val(), tensor.data, count); break;
    case DataType::kInt8:
    case DataType::kQint8: append_widened<std::int8_t>(proto->mutable_int_val(), tensor.data, count); break;
    case DataType::kUint8:
    case DataType::kQuint8: append_widened<std::uint8_t>(proto->mutable_int_val(), tensor.data, count); break;
    case DataType::kInt16:
    case DataType::kQint16: append_widened<std::int16_t>(proto->mutable_int_val(), tensor.data, count); break;
    case DataType::kUint16:
    case DataType::kQuint16: append_widened<std::uint16_t>(proto->mutable_int_val(), tensor.data, count); break;
    case DataType::kHalf:
    case DataType::kBfloat16: append_widened<std::uint16_t>(proto->mutable_half_val(), tensor.data, count); break;
    default: return false;
  }
  return true;
}

}  // namespace fastserve
