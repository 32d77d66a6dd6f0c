"""The native gRPC floor: fastserve's own grpc++ server answering Predict in C++.

No model and no Python on the request path: the request is parsed and its inputs echoed as
outputs ("x" as "y") on gRPC's callback thread (csrc/grpc/echo.cc), by the same server,
transport and protobuf code as fastserve's native Predict. What a request costs fastserve
before any model work. Prints "ready PORT" when it serves.

    python benchmarks/floors/grpcpp_echo.py --port 0
"""

from __future__ import annotations

import argparse
import os
import signal
import threading

from fastserve._core import GrpcServer


def _unused(call: object, data: bytes) -> tuple[int, str, bytes]:
    return (12, "only Predict is served here", b"")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = GrpcServer(
        addresses=[f"{args.host}:{args.port}"],
        tls=None,
        channel_arguments=[],
        max_receive_message_bytes=2**31 - 1,
        max_send_message_bytes=2**31 - 1,
        health=False,
        worker_threads=4 * (os.cpu_count() or 1),
        fallback=_unused,
        echo=True,
    )
    port = server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"ready {port}", flush=True)
    stop.wait()
    server.shutdown(1.0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
