// Python bindings of NativeServable: a version's signatures and TensorFlow session, built by
// the TensorFlow loader so that the native Predict path can serve the version without Python.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings/tensorflow.h"
#include "runners/native_servable.h"

namespace py = pybind11;

namespace fastserve::binding {
namespace {

std::map<std::string, TensorSpec> tensor_specs(const py::dict& specs) {
  std::map<std::string, TensorSpec> out;
  for (auto [alias, spec] : specs) {
    auto pair = spec.cast<py::tuple>();
    out[alias.cast<std::string>()] =
        TensorSpec{pair[0].cast<std::string>(), static_cast<DataType>(pair[1].cast<int>())};
  }
  return out;
}

}  // namespace

void bind_native_servable(py::module_& m) {
  py::class_<NativeServable, std::shared_ptr<NativeServable>>(m, "NativeServable")
      .def(py::init([](const py::dict& signatures, py::object session, std::string runtime) {
             auto servable = std::make_shared<NativeServable>();
             for (auto [name, signature] : signatures) {
               auto parts = signature.cast<py::tuple>();
               servable->signatures[name.cast<std::string>()] =
                   SignatureSpec{parts[0].cast<std::string>(),
                                 tensor_specs(parts[1].cast<py::dict>()),
                                 tensor_specs(parts[2].cast<py::dict>())};
             }
             servable->session = session_of(session);
             servable->runtime = std::move(runtime);
             return servable;
           }),
           py::arg("signatures"), py::arg("session"), py::arg("runtime"))
      .def_property_readonly(
          "batched", [](const NativeServable& servable) { return servable.batcher != nullptr; })
      .def_property_readonly("signature_names", [](const NativeServable& servable) {
        std::vector<std::string> names;
        for (const auto& entry : servable.signatures) names.push_back(entry.first);
        return names;
      });
}

}  // namespace fastserve::binding
