// Python bindings of the TensorFlow C API runner (_core.TensorFlowSession).
#pragma once

#include <pybind11/pybind11.h>

#include <memory>

#include "runners/tensorflow_session.h"

namespace fastserve::binding {

// Adds TensorFlowSession, TensorFlowError and tensorflow_c_api to the module. With the GIL.
void bind_tensorflow(pybind11::module_& m);

// Raises _core.TensorFlowError(code, message): TensorFlow's status code (gRPC's numbering).
// A message quoting a client's bytes (an unparseable tf.Example, say) may not be UTF-8: its
// undecodable bytes become U+FFFD. With the GIL held.
[[noreturn]] void raise_tensorflow_error(const tensorflow::Status& status);

// The C++ session behind a _core.TensorFlowSession object (for native request paths that run
// it without Python); nullptr when `session` is None. With the GIL held; the returned pointer
// may then be used on any thread without it. Throws pybind11::cast_error for other objects.
std::shared_ptr<tensorflow::TensorFlowSession> session_of(pybind11::handle session);

}  // namespace fastserve::binding
