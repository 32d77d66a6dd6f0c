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
  // The servable queues requests (batching): its runs wait for a batch, so they are not
  // given to the Python-servable runner.
  bool queues_requests = false;
  std::shared_ptr<const NativeServable> native;
};

inline const VersionPayload& version_payload(const void* payload) {
  return *static_cast<const VersionPayload*>(payload);
}

}  // namespace fastserve::binding
