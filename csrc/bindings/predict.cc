// The native Predict handler's binding: the Python step and the wiring. The request is parsed
// and its tensors decoded in C++ without the GIL, on gRPC's callback thread. A version with a
// native form (a SavedModel on TensorFlow's C API) whose request passes every check is
// resolved, checked, run and encoded without Python at all (csrc/grpc/native_predict.h), on
// the server's worker pool. Otherwise the request is queued for the Python-servable runner
// (csrc/runners/python_runner.h), whose thread takes the GIL once for every request queued,
// resolves, checks and runs each in Python
// (fastserve.frontends.grpc.PredictionServicer.run_arrays), and encodes and sends the
// responses after letting go of the GIL. A batched Python servable's request is queued for
// its batch there and not waited for: the runner takes it up again when its batch ran (the
// batch task's on_finish), so no thread waits for a batch holding or re-taking the GIL. A
// Python step that waits otherwise (a TF Lite pool, a pipeline) runs on the worker pool. A
// request the codec does not take whole goes to the Python dispatcher unchanged (on the
// worker pool). So every error a client can see is worded by Python, TF Serving's words: the
// native path only ever answers successes, the runner's own errors and a batched version's
// batching errors (csrc/batching/native_batcher.h words them as the Python batching does).
//
// Threads: start() runs on gRPC's callback thread and handle() (or the work start() leaves)
// on the server's worker pool, both without the GIL; shutdown() is called once, without the
// GIL, and answers every request queued for Python (or waiting for its batch) before it
// returns.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <functional>

#include "batching/batch_queue.h"
#include "bindings/numpy_tensor.h"
#include "bindings/python_object.h"
#include "bindings/version_payload.h"
#include "table/servable_table.h"
#include "fastserve/predict.pb.h"
#include "grpc/native_predict.h"
#include "grpc/predict_codec.h"
#include "grpc/request_log.h"
#include "grpc/server.h"
#include "runners/python_runner.h"

namespace py = pybind11;

namespace fastserve::binding {
namespace {

struct NativeOptions {
  const ServableTable* table = nullptr;  // null: no native runs
  NativePredictOptions predict;
};

// A Section that holds the GIL: the runner thread's Python thread state is made once, on
// the first enter(), and kept until the section is destroyed (taking the GIL with
// PyGILState_Ensure each time would make and free a thread state per request).
class GilSection final : public Section {
 public:
  ~GilSection() override {
    if (!entered_ || !Py_IsInitialized()) return;
    PyEval_RestoreThread(saved_);
    PyGILState_Release(state_);
  }
  void enter() override {
    if (entered_) {
      PyEval_RestoreThread(saved_);
      return;
    }
    state_ = PyGILState_Ensure();
    entered_ = true;
  }
  void leave() override { saved_ = PyEval_SaveThread(); }

 private:
  bool entered_ = false;
  PyGILState_STATE state_{};
  PyThreadState* saved_ = nullptr;
};

// One Predict request's Python step (PredictionServicer.run_arrays) and its answer.
// Threads: run() and drop() with the GIL; encode() and send() without it, on the thread
// that ran it (the outputs are views of Python arrays this job keeps alive, so it is
// destroyed with the GIL).
//
// On the runner (`wait` false), a request its servable queues for a batch is not waited for:
// the first run() queues it and leaves the job waiting() on the batch's task; the runner
// resumes it when the task ends (or when the call is cancelled, which abandons the task), and
// the second run() finishes the step (outputs, or the error) in Python.
class PythonPredict final : public RunnerJob {
 public:
  PythonPredict(PythonRef run, bool tensor_content, bool wait, std::shared_ptr<Call> call,
                std::shared_ptr<wire::PredictRequest> request,
                std::vector<std::pair<std::string, Tensor>> inputs)
      : run_(std::move(run)),
        tensor_content_(tensor_content),
        wait_(wait),
        call_(std::move(call)),
        request_(std::move(request)),
        inputs_(std::move(inputs)) {}

  void run() noexcept override {
    try {
      if (finish_) {
        // The second run: always, even for a call that ended meanwhile (it releases the
        // version and counts the request).
        PythonRef finish = std::move(finish_);
        task_.reset();
        read(borrow(finish)().cast<py::tuple>());
        return;
      }
      if (call_->finished()) {  // cancelled, or its deadline passed, while it waited
        skipped_ = true;
        return;
      }
      const auto& spec = request_->model_spec();
      py::dict arrays;
      for (auto& [alias, tensor] : inputs_) arrays[py::str(alias)] = numpy_from_tensor(tensor);
      inputs_.clear();  // the arrays keep what they view
      py::object version = spec.has_version() ? py::object(py::int_(spec.version().value()))
                                              : py::object(py::none());
      py::object label = spec.version_choice_case() == wire::ModelSpec::kVersionLabel
                             ? py::object(py::str(spec.version_label()))
                             : py::object(py::none());
      py::list filter;
      for (const std::string& name : request_->output_filter()) filter.append(py::str(name));
      read(borrow(run_)(call_, spec.name(), version, label, spec.signature_name(), arrays, filter,
                        py::bool_(wait_))
               .cast<py::tuple>());
    } catch (py::error_already_set& error) {
      status_ = grpc::Status(grpc::StatusCode::INTERNAL, error.what());
    } catch (std::exception& error) {
      status_ = grpc::Status(grpc::StatusCode::INTERNAL, error.what());
    }
  }

  bool waiting() const noexcept override { return task_ != nullptr; }

  // Without the GIL, after the first run() left the job waiting: resumed when the task ends;
  // a cancelled call abandons it (if its batch has not started), which ends it.
  void resume_when_ready(std::function<void()> resume) noexcept override {
    std::weak_ptr<Task> task = task_;
    call_->on_cancel([task, deadline = call_->deadline()] {
      auto queued = task.lock();
      if (!queued) return;
      // gRPC cancels a call whose deadline passed, too: that one expired.
      const bool expired = deadline && std::chrono::steady_clock::now() >= *deadline;
      queued->abandon(expired ? TaskOutcome::kExpired : TaskOutcome::kCancelled);
    });
    task_->on_finish(std::move(resume));
  }

  void answer() noexcept override {
    if (waiting()) return;
    encode();
    send();
  }

  // With the GIL: what run_arrays (or its finish) answered.
  void read(const py::tuple& result) {
    const int code = result[0].cast<int>();
    if (code == kPending) {
      task_ = result[1].cast<std::shared_ptr<Task>>();
      finish_ = keep(py::reinterpret_borrow<py::object>(result[2]));
      return;
    }
    if (code != 0) {
      status_ = grpc::Status(static_cast<grpc::StatusCode>(code), result[1].cast<std::string>());
      return;
    }
    version_ = result[1].cast<std::int64_t>();
    signature_ = result[2].cast<std::string>();
    for (py::handle item : result[3]) {
      py::tuple output = py::reinterpret_borrow<py::tuple>(item);
      outputs_.emplace_back(
          output[0].cast<std::string>(),
          tensor_from_numpy(output[2], static_cast<DataType>(output[1].cast<int>())));
    }
  }

  // The response from the outputs; no Python.
  void encode() noexcept {
    if (skipped_ || !status_.ok() || call_->finished()) return;
    try {
      auto* model_spec = response_.mutable_model_spec();
      model_spec->set_name(request_->model_spec().name());
      model_spec->mutable_version()->set_value(version_);
      if (!signature_.empty()) model_spec->set_signature_name(signature_);
      auto& fields = *response_.mutable_outputs();
      for (const auto& [alias, tensor] : outputs_) {
        if (!encode_tensor(tensor, tensor_content_, &fields[alias])) {
          status_ = grpc::Status(grpc::StatusCode::INTERNAL,
                                 "cannot encode output " + alias + " of its type");
          return;
        }
      }
    } catch (std::exception& error) {
      status_ = grpc::Status(grpc::StatusCode::INTERNAL, error.what());
    }
  }

  // Answers the call; no Python.
  void send() noexcept {
    if (skipped_) return;
    if (!status_.ok()) {
      call_->finish(status_);
    } else {
      call_->finish_message(response_);
    }
  }

  // With the GIL: lets go of the Python arrays the outputs view.
  void drop() noexcept { outputs_.clear(); }

 private:
  static constexpr int kPending = -1;  // run_arrays' code for "queued, not waited for"

  const PythonRef run_;
  const bool tensor_content_;
  const bool wait_;
  const std::shared_ptr<Call> call_;
  const std::shared_ptr<wire::PredictRequest> request_;
  std::vector<std::pair<std::string, Tensor>> inputs_;
  bool skipped_ = false;
  grpc::Status status_;
  std::int64_t version_ = 0;
  std::string signature_;
  std::vector<std::pair<std::string, Tensor>> outputs_;  // views of Python arrays
  std::shared_ptr<Task> task_;  // while waiting for its batch
  PythonRef finish_;            // the step's second half, once queued
  wire::PredictResponse response_;
};

class NativePredict final : public Handler {
 public:
  NativePredict(PythonRef run, std::shared_ptr<Handler> fallback, bool tensor_content,
                std::int64_t max_tensor_bytes, int max_rank, PythonRef table_keeper,
                NativeOptions native, int python_threads)
      : run_(std::move(run)),
        fallback_(std::move(fallback)),
        tensor_content_(tensor_content),
        max_tensor_bytes_(max_tensor_bytes),
        max_rank_(max_rank),
        table_keeper_(std::move(table_keeper)),
        native_(native),
        runner_([] { return std::make_unique<GilSection>(); },
                PythonRunnerOptions{python_threads, 64}) {}

  // On gRPC's callback thread: parse, decode and look up (none of which blocks), then queue
  // a Python servable's request (batched or not) for the runner here; what may block (a
  // TensorFlow run, a Python step that waits, the Python dispatcher) is left to the worker
  // pool.
  std::function<void()> start(std::shared_ptr<Call> call) override {
    if (call->finished()) return {};
    auto request = std::make_shared<wire::PredictRequest>();
    if (!call->parse_request(request.get()) || !request->has_model_spec()) {
      return to_fallback(std::move(call));
    }
    auto prepared = std::make_shared<Prepared>();
    prepared->inputs.reserve(request->inputs_size());
    for (const auto& [alias, proto] : request->inputs()) {
      auto tensor = decode_tensor(proto, request, max_tensor_bytes_, max_rank_);
      if (!tensor) return to_fallback(std::move(call));
      prepared->inputs.emplace_back(alias, std::move(*tensor));
    }
    // Sorted for a stable order of the Python dict (a map's order is not).
    std::sort(prepared->inputs.begin(), prepared->inputs.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    prepared->call = std::move(call);
    prepared->request = std::move(request);
    if (native_.table != nullptr) {
      prepared->handle = lookup_version(*native_.table, prepared->request->model_spec());
      if (prepared->handle) {
        const VersionPayload& payload = version_payload(prepared->handle.payload());
        prepared->waits = payload.queues_requests && !payload.pends;
        prepared->native = payload.native != nullptr && payload.native->session != nullptr;
      }
    }
    if (!prepared->native && !prepared->waits) {
      prepared->handle.release();
      to_runner(*prepared);
      return {};
    }
    return [this, prepared]() { run_on_worker(*prepared); };
  }

  void handle(std::shared_ptr<Call> call) override {
    std::function<void()> rest = start(std::move(call));
    if (rest) rest();
  }

  void shutdown() override { runner_.stop(); }

 private:
  // A parsed and decoded request, between start() and the worker pool.
  struct Prepared {
    std::shared_ptr<Call> call;
    std::shared_ptr<wire::PredictRequest> request;
    std::vector<std::pair<std::string, Tensor>> inputs;
    ServableHandle handle;  // its version, when the table has it
    bool native = false;    // the version has a native form
    bool waits = false;     // its Python step waits (a TF Lite pool, a pipeline, a batch in C++)
  };

  std::function<void()> to_fallback(std::shared_ptr<Call> call) {
    return [this, call = std::move(call)]() { fallback_->handle(call); };
  }

  std::unique_ptr<PythonPredict> python_step(Prepared& prepared, bool wait) const {
    return std::make_unique<PythonPredict>(run_, tensor_content_, wait, prepared.call,
                                           prepared.request, std::move(prepared.inputs));
  }

  // Queues the Python step for the runner; any thread, without the GIL.
  void to_runner(Prepared& prepared) {
    std::unique_ptr<RunnerJob> job = python_step(prepared, /*wait=*/false);
    if (!runner_.submit(job)) {
      prepared.call->finish(
          grpc::Status(grpc::StatusCode::UNAVAILABLE, "The server is shutting down"));
    }
  }

  // On the worker pool: the native run, else the Python step.
  void run_on_worker(Prepared& prepared) {
    if (prepared.call->finished()) return;  // cancelled, or its deadline passed, meanwhile
    if (prepared.native) {
      const NativeServable& servable = *version_payload(prepared.handle.payload()).native;
      if (run_natively(*prepared.call, *prepared.request, prepared.inputs, servable,
                       prepared.handle, native_.predict)) {
        return;
      }
    }
    prepared.handle.release();
    if (!prepared.waits) {
      to_runner(prepared);
      return;
    }
    // A Python step that waits (a TF Lite interpreter pool, a pipeline's steps, a natively
    // batched SavedModel's request the native path left to Python): on this worker thread,
    // as many at once as there are workers, the GIL taken once for the whole step.
    auto job = python_step(prepared, /*wait=*/true);
    {
      py::gil_scoped_acquire gil;
      job->run();
      job->encode();
      job->drop();
    }
    job->send();
  }

  PythonRef run_;
  std::shared_ptr<Handler> fallback_;
  const bool tensor_content_;
  const std::int64_t max_tensor_bytes_;
  const int max_rank_;
  PythonRef table_keeper_;  // keeps the table alive while the server may look in it
  const NativeOptions native_;
  PythonRunner runner_;  // last: stopped before the rest goes
};

}  // namespace

std::shared_ptr<Handler> native_predict(py::object run, std::shared_ptr<Handler> fallback,
                                        bool tensor_content, std::int64_t max_tensor_bytes,
                                        int max_rank, py::object table,
                                        bool check_method_names,
                                        std::shared_ptr<RequestLog> log, int python_threads) {
  NativeOptions native;
  if (!table.is_none()) native.table = &table.cast<const ServableTable&>();
  native.predict.check_method_names = check_method_names;
  native.predict.tensor_content = tensor_content;
  native.predict.log = std::move(log);
  return std::make_shared<NativePredict>(keep(std::move(run)), std::move(fallback),
                                         tensor_content, max_tensor_bytes, max_rank,
                                         keep(std::move(table)), native, python_threads);
}

}  // namespace fastserve::binding
