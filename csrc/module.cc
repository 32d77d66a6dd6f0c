// Python bindings of the C++ core. Binding only: logic lives in the classes.
//
// The GIL: every binding whose C++ takes a mutex or waits releases the GIL around it (a C++
// mutex is never taken with the GIL held, so no thread can hold one while it waits for the
// GIL). Python objects are converted before and after, with the GIL. Lock-free calls (table
// lookups, which only pin a snapshot, and plain reads of immutable fields) keep it.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <pybind11/chrono.h>

#include "batching/batch_queue.h"
#include "bindings/tensorflow.h"
#include "bindings/version_payload.h"
#include "table/handle_object.h"
#include "table/servable_table.h"

namespace py = pybind11;
using release_gil = py::call_guard<py::gil_scoped_release>;

namespace fastserve::binding {
void bind_grpc(py::module_& m);
void bind_native_servable(py::module_& m);
void bind_native_batching(py::module_& m);
}  // namespace fastserve::binding
using fastserve::Batch;
using fastserve::BatchOptions;
using fastserve::BatchScheduler;
using fastserve::Clock;
using fastserve::Lookup;
using fastserve::LookupStatus;
using fastserve::Payload;
using fastserve::ServableTable;
using fastserve::SubmitStatus;
using fastserve::Task;
using fastserve::TaskOutcome;

namespace {

// Owns a strong reference to a Python object; dropping it takes the GIL, since
// the last owner may be a thread that does not hold it.
Payload to_payload(py::object object) {
  return Payload(object.release().ptr(), [](void* raw) {
    if (!Py_IsInitialized()) return;  // interpreter gone: nothing left to free
    py::gil_scoped_acquire gil;
    Py_DECREF(static_cast<PyObject*>(raw));
  });
}

// A found handle, or None: the Python wrapper explains misses itself, so the
// hot path raises nothing.
py::object found_or_none(Lookup&& lookup) {
  if (lookup.status != LookupStatus::kOk) return py::none();
  PyObject* handle = fastserve::binding::wrap_handle(std::move(lookup.handle));
  if (handle == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(handle);
}

py::object from_payload(const Payload& payload) {
  if (!payload) return py::none();
  return py::reinterpret_borrow<py::object>(static_cast<PyObject*>(payload.get()));
}

std::optional<Clock::time_point> after(double seconds) {
  if (seconds < 0) return std::nullopt;
  return Clock::now() +
         std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

// A batch as (queue_id, key, rows, [(task, part, offset, rows), ...]).
py::object batch_to_python(std::optional<Batch>&& batch) {
  if (!batch) return py::none();
  py::list entries(batch->entries.size());
  for (std::size_t i = 0; i < batch->entries.size(); ++i) {
    auto& entry = batch->entries[i];
    entries[i] = py::make_tuple(entry.task, entry.part, entry.offset, entry.rows);
  }
  return py::make_tuple(batch->queue_id, batch->key, batch->rows, entries);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastserve's C++ core. Use fastserve.core.table, not this module.";
  fastserve::binding::bind_grpc(m);
  fastserve::binding::bind_native_servable(m);
  fastserve::binding::bind_native_batching(m);

  py::enum_<LookupStatus>(m, "LookupStatus")
      .value("OK", LookupStatus::kOk)
      .value("MODEL_NOT_FOUND", LookupStatus::kModelNotFound)
      .value("VERSION_NOT_FOUND", LookupStatus::kVersionNotFound)
      .value("LABEL_NOT_FOUND", LookupStatus::kLabelNotFound);

  PyTypeObject* handle_type = fastserve::binding::handle_type();
  if (handle_type == nullptr) throw py::error_already_set();
  m.add_object("ServableHandle", py::reinterpret_borrow<py::object>(
                                     reinterpret_cast<PyObject*>(handle_type)));

  py::class_<ServableTable>(m, "ServableTable")
      .def(py::init<>())
      .def(
          "add",
          [](ServableTable& t, const std::string& model, std::int64_t version,
             py::object servable) {
            auto entry = std::make_shared<fastserve::binding::VersionPayload>();
            py::object native = py::getattr(servable, "native", py::none());
            if (!native.is_none()) {
              entry->native = native.cast<std::shared_ptr<fastserve::NativeServable>>();
            }
            entry->queues_requests =
                py::getattr(servable, "queues_requests", py::bool_(false)).cast<bool>();
            entry->pends = py::getattr(servable, "pends", py::bool_(false)).cast<bool>();
            entry->python = fastserve::binding::keep(std::move(servable));
            Payload payload = std::move(entry);
            py::gil_scoped_release nogil;
            return t.add(model, version, std::move(payload));
          },
          py::arg("model"), py::arg("version"), py::arg("servable"))
      .def("remove", &ServableTable::remove, py::arg("model"), py::arg("version"),
           py::call_guard<py::gil_scoped_release>())
      .def("wait_until_released", &ServableTable::wait_until_released, py::arg("model"),
           py::arg("version"), py::arg("timeout_seconds") = -1.0,
           py::call_guard<py::gil_scoped_release>())
      .def("set_labels", &ServableTable::set_labels, py::arg("model"), py::arg("labels"),
           py::call_guard<py::gil_scoped_release>())
      // Lookups: lock-free (see servable_table.h), so they keep the GIL; a handle dropped
      // here (only on failure) is released the GIL-safe way (handle_object.h).
      .def("acquire_latest",
           [](const ServableTable& t, const std::string& model) {
             return found_or_none(t.acquire_latest(model));
           })
      .def("acquire_version",
           [](const ServableTable& t, const std::string& model, std::int64_t version) {
             return found_or_none(t.acquire_version(model, version));
           })
      .def("acquire_label",
           [](const ServableTable& t, const std::string& model, const std::string& label) {
             return found_or_none(t.acquire_label(model, label));
           })
      .def("explain_label",
           [](const ServableTable& t, const std::string& model, const std::string& label) {
             Lookup lookup = t.acquire_label(model, label);
             fastserve::binding::release_with_gil(lookup.handle);
             return py::make_tuple(lookup.status, lookup.version);
           })
      .def("models", &ServableTable::models)
      .def("versions", &ServableTable::versions, py::arg("model"))
      .def("labels", &ServableTable::labels, py::arg("model"))
      .def("handle_count", &ServableTable::handle_count, py::arg("model"),
           py::arg("version"), py::call_guard<py::gil_scoped_release>());

  py::enum_<TaskOutcome>(m, "TaskOutcome")
      .value("PENDING", TaskOutcome::kPending)
      .value("DONE", TaskOutcome::kDone)
      .value("FAILED", TaskOutcome::kFailed)
      .value("CANCELLED", TaskOutcome::kCancelled)
      .value("EXPIRED", TaskOutcome::kExpired);

  py::enum_<SubmitStatus>(m, "SubmitStatus")
      .value("OK", SubmitStatus::kOk)
      .value("QUEUE_FULL", SubmitStatus::kQueueFull)
      .value("TOO_LARGE", SubmitStatus::kTooLarge)
      .value("NO_QUEUE", SubmitStatus::kNoQueue)
      .value("EMPTY", SubmitStatus::kEmpty);

  py::class_<Task, std::shared_ptr<Task>>(m, "Task")
      .def(py::init([](py::object input, std::int64_t rows, double timeout_seconds) {
             return std::make_shared<Task>(to_payload(std::move(input)), rows,
                                           after(timeout_seconds));
           }),
           py::arg("input"), py::arg("rows"), py::arg("timeout_seconds") = -1.0)
      .def_property_readonly("input", [](const Task& t) { return from_payload(t.input()); })
      .def_property_readonly("rows", &Task::rows)
      // The short calls keep the GIL: they take only the task's mutex (or the scheduler's),
      // whose holders never wait for the GIL (batch_queue.h), and giving the GIL up for a
      // moment costs the caller a wait for it under load (the runner and the batch threads
      // would pass it back and forth on every call).
      .def_property_readonly("outcome", &Task::outcome)
      .def(
          "wait",
          [](Task& t, double timeout_seconds) {
            py::gil_scoped_release nogil;
            return t.wait(after(timeout_seconds));
          },
          py::arg("timeout_seconds") = -1.0)
      .def("abandon", &Task::abandon, py::arg("why"))
      .def("outputs",
           [](const Task& t) {
             const std::vector<Payload> payloads = t.outputs();
             py::list outputs;
             for (const Payload& output : payloads) outputs.append(from_payload(output));
             return outputs;
           })
      .def("error",
           [](const Task& t) {
             return from_payload(t.error());
           })
      // An output or error the task refuses (it already ended) is dropped inside complete()
      // or fail(), after the task's lock (its deleter takes the GIL, held here already). The
      // task's on_finish callback runs here too, with the GIL (the runner's resume needs
      // only the runner's mutex).
      .def("complete",
           [](Task& t, std::size_t part, py::object output) {
             t.complete(part, to_payload(std::move(output)));
           })
      .def("fail", [](Task& t, py::object error) { t.fail(to_payload(std::move(error))); });

  py::class_<BatchScheduler>(m, "BatchScheduler")
      .def(py::init<>())
      .def(
          "add_queue",
          [](BatchScheduler& s, std::int64_t max_batch_size, std::int64_t batch_timeout_micros,
             std::int64_t max_enqueued_batches, bool enable_large_batch_splitting,
             std::int64_t max_execution_batch_size) {
            BatchOptions options;
            options.max_batch_size = max_batch_size;
            options.batch_timeout_micros = batch_timeout_micros;
            options.max_enqueued_batches = max_enqueued_batches;
            options.enable_large_batch_splitting = enable_large_batch_splitting;
            options.max_execution_batch_size = max_execution_batch_size;
            return s.add_queue(options);
          },
          release_gil(),
          py::arg("max_batch_size"), py::arg("batch_timeout_micros"),
          py::arg("max_enqueued_batches"), py::arg("enable_large_batch_splitting") = false,
          py::arg("max_execution_batch_size") = 0)
      .def("remove_queue", &BatchScheduler::remove_queue, py::arg("queue_id"), release_gil())
      .def("submit", &BatchScheduler::submit, py::arg("queue_id"), py::arg("key"),
           py::arg("task"))
      .def(
          "next_batch",
          [](BatchScheduler& s, double timeout_seconds) {
            std::optional<Batch> batch;
            {
              py::gil_scoped_release nogil;
              batch = s.next_batch(timeout_seconds);
            }
            return batch_to_python(std::move(batch));
          },
          py::arg("timeout_seconds") = -1.0)
      .def("stop", &BatchScheduler::stop, release_gil())
      .def("queued_rows", &BatchScheduler::queued_rows, py::arg("queue_id"), release_gil())
      .def("enqueued_batches", &BatchScheduler::enqueued_batches, py::arg("queue_id"),
           release_gil());

  fastserve::binding::bind_tensorflow(m);
}
