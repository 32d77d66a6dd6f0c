"""NVIDIA Triton (the tritonserver bundled in nvidia-pytriton) serving half_plus_two through
its Python backend: PyTriton binds a Python function, which Triton's Python-backend stub calls
over shared memory/ZeroMQ, to the model "half_plus_two" (V2 input "x" FP32 [n] -> "y").

Run by benchmarks/peers.py with the triton virtualenv's interpreter (benchmarks/setup_peers.sh),
with LD_LIBRARY_PATH holding that interpreter's lib folder (the backend stub loads libpython):

    .venvs/triton/bin/python peer_runtimes/triton_server.py --model DIR --http-port N \
        --grpc-port N --metrics-port N
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
from half_plus_two_session import HalfPlusTwo
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

MODEL = "half_plus_two"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the half_plus_two SavedModel folder")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    model = HalfPlusTwo(args.model)

    def infer(requests: list) -> list[dict[str, np.ndarray]]:
        return [{"y": model(request["x"])} for request in requests]

    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.http_port,
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        log_verbose=0,
    )
    with Triton(config=config) as triton:
        triton.bind(
            model_name=MODEL,
            infer_func=infer,
            inputs=[Tensor(name="x", dtype=np.float32, shape=(-1,))],
            outputs=[Tensor(name="y", dtype=np.float32, shape=(-1,))],
            # Triton's batching off (max_batch_size 0): x arrives as sent, shape [n].
            config=ModelConfig(batching=False),
            strict=True,
        )
        print("triton_server: serving", MODEL, flush=True)
        triton.serve()


if __name__ == "__main__":
    main()
