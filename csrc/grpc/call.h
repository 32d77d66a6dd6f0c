// One unary gRPC call as the server's handlers see it: the method, the request's bytes, the
// client's deadline and address, and one way to answer.
//
// The request's bytes may stay as the transport holds them (a RequestBody: gRPC's slices),
// parsed in place (parse_request) and joined into one string only when someone asks for it
// (request(): the Python handlers); an OK answer's message may be handed over unserialized
// (finish_message), for the responder to serialize straight into the transport's buffer.
//
// Threads: every member may be called from any thread, with or without the GIL; none takes the
// GIL itself. cancelled(), finished(), finish(), cancel() and on_cancel() take the call's mutex
// (briefly; no callback runs under it), so Python callers release the GIL around them. cancel()
// runs the cancel callbacks, and on_cancel() runs its callback at once on a call already
// cancelled: callbacks that need the GIL take it on their own, so call these with no lock held
// that a GIL holder may wait for. finish() and cancel() race safely: the first one answers the
// call, later ones do nothing.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <google/protobuf/message_lite.h>
#include <grpcpp/support/status.h>

namespace fastserve {

// What answers the RPC on the wire (the server's reactor). One of its functions is called,
// once.
class Responder {
 public:
  virtual ~Responder() = default;
  virtual void respond(const grpc::Status& status, std::string response) = 0;
  // An OK answer's message. By default serialized into a string for respond().
  virtual void respond_message(const google::protobuf::MessageLite& response) {
    respond(grpc::Status(), response.SerializeAsString());
  }
};

// A request's bytes as the transport holds them. Thread-safe (const, and immutable).
class RequestBody {
 public:
  virtual ~RequestBody() = default;
  virtual std::string joined() const = 0;
  virtual bool parse(google::protobuf::MessageLite* message) const = 0;
};

class Call {
 public:
  Call(std::string method, std::string request, std::string peer,
       std::optional<std::chrono::steady_clock::time_point> deadline, Responder* responder);
  Call(std::string method, std::unique_ptr<const RequestBody> body, std::string peer,
       std::optional<std::chrono::steady_clock::time_point> deadline, Responder* responder);
  Call(const Call&) = delete;
  Call& operator=(const Call&) = delete;

  const std::string& method() const { return method_; }
  // The request's bytes in one string (joined from the body on the first call).
  const std::string& request() const;
  // Parses the request into `message` (from the body in place, when there is one).
  bool parse_request(google::protobuf::MessageLite* message) const;
  const std::string& peer() const { return peer_; }
  std::optional<std::chrono::steady_clock::time_point> deadline() const { return deadline_; }
  // Seconds until the deadline (never negative), or nothing without one.
  std::optional<double> remaining() const;
  bool cancelled() const;
  bool finished() const;
  std::chrono::steady_clock::time_point started() const { return started_; }

  // Answers the call; false if it was already answered (or cancelled).
  bool finish(const grpc::Status& status, std::string response = {});
  // Answers OK with `response`, serialized by the responder (only if it still answers).
  bool finish_message(const google::protobuf::MessageLite& response);
  // The client went away or its deadline passed: answers CANCELLED if not yet answered, then
  // runs the cancel callbacks once.
  void cancel();
  // Runs `callback` when the call is cancelled (at once if it already was).
  void on_cancel(std::function<void()> callback);

 private:
  // Takes the responder for the one answer (null: already answered).
  Responder* take_responder();

  const std::string method_;
  const std::unique_ptr<const RequestBody> body_;  // null: the bytes are in request_
  mutable std::once_flag joined_;
  mutable std::string request_;
  const std::string peer_;
  const std::optional<std::chrono::steady_clock::time_point> deadline_;
  const std::chrono::steady_clock::time_point started_;
  mutable std::mutex mutex_;
  Responder* responder_;  // null once answered
  bool cancelled_ = false;
  std::vector<std::function<void()>> on_cancel_;
};

}  // namespace fastserve
