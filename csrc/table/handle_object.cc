#include "table/handle_object.h"

#include "bindings/version_payload.h"

#include <new>
#include <utility>

namespace fastserve::binding {
namespace {

struct HandleObject {
  PyObject_HEAD
  ServableHandle handle;
};

HandleObject* as_handle(PyObject* self) { return reinterpret_cast<HandleObject*>(self); }

bool check_held(HandleObject* self) {
  if (self->handle) return true;
  PyErr_SetString(PyExc_ValueError, "the servable handle was released");
  return false;
}

void handle_dealloc(PyObject* self) {
  release_with_gil(as_handle(self)->handle);
  as_handle(self)->handle.~ServableHandle();
  Py_TYPE(self)->tp_free(self);
}

PyObject* handle_servable(PyObject* self, void*) {
  HandleObject* h = as_handle(self);
  if (!check_held(h)) return nullptr;
  PyObject* servable = version_payload(h->handle.payload()).python.get();
  Py_INCREF(servable);
  return servable;
}

PyObject* handle_version(PyObject* self, void*) {
  HandleObject* h = as_handle(self);
  if (!check_held(h)) return nullptr;
  return PyLong_FromLongLong(h->handle.version());
}

PyObject* handle_model(PyObject* self, void*) {
  HandleObject* h = as_handle(self);
  if (!check_held(h)) return nullptr;
  const std::string& model = h->handle.model();
  return PyUnicode_FromStringAndSize(model.data(), static_cast<Py_ssize_t>(model.size()));
}

PyObject* handle_released(PyObject* self, void*) {
  return PyBool_FromLong(as_handle(self)->handle ? 0 : 1);
}

PyObject* handle_release(PyObject* self, PyObject*) {
  release_with_gil(as_handle(self)->handle);
  Py_RETURN_NONE;
}

PyObject* handle_enter(PyObject* self, PyObject*) {
  Py_INCREF(self);
  return self;
}

PyObject* handle_exit(PyObject* self, PyObject* const*, Py_ssize_t) {
  release_with_gil(as_handle(self)->handle);
  Py_RETURN_NONE;
}

PyGetSetDef handle_getset[] = {
    {"servable", handle_servable, nullptr, "The servable this handle keeps alive.", nullptr},
    {"version", handle_version, nullptr, "The version number.", nullptr},
    {"model", handle_model, nullptr, "The model name.", nullptr},
    {"released", handle_released, nullptr, "Whether release() was called.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyMethodDef handle_methods[] = {
    {"release", handle_release, METH_NOARGS,
     "Drops the hold on the version (idempotent); the version may then be unloaded."},
    {"__enter__", handle_enter, METH_NOARGS, nullptr},
    {"__exit__", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(handle_exit)),
     METH_FASTCALL, nullptr},
    {nullptr, nullptr, 0, nullptr},
};

PyTypeObject make_type() {
  PyTypeObject type = {PyVarObject_HEAD_INIT(nullptr, 0)};
  type.tp_name = "fastserve._core.ServableHandle";
  type.tp_basicsize = sizeof(HandleObject);
  type.tp_dealloc = handle_dealloc;
  type.tp_flags = Py_TPFLAGS_DEFAULT;
  type.tp_doc =
      "Keeps one servable version alive until released. Use as a context manager.";
  type.tp_methods = handle_methods;
  type.tp_getset = handle_getset;
  return type;
}

PyTypeObject handle_type_object = make_type();

}  // namespace

// Every release of a Python handle goes through here: release(), __exit__, dealloc.
void release_with_gil(ServableHandle& handle) {
  std::shared_ptr<VersionEntry> removed = handle.release_deferring_wake();
  if (!removed) return;
  Py_BEGIN_ALLOW_THREADS
  removed->wake_waiters();  // takes the version's mutex
  Py_END_ALLOW_THREADS
}

PyTypeObject* handle_type() {
  if (!(handle_type_object.tp_flags & Py_TPFLAGS_READY) &&
      PyType_Ready(&handle_type_object) < 0) {
    return nullptr;
  }
  return &handle_type_object;
}

PyObject* wrap_handle(ServableHandle&& handle) {
  PyTypeObject* type = handle_type();
  PyObject* self = type == nullptr ? nullptr : type->tp_alloc(type, 0);
  if (self == nullptr) {
    release_with_gil(handle);
    return nullptr;
  }
  new (&as_handle(self)->handle) ServableHandle(std::move(handle));
  return self;
}

}  // namespace fastserve::binding
