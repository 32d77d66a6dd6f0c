// Python bindings of NativeBatcher (csrc/batching/native_batcher.h). Binding only.
//
// run() copies numpy inputs into C++ buffers (so the batch threads never release a Python
// object) and waits for the batch without the GIL; it takes the GIL once more only to register
// the request's cancellation with Python's callback, when one is given.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "batching/native_batcher.h"
#include "bindings/numpy_tensor.h"
#include "bindings/python_object.h"
#include "bindings/tensorflow.h"
#include "runners/native_servable.h"

namespace py = pybind11;

namespace fastserve::binding {
namespace {

// The tensor in memory C++ owns (strings are already copied by tensor_from_numpy).
Tensor owned(Tensor tensor) {
  if (tensor.dtype == DataType::kString) return tensor;
  Tensor copy = Tensor::allocate(tensor.dtype, tensor.shape);
  if (tensor.bytes > 0) std::memcpy(copy.mutable_data(), tensor.data, tensor.bytes);
  return copy;
}

py::list run(NativeBatcher& batcher, const py::dict& feeds, const std::vector<std::string>& fetches,
             double timeout_seconds, py::object on_cancel) {
  Feeds inputs;
  inputs.reserve(feeds.size());
  for (auto [name, value] : feeds) {
    try {
      inputs.emplace_back(name.cast<std::string>(), owned(tensor_from_numpy(value)));
    } catch (const std::invalid_argument& error) {
      raise_tensorflow_error(
          {tensorflow::kInvalidArgument, name.cast<std::string>() + ": " + error.what()});
    }
  }
  std::optional<Clock::time_point> deadline;
  if (timeout_seconds >= 0) {
    deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(timeout_seconds));
  }
  NativeBatcher::OnCancel registration;
  if (!on_cancel.is_none()) {
    // Called by run() without the GIL and without any lock of the batcher held.
    registration = [&on_cancel](std::function<void()> abandon) {
      py::gil_scoped_acquire gil;
      try {
        // Python calls it with the GIL; abandoning takes the task's mutex, so without it.
        on_cancel(py::cpp_function([abandon = std::move(abandon)] { abandon(); },
                                   py::call_guard<py::gil_scoped_release>()));
      } catch (py::error_already_set& error) {
        error.discard_as_unraisable("registering a batched run's cancellation");
      }
    };
  }
  std::vector<Tensor> outputs;
  tensorflow::Status status;
  {
    py::gil_scoped_release released;
    status = batcher.run(inputs, fetches, &outputs, deadline, registration);
    inputs.clear();
  }
  if (!status.ok()) raise_tensorflow_error(status);
  py::list arrays(outputs.size());
  for (std::size_t i = 0; i < outputs.size(); ++i) arrays[i] = numpy_from_tensor(outputs[i]);
  return arrays;
}

py::tuple drain(NativeBatcher& batcher) {
  BatchingRecords records;
  {
    py::gil_scoped_release released;
    records = batcher.drain();
  }
  py::list batches;
  for (const BatchRecord& record : records.batches) {
    batches.append(py::make_tuple(record.rows, record.padded, record.queuing_micros));
  }
  return py::make_tuple(records.task_rows, batches, records.dropped);
}

}  // namespace

void bind_native_batching(py::module_& m) {
  py::class_<NativeBatcher, std::shared_ptr<NativeBatcher>>(m, "NativeBatcher")
      .def(py::init([](py::object session, std::int64_t max_batch_size,
                       std::int64_t batch_timeout_micros, std::int64_t max_enqueued_batches,
                       bool enable_large_batch_splitting, std::int64_t max_execution_batch_size,
                       std::int64_t num_batch_threads, std::vector<std::int64_t> allowed_batch_sizes,
                       bool pad_variable_length_inputs) {
             NativeBatchingOptions options;
             options.queue.max_batch_size = max_batch_size;
             options.queue.batch_timeout_micros = batch_timeout_micros;
             options.queue.max_enqueued_batches = max_enqueued_batches;
             options.queue.enable_large_batch_splitting = enable_large_batch_splitting;
             options.queue.max_execution_batch_size = max_execution_batch_size;
             options.num_batch_threads = num_batch_threads;
             options.allowed_batch_sizes = std::move(allowed_batch_sizes);
             options.pad_variable_length_inputs = pad_variable_length_inputs;
             auto native = session_of(session);
             if (!native) throw py::value_error("a NativeBatcher needs a TensorFlowSession");
             py::gil_scoped_release released;
             // Its destructor stops it (drains the queues, joins the batch threads): never with
             // the GIL, whoever drops it last.
             return std::shared_ptr<NativeBatcher>(
                 new NativeBatcher(std::move(native), std::move(options)),
                 DeleteWithoutGil<NativeBatcher>());
           }),
           py::arg("session"), py::arg("max_batch_size"), py::arg("batch_timeout_micros"),
           py::arg("max_enqueued_batches"), py::arg("enable_large_batch_splitting"),
           py::arg("max_execution_batch_size"), py::arg("num_batch_threads"),
           py::arg("allowed_batch_sizes"), py::arg("pad_variable_length_inputs"))
      .def("run", &run, py::arg("feeds"), py::arg("fetches"), py::arg("timeout_seconds") = -1.0,
           py::arg("on_cancel") = py::none())
      .def("stop", &NativeBatcher::stop, py::call_guard<py::gil_scoped_release>())
      .def("queued_rows", &NativeBatcher::queued_rows, py::call_guard<py::gil_scoped_release>())
      .def("set_recording", &NativeBatcher::set_recording, py::arg("on"))
      .def("drain", &drain);
  m.def(
      "batched_native_servable",
      [](const NativeServable& servable, std::shared_ptr<NativeBatcher> batcher) {
        auto batched = std::make_shared<NativeServable>(servable);
        batched->batcher = std::move(batcher);
        return batched;
      },
      py::arg("servable"), py::arg("batcher"),
      "A copy of `servable` whose native runs go through `batcher`.");
}

}  // namespace fastserve::binding
