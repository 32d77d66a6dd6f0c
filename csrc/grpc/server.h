// fastserve's gRPC server: grpc++'s callback API, every method through one generic service.
//
// A call's request bytes go to the handler registered for its method (exact path, e.g.
// "/tensorflow.serving.PredictionService/Predict"), or else to the fallback handler. A
// handler marked inline runs on gRPC's own callback thread and must not block; the others
// start there (Handler::start, which must not block either) and do the rest on the server's
// worker pool, where they may wait (take the GIL, run a Python servable).
// grpc.health.v1.Health is grpc++'s own service, its statuses set with set_health().
//
// Threads: never touches Python itself. route() and set_fallback() are called before start(),
// on the thread that builds the server. start(), shutdown(), set_health() and calls() may then
// be called from any thread but a handler's; shutdown() (and the destructor, which shuts down a
// server still running) blocks until calls end, and handlers on the worker pool may need the
// GIL, so it must be called without the GIL (the bindings release it, also when Python drops
// the server). Handlers are called without any lock of the server held.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "grpc/call.h"
#include "grpc/worker_pool.h"

namespace grpc {
class Server;
class CallbackGenericService;
}  // namespace grpc

namespace fastserve {

class Handler {
 public:
  virtual ~Handler() = default;
  // Answers `call` (now or later, from any thread) with call->finish().
  virtual void handle(std::shared_ptr<Call> call) = 0;
  // Whether handle() never blocks, so it may run on gRPC's callback thread.
  virtual bool runs_inline() const { return false; }
  // For a handler that does not run inline: called first, on gRPC's callback thread, and
  // must not block. Returns the work left for the worker pool, or an empty function once it
  // answered the call or handed it on. By default all of handle() is left to the pool.
  virtual std::function<void()> start(std::shared_ptr<Call> call) {
    return [this, call = std::move(call)]() { handle(call); };
  }
  // Called once by GrpcServer::shutdown(), without the GIL, after the server stopped taking
  // calls and its worker pool ran its last job: a handler that answers calls on threads of
  // its own answers every call it holds before returning.
  virtual void shutdown() {}
};

struct TlsOptions {
  std::string server_key;
  std::string server_cert;
  std::string custom_ca;
  bool client_verify = false;
};

struct GrpcServerOptions {
  std::vector<std::string> addresses;  // "host:port" or "unix:/path"
  std::optional<TlsOptions> tls;
  // Given by the user first; a default below is only added when its key is not among them.
  std::vector<std::pair<std::string, std::variant<int, std::string>>> channel_arguments;
  int max_receive_message_bytes = 4 << 20;
  int max_send_message_bytes = -1;
  bool health = false;
  int worker_threads = 4;
};

class GrpcServer {
 public:
  explicit GrpcServer(GrpcServerOptions options);
  ~GrpcServer();  // shutdown(0) if still running
  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;

  // Before start(): who answers which method.
  void route(const std::string& method, std::shared_ptr<Handler> handler);
  void set_fallback(std::shared_ptr<Handler> handler);

  // Binds every address and starts serving. Returns the TCP port bound by the first
  // address, or throws std::runtime_error naming the address that could not be bound.
  int start();
  // Stops accepting calls, lets calls in flight finish for up to `grace_seconds`, cancels
  // the rest, then stops the worker pool and shuts the handlers down. Idempotent.
  void shutdown(double grace_seconds);
  void set_health(const std::string& service, bool serving);

  // Calls dispatched so far (for tests and benchmarks).
  std::int64_t calls() const;

 private:
  class Service;
  friend class Service;
  void dispatch(std::shared_ptr<Call> call);

  GrpcServerOptions options_;
  std::map<std::string, std::shared_ptr<Handler>> routes_;
  std::shared_ptr<Handler> fallback_;
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  std::mutex mutex_;  // shutdown
  bool stopped_ = false;
  std::atomic<std::int64_t> calls_{0};
};

}  // namespace fastserve
