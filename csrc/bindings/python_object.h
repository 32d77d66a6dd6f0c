// A strong reference to a Python object that C++ may hold and drop on any thread; and a
// deleter for C++ objects that Python may drop last but whose destructor waits.
//
// Threads: keep() and borrow() are called with the GIL held; the returned reference may be
// copied and dropped anywhere, with or without the GIL (the last drop takes the GIL to
// decrement, so it must not happen under a lock that a GIL holder may wait for).
// delete_without_gil() may be called anywhere, with or without the GIL.
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

// Deletes `object`, releasing the GIL around the destructor when this thread holds it: for
// objects whose destructor waits (joins threads, waits for calls or runs in progress), which
// may be destroyed from Python (the last reference dropped by a Python object's dealloc) or
// from C++ threads that have never held the GIL.
template <typename T>
void delete_without_gil(T* object) {
  if (Py_IsInitialized() && PyGILState_Check()) {
    pybind11::gil_scoped_release nogil;
    delete object;
  } else {
    delete object;
  }
}

template <typename T>
struct DeleteWithoutGil {
  void operator()(T* object) const { delete_without_gil(object); }
};

}  // namespace fastserve::binding
