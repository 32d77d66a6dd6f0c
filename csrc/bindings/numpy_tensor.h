// numpy arrays to and from the data plane's Tensor. Binding code: every function here is called
// with the GIL held.
#pragma once

#include <pybind11/pybind11.h>

#include "tensor/tensor.h"

namespace fastserve::binding {

// With the GIL held. A Tensor viewing a C-contiguous array of a supported dtype (the array
// kept alive by the Tensor's owner, whose deleter takes the GIL); other arrays are copied;
// strings (object arrays of bytes or str, numpy S/U) are copied into Tensor::strings.
// `want` != kInvalid: the tensor's dtype must be `want` (cast where numpy can do it safely,
// else std::invalid_argument naming both types). Throws std::invalid_argument otherwise.
Tensor tensor_from_numpy(pybind11::handle array, DataType want = DataType::kInvalid);

// With the GIL held. A numpy array of the tensor (no copy for fixed-size types: the array's
// base keeps the Tensor's owner alive); strings become an object array of bytes.
pybind11::object numpy_from_tensor(const Tensor& tensor);

}  // namespace fastserve::binding
