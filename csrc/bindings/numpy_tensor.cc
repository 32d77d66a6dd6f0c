#include "bindings/numpy_tensor.h"

#include <memory>

#include <pybind11/gil_safe_call_once.h>
#include <pybind11/numpy.h>

#include <cstring>
#include <stdexcept>
#include <string>

namespace py = pybind11;
using namespace pybind11::literals;

namespace fastserve::binding {
namespace {

// numpy's name of each fixed-size DataType the data plane carries ("bfloat16" is ml_dtypes').
const char* numpy_name(DataType dtype) {
  switch (dtype) {
    case DataType::kFloat: return "float32";
    case DataType::kDouble: return "float64";
    case DataType::kInt32: return "int32";
    case DataType::kUint8: return "uint8";
    case DataType::kInt16: return "int16";
    case DataType::kInt8: return "int8";
    case DataType::kComplex64: return "complex64";
    case DataType::kInt64: return "int64";
    case DataType::kBool: return "bool";
    case DataType::kBfloat16: return "bfloat16";
    case DataType::kUint16: return "uint16";
    case DataType::kComplex128: return "complex128";
    case DataType::kHalf: return "float16";
    case DataType::kUint32: return "uint32";
    case DataType::kUint64: return "uint64";
    default: return nullptr;
  }
}

py::object numpy_module() { return py::module_::import("numpy"); }

// ml_dtypes' bfloat16, imported on first use and kept for the process's life. Not a plain
// function-local static: its initialiser imports a module, which may release the GIL, and a
// second thread would then wait on C++'s static-init guard while holding the GIL the first
// one needs back (a deadlock); pybind11's call-once store waits without the GIL instead.
py::dtype bfloat16_dtype() {
  PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<py::dtype> storage;
  return storage
      .call_once_and_store_result([] {
        return py::dtype::from_args(py::module_::import("ml_dtypes").attr("bfloat16"));
      })
      .get_stored();
}

// numpy's type numbers (NPY_TYPES), stable across numpy 1 and 2. 64-bit integers are NPY_LONG
// and NPY_ULONG (Linux is LP64): numpy's own int64 and uint64, which every library (orjson
// among them) knows; NPY_LONGLONG is a distinct type of the same size that some refuse.
constexpr int kNpyBool = 0, kNpyInt8 = 1, kNpyUint8 = 2, kNpyInt16 = 3, kNpyUint16 = 4,
              kNpyInt32 = 5, kNpyUint32 = 6, kNpyInt64 = 7, kNpyUint64 = 8, kNpyFloat = 11,
              kNpyDouble = 12, kNpyComplex64 = 14, kNpyComplex128 = 15, kNpyHalf = 23;

int numpy_type_number(DataType dtype) {
  switch (dtype) {
    case DataType::kFloat: return kNpyFloat;
    case DataType::kDouble: return kNpyDouble;
    case DataType::kInt32: return kNpyInt32;
    case DataType::kUint8: return kNpyUint8;
    case DataType::kInt16: return kNpyInt16;
    case DataType::kInt8: return kNpyInt8;
    case DataType::kComplex64: return kNpyComplex64;
    case DataType::kInt64: return kNpyInt64;
    case DataType::kBool: return kNpyBool;
    case DataType::kUint16: return kNpyUint16;
    case DataType::kComplex128: return kNpyComplex128;
    case DataType::kHalf: return kNpyHalf;
    case DataType::kUint32: return kNpyUint32;
    case DataType::kUint64: return kNpyUint64;
    default: return -1;
  }
}

py::dtype numpy_dtype(DataType dtype) {
  if (dtype == DataType::kBfloat16) return bfloat16_dtype();
  const int number = numpy_type_number(dtype);
  if (number < 0) {
    throw std::invalid_argument("no numpy type for TensorFlow type " +
                                std::to_string(static_cast<int>(dtype)));
  }
  return py::dtype(number);
}

// By kind and size (not numpy's C type numbers, where int64 is two of them).
DataType data_type_of(const py::dtype& dtype) {
  const char kind = dtype.kind();
  const py::ssize_t size = dtype.itemsize();
  switch (kind) {
    case 'O':
    case 'S':
    case 'U':
      return DataType::kString;
    case 'b':
      return size == 1 ? DataType::kBool : DataType::kInvalid;
    case 'f':
      return size == 2 ? DataType::kHalf
             : size == 4 ? DataType::kFloat
             : size == 8 ? DataType::kDouble
                         : DataType::kInvalid;
    case 'c':
      return size == 8 ? DataType::kComplex64
             : size == 16 ? DataType::kComplex128
                          : DataType::kInvalid;
    case 'i':
      return size == 1 ? DataType::kInt8
             : size == 2 ? DataType::kInt16
             : size == 4 ? DataType::kInt32
             : size == 8 ? DataType::kInt64
                         : DataType::kInvalid;
    case 'u':
      return size == 1 ? DataType::kUint8
             : size == 2 ? DataType::kUint16
             : size == 4 ? DataType::kUint32
             : size == 8 ? DataType::kUint64
                         : DataType::kInvalid;
    case 'V':
      // Only 2-byte user types could be bfloat16: only they import ml_dtypes.
      return size == 2 && dtype.equal(bfloat16_dtype()) ? DataType::kBfloat16
                                                         : DataType::kInvalid;
    default:
      return DataType::kInvalid;
  }
}

std::string describe(const py::dtype& dtype) { return py::str(dtype).cast<std::string>(); }

std::string describe(DataType dtype) {
  if (dtype == DataType::kString) return "string";
  const char* name = numpy_name(dtype);
  return name ? name : "TensorFlow type " + std::to_string(static_cast<int>(dtype));
}

std::shared_ptr<const void> keep_alive(py::object object) {
  return std::shared_ptr<const void>(object.release().ptr(), [](const void* raw) {
    if (!Py_IsInitialized()) return;  // interpreter gone: nothing left to free
    py::gil_scoped_acquire gil;
    Py_DECREF(static_cast<PyObject*>(const_cast<void*>(raw)));
  });
}

void copy_strings(const py::array& array, Tensor* tensor) {
  py::list items = array.attr("ravel")().attr("tolist")();
  tensor->strings.reserve(items.size());
  for (py::handle item : items) {
    if (PyBytes_Check(item.ptr())) {
      char* data;
      Py_ssize_t size;
      PyBytes_AsStringAndSize(item.ptr(), &data, &size);
      tensor->strings.emplace_back(data, static_cast<std::size_t>(size));
    } else if (PyUnicode_Check(item.ptr())) {
      Py_ssize_t size;
      const char* data = PyUnicode_AsUTF8AndSize(item.ptr(), &size);
      if (data == nullptr) throw py::error_already_set();
      tensor->strings.emplace_back(data, static_cast<std::size_t>(size));
    } else {
      throw std::invalid_argument("a string tensor holds a " +
                                  py::str(py::type::handle_of(item).attr("__name__"))
                                      .cast<std::string>() +
                                  ", not bytes or str");
    }
  }
}

}  // namespace

Tensor tensor_from_numpy(py::handle object, DataType want) {
  py::array array = py::isinstance<py::array>(object)
                        ? py::reinterpret_borrow<py::array>(object)
                        : py::array(numpy_module().attr("asarray")(object));
  if (array.dtype().byteorder() == '>') {  // TensorFlow's buffers are in native (little) order
    array = array.attr("astype")(array.dtype().attr("newbyteorder")("="));
  }
  DataType dtype = data_type_of(array.dtype());
  if (dtype == DataType::kInvalid) {
    throw std::invalid_argument("arrays of " + describe(array.dtype()) +
                                " have no TensorFlow type");
  }
  if (want != DataType::kInvalid && want != dtype) {
    bool safe = false;
    if (want != DataType::kString && dtype != DataType::kString && numpy_name(want) != nullptr) {
      py::dtype target = numpy_dtype(want);
      safe = numpy_module().attr("can_cast")(array.dtype(), target, "safe").cast<bool>();
      if (safe) array = array.attr("astype")(target);
    }
    if (!safe) {
      throw std::invalid_argument("cannot cast " + describe(dtype) + " to " + describe(want));
    }
    dtype = want;
  }
  Tensor tensor;
  tensor.dtype = dtype;
  tensor.shape.assign(array.shape(), array.shape() + array.ndim());
  if (dtype == DataType::kString) {
    copy_strings(array, &tensor);
    return tensor;
  }
  const bool viewable = (array.flags() & py::array::c_style) != 0 &&
                        (array.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_) != 0;
  if (!viewable) {
    // A copy into a 64-byte aligned buffer, which TensorFlow then takes as it is.
    Tensor copy = Tensor::allocate(dtype, tensor.shape);
    py::array target(array.dtype(), std::vector<py::ssize_t>(copy.shape.begin(), copy.shape.end()),
                     copy.mutable_data(),
                     py::capsule(copy.mutable_data(), [](void*) {}));
    numpy_module().attr("copyto")(target, array);
    return copy;
  }
  tensor.data = array.data();
  tensor.bytes = static_cast<std::size_t>(array.nbytes());
  tensor.owner = keep_alive(std::move(array));
  return tensor;
}

py::object numpy_from_tensor(const Tensor& tensor) {
  std::vector<py::ssize_t> shape(tensor.shape.begin(), tensor.shape.end());
  py::tuple dims(shape.size());
  for (std::size_t i = 0; i < shape.size(); ++i) dims[i] = py::int_(shape[i]);
  if (tensor.dtype == DataType::kString) {
    py::array result = numpy_module().attr("empty")(py::make_tuple(tensor.strings.size()),
                                                     "dtype"_a = py::dtype("O"));
    auto** cells = static_cast<PyObject**>(result.mutable_data());
    for (std::size_t i = 0; i < tensor.strings.size(); ++i) {
      PyObject* value = PyBytes_FromStringAndSize(tensor.strings[i].data(),
                                                  static_cast<Py_ssize_t>(tensor.strings[i].size()));
      if (value == nullptr) throw py::error_already_set();
      Py_XDECREF(cells[i]);  // numpy.empty of objects holds None
      cells[i] = value;
    }
    return result.attr("reshape")(dims);
  }
  py::dtype dtype = numpy_dtype(tensor.dtype);
  const std::size_t expected = static_cast<std::size_t>(tensor.num_elements()) *
                               static_cast<std::size_t>(dtype.itemsize());
  if (tensor.bytes != expected) {
    throw std::invalid_argument("a tensor of shape with " + std::to_string(tensor.num_elements()) +
                                " elements holds " + std::to_string(tensor.bytes) + " bytes");
  }
  if (tensor.data == nullptr || tensor.bytes == 0) {
    return numpy_module().attr("zeros")(dims, "dtype"_a = dtype);
  }
  // The capsule owns a copy of the tensor's owner until numpy drops the array.
  auto* keeper = std::make_unique<std::shared_ptr<const void>>(tensor.owner).release();
  py::capsule base(keeper, [](void* raw) {
    std::unique_ptr<std::shared_ptr<const void>> owned(
        static_cast<std::shared_ptr<const void>*>(raw));
  });
  py::array result(dtype, shape, {}, tensor.data, base);
  // TensorFlow may share an output's buffer with the graph (a constant) or with an input.
  py::detail::array_proxy(result.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return std::move(result);
}

}  // namespace fastserve::binding
