// The Python type of a servable handle, written against the CPython API
// because a handle is made and dropped on every request: a pybind11 class
// costs several times more per object than this plain type.
//
// Threads and the GIL: these functions, and every method of the type, are called with the GIL
// held, from any Python thread. None takes a lock with the GIL held: releasing a handle is
// lock-free, except for the last hold on a removed version, whose waiters are woken with the
// GIL released (ServableHandle::release_deferring_wake()).
#pragma once

#include <Python.h>

#include "table/servable_table.h"

namespace fastserve::binding {

// Readies the type once; returns a borrowed reference (null with an error set).
PyTypeObject* handle_type();

// A new reference to a Python handle that owns `handle` (null with an error set; `handle` is
// then released).
PyObject* wrap_handle(ServableHandle&& handle);

// Releases `handle` with the GIL held: lock-free, except that the last hold on a removed
// version wakes its waiters with the GIL released. Use it instead of release() (or the
// destructor) wherever a binding drops a handle.
void release_with_gil(ServableHandle& handle);

}  // namespace fastserve::binding
