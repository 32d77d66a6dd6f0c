// The native transport floor for the benchmarks: Predict answered in C++ on gRPC's callback
// thread, its inputs echoed as outputs ("x" as "y"), no servable, no Python.
//
// Threads: handle() runs on any thread, without the GIL; it never blocks.
#pragma once

#include "grpc/server.h"

namespace fastserve {

class EchoPredict final : public Handler {
 public:
  void handle(std::shared_ptr<Call> call) override;
  bool runs_inline() const override { return true; }
};

}  // namespace fastserve
