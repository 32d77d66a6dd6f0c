// A strong reference to a Python object that C++ may hold and drop on any thread.
//
// Threads: keep() is called with the GIL held; the returned reference may be copied and
// dropped anywhere, with or without the GIL (the last drop takes the GIL to decrement).
#pragma once

#include <memory>

#include <pybind11/pybind11.h>

namespace fastserve::binding {

using PythonRef = std::shared_ptr<PyObject>;

inline PythonRef keep(pybind11::object object) {
  return PythonRef(object.release().ptr(), [](PyObject* raw) {
    if (!Py_IsInitialized()) return;  // interpreter gone: nothing left to free
    pybind11::gil_scoped_acquire gil;
    Py_DECREF(raw);
  });
}

inline pybind11::object borrow(const PythonRef& ref) {
  return pybind11::reinterpret_borrow<pybind11::object>(ref.get());
}

}  // namespace fastserve::binding
