"""The asyncio gRPC floor: a bare grpc.aio server that decodes a PredictRequest and echoes it.

The fastest Python gRPC server on this machine (one event loop, no thread pool), answering as
floors/grpc_echo.py does: output "y" is the request's input "x", the model_spec is the
request's. No model, no fastserve. Prints "ready PORT" when it serves.

    python benchmarks/floors/grpc_aio_echo.py --port 0
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

import grpc
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc


class EchoServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    async def Predict(self, request: Any, context: Any) -> Any:
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(request.model_spec)
        for alias, tensor in request.inputs.items():
            response.outputs["y" if alias == "x" else alias].CopyFrom(tensor)
        return response


async def serve(host: str, port: int) -> None:
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", 2**31 - 1),
            ("grpc.max_send_message_length", 2**31 - 1),
            ("grpc.so_reuseport", 0),
        ]
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(EchoServicer(), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"ready {bound}", flush=True)
    await stop.wait()
    await server.stop(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
