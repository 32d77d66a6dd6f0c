#include "grpc/call.h"

namespace fastserve {

Call::Call(std::string method, std::string request, std::string peer,
           std::optional<std::chrono::steady_clock::time_point> deadline, Responder* responder)
    : method_(std::move(method)),
      request_(std::move(request)),
      peer_(std::move(peer)),
      deadline_(deadline),
      started_(std::chrono::steady_clock::now()),
      responder_(responder) {}

Call::Call(std::string method, std::unique_ptr<const RequestBody> body, std::string peer,
           std::optional<std::chrono::steady_clock::time_point> deadline, Responder* responder)
    : method_(std::move(method)),
      body_(std::move(body)),
      peer_(std::move(peer)),
      deadline_(deadline),
      started_(std::chrono::steady_clock::now()),
      responder_(responder) {}

const std::string& Call::request() const {
  if (body_) std::call_once(joined_, [this] { request_ = body_->joined(); });
  return request_;
}

bool Call::parse_request(google::protobuf::MessageLite* message) const {
  return body_ ? body_->parse(message) : message->ParseFromString(request_);
}

std::optional<double> Call::remaining() const {
  if (!deadline_) return std::nullopt;
  const double left =
      std::chrono::duration<double>(*deadline_ - std::chrono::steady_clock::now()).count();
  return left > 0 ? left : 0.0;
}

bool Call::cancelled() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return cancelled_;
}

bool Call::finished() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return responder_ == nullptr;
}

Responder* Call::take_responder() {
  std::lock_guard<std::mutex> lock(mutex_);
  Responder* responder = responder_;
  responder_ = nullptr;
  return responder;
}

// The responder may be gone as soon as it has answered: nothing touches it after that.
bool Call::finish(const grpc::Status& status, std::string response) {
  Responder* responder = take_responder();
  if (responder == nullptr) return false;
  responder->respond(status, std::move(response));
  return true;
}

bool Call::finish_message(const google::protobuf::MessageLite& response) {
  Responder* responder = take_responder();
  if (responder == nullptr) return false;
  responder->respond_message(response);
  return true;
}

void Call::cancel() {
  std::vector<std::function<void()>> callbacks;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cancelled_) return;
    cancelled_ = true;
    callbacks.swap(on_cancel_);
  }
  finish(grpc::Status(grpc::StatusCode::CANCELLED, "The client cancelled the call"));
  for (auto& callback : callbacks) callback();
}

void Call::on_cancel(std::function<void()> callback) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!cancelled_) {
      on_cancel_.push_back(std::move(callback));
      return;
    }
  }
  callback();
}

}  // namespace fastserve
