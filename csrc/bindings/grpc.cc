// Python bindings of the native gRPC server (csrc/grpc). Binding only: a Python callable
// becomes a Handler that takes the GIL per call.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings/python_object.h"
#include "grpc/echo.h"
#include "grpc/request_log.h"
#include "grpc/server.h"

namespace py = pybind11;

namespace fastserve::binding {
namespace {

// Runs a Python function `dispatch(call, request_bytes) -> (code, message, response_bytes)`
// on the server's worker pool, with the GIL held only around the call.
class PythonHandler final : public Handler {
 public:
  explicit PythonHandler(PythonRef dispatch) : dispatch_(std::move(dispatch)) {}

  void handle(std::shared_ptr<Call> call) override {
    if (call->finished()) return;  // cancelled, or its deadline passed, while it waited
    grpc::Status status;
    std::string response;
    {
      py::gil_scoped_acquire gil;
      try {
        py::tuple result =
            borrow(dispatch_)(call, py::bytes(call->request())).cast<py::tuple>();
        const int code = result[0].cast<int>();
        if (code == 0) {
          response = result[2].cast<std::string>();
        } else {
          status = grpc::Status(static_cast<grpc::StatusCode>(code),
                                result[1].cast<std::string>());
        }
      } catch (py::error_already_set& error) {
        status = grpc::Status(grpc::StatusCode::INTERNAL, error.what());
      }
    }
    call->finish(status, std::move(response));
  }

 private:
  PythonRef dispatch_;
};

}  // namespace

std::shared_ptr<Handler> native_predict(py::object run, std::shared_ptr<Handler> fallback,
                                        bool tensor_content, std::int64_t max_tensor_bytes,
                                        int max_rank, py::object table, bool check_method_names,
                                        std::shared_ptr<RequestLog> log, int python_threads);

using release_gil = py::call_guard<py::gil_scoped_release>;

// ~GrpcServer() shuts the server down if Python did not: it waits for calls in flight, whose
// handlers may need the GIL, so it must not run with the GIL held.
using ServerHolder = std::unique_ptr<GrpcServer, DeleteWithoutGil<GrpcServer>>;

void bind_grpc(py::module_& m) {
  // Call's mutex guards its state: the members that take it release the GIL.
  py::class_<Call, std::shared_ptr<Call>>(m, "GrpcCall")
      .def_property_readonly("method", &Call::method)
      .def_property_readonly("peer", &Call::peer)
      .def_property_readonly("cancelled", py::cpp_function(&Call::cancelled, release_gil()))
      .def("remaining", &Call::remaining)
      .def("on_cancel", [](Call& call, py::object callback) {
        PythonRef kept = keep(std::move(callback));
        // Without the GIL: on_cancel() takes the call's mutex, and runs the callback at once
        // (which then takes the GIL itself) when the call is already cancelled.
        py::gil_scoped_release nogil;
        call.on_cancel([kept]() {
          py::gil_scoped_acquire gil;
          try {
            borrow(kept)();
          } catch (py::error_already_set& error) {
            error.discard_as_unraisable("a gRPC cancel callback");
          }
        });
      });

  py::class_<RequestLog, std::shared_ptr<RequestLog>>(m, "RequestLog")
      .def(py::init<>())
      .def("drain",
           [](RequestLog& log) {
             std::vector<RequestRecord> records;
             {
               py::gil_scoped_release nogil;
               records = log.drain();
             }
             py::list out;
             for (const RequestRecord& r : records) {
               out.append(py::make_tuple(r.model, r.code, r.micros, r.runtime_micros, r.runtime,
                                         r.peer));
             }
             return out;
           })
      .def("dropped", &RequestLog::dropped, release_gil());

  py::class_<GrpcServer, ServerHolder>(m, "GrpcServer")
      .def(py::init([](std::vector<std::string> addresses, std::optional<py::tuple> tls,
                       std::vector<std::pair<std::string, std::variant<int, std::string>>> args,
                       int max_receive_message_bytes, int max_send_message_bytes, bool health,
                       int worker_threads, py::object fallback, py::object predict,
                       bool tensor_content, std::int64_t max_tensor_bytes, int max_rank,
                       bool echo, py::object table, bool check_method_names,
                       std::shared_ptr<RequestLog> request_log) {
             GrpcServerOptions options;
             options.addresses = std::move(addresses);
             if (tls) {
               options.tls = TlsOptions{(*tls)[0].cast<std::string>(),
                                        (*tls)[1].cast<std::string>(),
                                        (*tls)[2].cast<std::string>(), (*tls)[3].cast<bool>()};
             }
             options.channel_arguments = std::move(args);
             options.max_receive_message_bytes = max_receive_message_bytes;
             options.max_send_message_bytes = max_send_message_bytes;
             options.health = health;
             options.worker_threads = worker_threads;
             ServerHolder server(new GrpcServer(std::move(options)));
             auto python = std::make_shared<PythonHandler>(keep(std::move(fallback)));
             server->set_fallback(python);
             if (echo) {
               server->route("/tensorflow.serving.PredictionService/Predict",
                             std::make_shared<EchoPredict>());
             } else if (!predict.is_none()) {
               server->route("/tensorflow.serving.PredictionService/Predict",
                             native_predict(std::move(predict), python, tensor_content,
                                            max_tensor_bytes, max_rank, std::move(table),
                                            check_method_names, std::move(request_log),
                                            worker_threads));
             }
             return server;
           }),
           py::arg("addresses"), py::arg("tls"), py::arg("channel_arguments"),
           py::arg("max_receive_message_bytes"), py::arg("max_send_message_bytes"),
           py::arg("health"), py::arg("worker_threads"), py::arg("fallback"),
           py::arg("predict") = py::none(), py::arg("tensor_content") = false,
           py::arg("max_tensor_bytes") = 0, py::arg("max_rank") = 64, py::arg("echo") = false,
           py::arg("table") = py::none(), py::arg("check_method_names") = false,
           py::arg("request_log") = nullptr)
      .def("start", &GrpcServer::start, py::call_guard<py::gil_scoped_release>())
      .def("shutdown", &GrpcServer::shutdown, py::arg("grace_seconds"),
           py::call_guard<py::gil_scoped_release>())
      .def("set_health", &GrpcServer::set_health, py::arg("service"), py::arg("serving"),
           py::call_guard<py::gil_scoped_release>())
      .def("calls", &GrpcServer::calls);
}

}  // namespace fastserve::binding
