#include "grpc/server.h"

#include <atomic>
#include <memory>
#include <stdexcept>

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/proto_buffer_reader.h>
#if __has_include(<grpcpp/impl/proto_utils.h>)
#include <grpcpp/impl/proto_utils.h>  // grpc++ >= 1.53
#else
#include <grpcpp/impl/codegen/proto_utils.h>
#endif

namespace fastserve {
namespace {

std::string to_string(const grpc::ByteBuffer& buffer) {
  std::string out;
  out.reserve(buffer.Length());
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return out;
  for (const grpc::Slice& slice : slices) {
    out.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return out;
}

// The request as gRPC received it: parsed from its slices in place, joined only when asked.
class SliceBody final : public RequestBody {
 public:
  explicit SliceBody(grpc::ByteBuffer* taken) { buffer_.Swap(taken); }
  std::string joined() const override { return to_string(buffer_); }
  bool parse(google::protobuf::MessageLite* message) const override {
    grpc::ByteBuffer shared(buffer_);  // the same slices, for the reader to walk
    grpc::ProtoBufferReader reader(&shared);
    return message->ParseFromZeroCopyStream(&reader) && reader.status().ok();
  }

 private:
  grpc::ByteBuffer buffer_;
};

// Past this size a response is handed to gRPC in the string that holds it rather than
// copied (a copy of a small one costs less than the slice's own allocation).
constexpr std::size_t kOwnedSliceBytes = 16 * 1024;

// A slice of `bytes`: copied when small; a large one keeps the string alive until gRPC has
// sent it, so 400 KB of tensor_content is not copied once more on its way out.
grpc::Slice to_slice(std::string bytes) {
  if (bytes.size() < kOwnedSliceBytes) return grpc::Slice(bytes);
  auto owned = std::make_unique<std::string>(std::move(bytes));
  void* data = owned->data();
  const std::size_t size = owned->size();
  return grpc::Slice(
      data, size, [](void* user) { std::unique_ptr<std::string> drop(static_cast<std::string*>(user)); },
      owned.release());
}

// gRPC's infinite deadline comes as a time point far in the future: none, then.
std::optional<std::chrono::steady_clock::time_point> steady_deadline(
    std::chrono::system_clock::time_point deadline) {
  const auto now = std::chrono::system_clock::now();
  if (deadline - now > std::chrono::hours(24 * 365 * 10)) return std::nullopt;
  return std::chrono::steady_clock::now() +
         std::chrono::duration_cast<std::chrono::steady_clock::duration>(deadline - now);
}

// One call's life on the wire: read the request, hand it to the server, write the answer.
// grpc++ owns reactors by raw pointer: CreateReactor returns one, OnDone is its last callback
// and frees it.
class UnaryReactor final : public grpc::ServerGenericBidiReactor, public Responder {
 public:
  UnaryReactor(grpc::GenericCallbackServerContext* context,
               std::function<void(std::shared_ptr<Call>)> dispatch)
      : context_(context), dispatch_(std::move(dispatch)) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      finish_once(grpc::Status(grpc::StatusCode::INTERNAL, "The client sent no request message"));
      return;
    }
    auto call = std::make_shared<Call>(context_->method(), std::make_unique<SliceBody>(&request_),
                                       context_->peer(), steady_deadline(context_->deadline()),
                                       this);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cancelled_) {
        call->cancel();  // answers CANCELLED through this reactor, once
        return;
      }
      call_ = call;
    }
    dispatch_(std::move(call));
  }

  void respond(const grpc::Status& status, std::string response) override {
    if (!status.ok()) {
      finish_once(status);
      return;
    }
    if (finished_.exchange(true)) return;
    grpc::Slice slice = to_slice(std::move(response));
    response_ = grpc::ByteBuffer(&slice, 1);
    StartWriteAndFinish(&response_, grpc::WriteOptions(), status);
  }

  // Serialized straight into slices gRPC allocates (uninitialized, exactly the size).
  void respond_message(const google::protobuf::MessageLite& message) override {
    if (finished_.exchange(true)) return;
    bool own = false;
    grpc::Status serialized =
        grpc::SerializationTraits<google::protobuf::MessageLite>::Serialize(message, &response_,
                                                                            &own);
    if (!serialized.ok()) {
      Finish(serialized);
      return;
    }
    StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
  }

  // May run at the same time as OnReadDone, on another thread.
  void OnCancel() override {
    std::shared_ptr<Call> call;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      cancelled_ = true;
      call = call_;
    }
    if (call) {
      call->cancel();
    } else {
      finish_once(grpc::Status::CANCELLED);
    }
  }

  void OnDone() override { std::unique_ptr<UnaryReactor> self(this); }

 private:
  // grpc++ allows one Finish per call; a failed read, a cancellation and the answer race.
  void finish_once(const grpc::Status& status) {
    if (!finished_.exchange(true)) Finish(status);
  }

  std::atomic<bool> finished_{false};
  std::mutex mutex_;  // call_ and cancelled_
  bool cancelled_ = false;
  grpc::GenericCallbackServerContext* context_;
  std::function<void(std::shared_ptr<Call>)> dispatch_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
  std::shared_ptr<Call> call_;
};

}  // namespace

class GrpcServer::Service final : public grpc::CallbackGenericService {
 public:
  explicit Service(GrpcServer* server) : server_(server) {}
  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext* context) override {
    GrpcServer* server = server_;
    return std::make_unique<UnaryReactor>(
               context, [server](std::shared_ptr<Call> call) { server->dispatch(std::move(call)); })
        .release();
  }

 private:
  GrpcServer* server_;
};

GrpcServer::GrpcServer(GrpcServerOptions options) : options_(std::move(options)) {}

GrpcServer::~GrpcServer() { shutdown(0); }

void GrpcServer::route(const std::string& method, std::shared_ptr<Handler> handler) {
  routes_[method] = std::move(handler);
}

void GrpcServer::set_fallback(std::shared_ptr<Handler> handler) { fallback_ = std::move(handler); }

int GrpcServer::start() {
  pool_ = std::make_unique<WorkerPool>(options_.worker_threads);
  service_ = std::make_unique<Service>(this);
  grpc::EnableDefaultHealthCheckService(options_.health);

  grpc::ServerBuilder builder;
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (options_.tls) {
    grpc::SslServerCredentialsOptions ssl(
        options_.tls->client_verify ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                    : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    ssl.pem_root_certs = options_.tls->custom_ca;
    ssl.pem_key_cert_pairs.push_back({options_.tls->server_key, options_.tls->server_cert});
    credentials = grpc::SslServerCredentials(ssl);
  }
  std::vector<int> ports(options_.addresses.size(), 0);
  for (std::size_t i = 0; i < options_.addresses.size(); ++i) {
    builder.AddListeningPort(options_.addresses[i], credentials, &ports[i]);
  }
  std::map<std::string, bool> given;
  for (const auto& [key, value] : options_.channel_arguments) {
    given[key] = true;
    if (std::holds_alternative<int>(value)) {
      builder.AddChannelArgument(key, std::get<int>(value));
    } else {
      builder.AddChannelArgument(key, std::get<std::string>(value));
    }
  }
  auto fallback_int = [&](const std::string& key, int value) {
    if (!given.count(key)) builder.AddChannelArgument(key, value);
  };
  fallback_int(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, options_.max_receive_message_bytes);
  fallback_int(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, options_.max_send_message_bytes);
  // Without this, a second server could bind the same port and split the traffic.
  fallback_int(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.RegisterCallbackGenericService(service_.get());
  server_ = builder.BuildAndStart();
  for (std::size_t i = 0; i < ports.size(); ++i) {
    if (server_ == nullptr || ports[i] == 0) {
      server_.reset();
      pool_->stop();
      throw std::runtime_error("cannot listen for gRPC on " + options_.addresses[i] +
                               ": the address is in use or invalid");
    }
  }
  if (server_ == nullptr) {
    pool_->stop();
    throw std::runtime_error("cannot start the gRPC server");
  }
  return ports.empty() ? 0 : ports[0];
}

void GrpcServer::dispatch(std::shared_ptr<Call> call) {
  calls_.fetch_add(1, std::memory_order_relaxed);
  auto found = routes_.find(call->method());
  std::shared_ptr<Handler> handler = found != routes_.end() ? found->second : fallback_;
  if (!handler) {
    call->finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "Method not found"));
    return;
  }
  if (handler->runs_inline()) {
    handler->handle(std::move(call));
    return;
  }
  std::shared_ptr<Call> queued = call;
  std::function<void()> rest = handler->start(std::move(call));
  if (!rest) return;
  // The job keeps its handler alive.
  if (!pool_->submit([handler, rest = std::move(rest)]() { rest(); })) {
    queued->finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "The server is shutting down"));
  }
}

void GrpcServer::shutdown(double grace_seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (stopped_) return;
  stopped_ = true;
  if (server_) {
    if (auto* health = server_->GetHealthCheckService()) health->SetServingStatus(false);
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::duration_cast<std::chrono::system_clock::duration>(
                          std::chrono::duration<double>(grace_seconds > 0 ? grace_seconds : 0)));
    server_->Wait();
  }
  if (pool_) pool_->stop();
  for (auto& [method, handler] : routes_) handler->shutdown();
  if (fallback_) fallback_->shutdown();
}

void GrpcServer::set_health(const std::string& service, bool serving) {
  if (server_ == nullptr) return;
  if (auto* health = server_->GetHealthCheckService()) health->SetServingStatus(service, serving);
}

std::int64_t GrpcServer::calls() const { return calls_.load(std::memory_order_relaxed); }

}  // namespace fastserve
