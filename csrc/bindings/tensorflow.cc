// Binding only: the runner is csrc/runners/tensorflow_session.
#include "bindings/tensorflow.h"

#include <pybind11/stl.h>

#include <string>
#include <utility>
#include <vector>

#include "bindings/numpy_tensor.h"
#include "bindings/python_object.h"

namespace py = pybind11;
using fastserve::tensorflow::Status;
using fastserve::tensorflow::TensorFlowSession;

namespace fastserve::binding {
namespace {

PyObject* tensorflow_error = nullptr;  // _core.TensorFlowError, set by bind_tensorflow

}  // namespace

[[noreturn]] void raise_tensorflow_error(const Status& status) {
  PyObject* message = PyUnicode_DecodeUTF8(status.message.data(),
                                           static_cast<Py_ssize_t>(status.message.size()),
                                           "replace");
  if (message == nullptr) throw py::error_already_set();
  py::tuple args = py::make_tuple(status.code, py::reinterpret_steal<py::str>(message));
  PyErr_SetObject(tensorflow_error, args.ptr());
  throw py::error_already_set();
}

namespace {

std::shared_ptr<TensorFlowSession> open_session(const std::string& library_path,
                                                const std::string& export_dir,
                                                const std::vector<std::string>& tags,
                                                const py::bytes& config_bytes) {
  std::string config = config_bytes;
  std::string error;
  Status status;
  std::shared_ptr<TensorFlowSession> session;
  {
    py::gil_scoped_release released;
    const tensorflow::Api* api = tensorflow::load_tensorflow_api(library_path, &error);
    if (api != nullptr) {
      // Its destructor closes it (waits for runs in progress): never with the GIL, whoever
      // drops it last.
      session = std::shared_ptr<TensorFlowSession>(new TensorFlowSession(api),
                                                   DeleteWithoutGil<TensorFlowSession>());
      status = session->load(export_dir, tags, config);
    }
  }
  if (!error.empty()) raise_tensorflow_error({tensorflow::kFailedPrecondition, error});
  if (!status.ok()) raise_tensorflow_error(status);
  return session;
}

py::list run(const TensorFlowSession& session, const py::dict& feeds,
             const std::vector<std::string>& fetches) {
  std::vector<std::pair<std::string, Tensor>> inputs;
  inputs.reserve(feeds.size());
  for (auto [name, value] : feeds) {
    try {
      inputs.emplace_back(name.cast<std::string>(), tensor_from_numpy(value));
    } catch (const std::invalid_argument& error) {
      raise_tensorflow_error({tensorflow::kInvalidArgument, name.cast<std::string>() + ": " + error.what()});
    }
  }
  std::vector<Tensor> outputs;
  Status status;
  {
    py::gil_scoped_release released;
    status = session.run(inputs, fetches, &outputs);
  }
  if (!status.ok()) raise_tensorflow_error(status);
  py::list arrays(outputs.size());
  for (std::size_t i = 0; i < outputs.size(); ++i) arrays[i] = numpy_from_tensor(outputs[i]);
  return arrays;
}

std::string c_api_problem(const std::string& library_path) {
  std::string error;
  py::gil_scoped_release released;
  tensorflow::load_tensorflow_api(library_path, &error);
  return error;
}

}  // namespace

void bind_tensorflow(py::module_& m) {
  // Owned by the module (and never freed here: a static py::object would outlive Python).
  tensorflow_error = PyErr_NewExceptionWithDoc(
      "fastserve._core.TensorFlowError",
      "TensorFlow failed: args are (code, message), code numbered as gRPC's status codes.",
      nullptr, nullptr);
  if (tensorflow_error == nullptr) throw py::error_already_set();
  m.add_object("TensorFlowError", py::handle(tensorflow_error));
  py::class_<TensorFlowSession, std::shared_ptr<TensorFlowSession>>(m, "TensorFlowSession")
      .def(py::init(&open_session), py::arg("library_path"), py::arg("export_dir"),
           py::arg("tags"), py::arg("config_bytes"))
      .def("run", &run, py::arg("feeds"), py::arg("fetches"))
      .def("close", &TensorFlowSession::close, py::call_guard<py::gil_scoped_release>());
  m.def("tensorflow_c_api", &c_api_problem, py::arg("library_path"));
}

std::shared_ptr<TensorFlowSession> session_of(py::handle session) {
  if (session.is_none()) return nullptr;
  return session.cast<std::shared_ptr<TensorFlowSession>>();
}

}  // namespace fastserve::binding
