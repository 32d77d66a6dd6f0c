#include "grpc/request_log.h"

namespace fastserve {

void RequestLog::add(RequestRecord record) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (records_.size() >= kCapacity) {
    ++dropped_;
    return;
  }
  records_.push_back(std::move(record));
}

std::vector<RequestRecord> RequestLog::drain() {
  std::vector<RequestRecord> out;
  std::lock_guard<std::mutex> lock(mutex_);
  out.swap(records_);
  return out;
}

std::int64_t RequestLog::dropped() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return dropped_;
}

}  // namespace fastserve
