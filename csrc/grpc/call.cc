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

bool Call::finish(const grpc::Status& status, std::string response) {
  Responder* responder;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    responder = responder_;
    responder_ = nullptr;
  }
  if (responder == nullptr) return false;
  // The responder may be gone as soon as it has answered: nothing touches it after this.
  responder->respond(status, std::move(response));
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
