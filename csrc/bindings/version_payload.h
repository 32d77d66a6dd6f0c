// What the servable table holds for each version (its opaque Payload): the Python servable,
// and its native form when it has one (requests for a version without one take the Python
// path).
//
// Threads: built with the GIL (ServableTable.add); read from any thread. `python` is only
// touched with the GIL; `native` without it.
#pragma once

#include <memory>

#include "bindings/python_object.h"
#include "runners/native_servable.h"

namespace fastserve::binding {

struct VersionPayload {
  PythonRef python;
  // The servable queues requests (batching, a pool): its runs wait, so they are not given to
  // the Python-servable runner...
  bool queues_requests = false;
  // ...unless it pends: its start() queues a request and returns Pending on the queue's task
  // (a Python servable's batch queue), which the runner waits for without a thread.
  bool pends = false;
  std::shared_ptr<const NativeServable> native;
};

inline const VersionPayload& version_payload(const void* payload) {
  return *static_cast<const VersionPayload*>(payload);
}

}  // namespace fastserve::binding
