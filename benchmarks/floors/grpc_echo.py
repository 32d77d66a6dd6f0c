"""The gRPC floor: a bare grpcio server that decodes a PredictRequest and echoes its input.

No model, no fastserve: TF Serving's PredictionService/Predict on grpcio's synchronous server
with a thread pool as large as fastserve's default (4 per CPU), the messages parsed and built
by the same generated protobuf classes. The answer is a PredictResponse whose output "y" is
the request's input "x" and whose model_spec is the request's. Prints "ready PORT" when it
serves.

    python benchmarks/floors/grpc_echo.py --port 0 [--threads N]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc


def echo(request: Any) -> Any:
    """The floors' answer: the request's model_spec, and its inputs as outputs ("x" as "y")."""
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    for alias, tensor in request.inputs.items():
        response.outputs["y" if alias == "x" else alias].CopyFrom(tensor)
    return response


class EchoServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def Predict(self, request: Any, context: Any) -> Any:
        return echo(request)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--threads", type=int, default=4 * (os.cpu_count() or 1))
    args = parser.parse_args()
    server = grpc.server(
        ThreadPoolExecutor(max_workers=args.threads),
        options=[
            ("grpc.max_receive_message_length", 2**31 - 1),
            ("grpc.max_send_message_length", 2**31 - 1),
            ("grpc.so_reuseport", 0),
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(EchoServicer(), server)
    port = server.add_insecure_port(f"{args.host}:{args.port}")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"ready {port}", flush=True)
    stop.wait()
    server.stop(1).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
