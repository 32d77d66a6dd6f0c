// Requests answered by the native Predict path, kept for Python to count (metrics) and log
// (the access log) off the request path: the request thread appends a record, a Python
// thread drains them in bulk.
//
// Threads: never touches Python. add(), drain() and dropped() may be called from any thread,
// with or without the GIL; each takes the log's mutex briefly, so Python callers release the
// GIL around them.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace fastserve {

struct RequestRecord {
  std::string model;
  int code = 0;               // gRPC status code
  double micros = 0;          // request latency
  double runtime_micros = 0;  // the servable's computation (0 if it did not run)
  std::string runtime;        // the runtime_latency metric's label
  std::string peer;
};

class RequestLog {
 public:
  // Past this many undrained records new ones are dropped (and counted).
  static constexpr std::size_t kCapacity = 1 << 20;

  void add(RequestRecord record);
  std::vector<RequestRecord> drain();
  std::int64_t dropped() const;

 private:
  mutable std::mutex mutex_;
  std::vector<RequestRecord> records_;
  std::int64_t dropped_ = 0;
};

}  // namespace fastserve
