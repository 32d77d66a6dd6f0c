"""The REST floor: a bare Starlette app that decodes a TF Serving REST Predict and echoes it.

No model, no fastserve: POST /v1/models/<name>:predict parses the JSON body with orjson and
answers {"predictions": <its "instances">} (or {"outputs": <its "inputs">}), on the event loop,
served by the HTTP server given (`--server hypercorn`, as fastserve's REST runs today, or
`--server uvicorn`, with uvloop and httptools when installed), with the server's default
settings and no access log. Prints "ready PORT" when it serves.

    python benchmarks/floors/starlette_echo.py --server hypercorn --port PORT
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def predict(request: Request) -> Response:
    doc = orjson.loads(await request.body())
    if "instances" in doc:
        body = orjson.dumps({"predictions": doc["instances"]})
    else:
        body = orjson.dumps({"outputs": doc.get("inputs")})
    return Response(body, media_type="application/json")


app = Starlette(routes=[Route("/v1/models/{name}:predict", predict, methods=["POST"])])


async def serve_hypercorn(host: str, port: int) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.keep_alive_timeout = 75.0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    task = asyncio.ensure_future(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    # Hypercorn says nothing when it listens: ready once a connection is accepted.
    while not task.done():
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        print(f"ready {port}", flush=True)
        break
    await task


def serve_uvicorn(host: str, port: int) -> None:
    import uvicorn

    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        print(f"ready {port}", flush=True)
        await task

    asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=["hypercorn", "uvicorn"], default="hypercorn")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if args.server == "hypercorn":
        asyncio.run(serve_hypercorn(args.host, args.port))
    else:
        serve_uvicorn(args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
