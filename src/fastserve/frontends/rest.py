"""The REST frontend: TF Serving's /v1/models API as a Starlette app.

Routing follows TF Serving's own regular expressions on the raw (still percent-encoded) path,
so names and labels are decoded exactly once and malformed paths get its 400 messages. Work
that touches models runs on a worker thread; the event loop only moves bytes.
"""

from __future__ import annotations

import asyncio
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from fastserve.api.examples import Tasks
from fastserve.api.inference import InferenceAPI
from fastserve.codecs import protos
from fastserve.codecs import rest_json as json_tensors
from fastserve.codecs import tf_example as tf_examples
from fastserve.errors import (
    DEFAULT_MAX_REQUEST_BYTES,
    Code,
    ServingError,
    from_exception,
    invalid_argument,
)
from fastserve.observability.health import Health
from fastserve.observability.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from fastserve.observability.metrics import status_name
from fastserve.types import ModelSpec, RunContext

_V1 = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)
_POST = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
_GET = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)
_MAX_VERSION = 2**63 - 1
_JSON = "application/json"
_ALL_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]


def _json(body: bytes, status: int = 200) -> Response:
    return Response(content=body, status_code=status, media_type=_JSON)


def _error(error: ServingError) -> Response:
    return _json(json_tensors.error_body(error.message), error.http_status)


def _version(text: str | None) -> int | None:
    if text is None:
        return None
    value = int(text)
    if value > _MAX_VERSION:
        raise invalid_argument(f"Failed to convert version: {text} to numeric.")
    return value


@dataclass(frozen=True)
class RestOptions:
    """--rest_api_enable_cors_support, --rest_api_timeout_in_ms in seconds (0: none), the
    Prometheus path (None: no endpoint), the health checks (None: no /v1/health routes) and
    the largest request body accepted."""

    cors: bool = False
    timeout: float = 30.0
    metrics_path: str | None = None
    health: Health | None = None
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    # Requests of a model whose recent runs took less than this run on the event loop.
    inline_seconds: float = 0.0005


# TF Serving's limit on a gunzipped request body (its zlib wrapper's kMaxUncompressedBytes).
MAX_GUNZIPPED_BYTES = 100 * 1024 * 1024

# TF Serving's CORS headers (model_servers/http_server.cc).
_CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, GET",
    "Access-Control-Allow-Headers": "Content-Type",
}


def _decoded_body(encoding: str, body: bytes) -> bytes:
    """The request body, gunzipped when the client says it is gzip-encoded."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if "gzip" in encoding:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            plain = inflater.decompress(body, MAX_GUNZIPPED_BYTES + 1)
        except zlib.error as error:
            raise invalid_argument(f"Failed to decompress gzip request body: {error}") from None
        if len(plain) > MAX_GUNZIPPED_BYTES:
            raise invalid_argument(
                f"Failed to decompress gzip request body: it is larger than "
                f"{MAX_GUNZIPPED_BYTES} bytes"
            )
        if not inflater.eof:
            raise invalid_argument("Failed to decompress gzip request body: it is truncated")
        return plain
    raise invalid_argument(f"Unsupported Content-Encoding: {encoding}")


class _TooLarge(Exception):
    pass


# How much of a refused body is still read (and dropped) so that the client, still sending,
# gets the 413: closing on a client mid-send resets the connection and loses the answer.
_DRAIN_BYTES = 64 * 1024 * 1024


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body; _TooLarge (carrying the size seen) when it is longer than `limit`
    bytes, without keeping more than `limit` bytes of it."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        if int(declared) <= limit + _DRAIN_BYTES:
            await _drain(request)
        raise _TooLarge(int(declared))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            await _drain(request)
            raise _TooLarge(size)
        chunks.append(chunk)
    return b"".join(chunks)


async def _drain(request: Request) -> None:
    dropped = 0
    async for chunk in request.stream():
        dropped += len(chunk)
        if dropped > _DRAIN_BYTES:
            return


def _too_large(size: int, limit: int) -> Response:
    message = (
        f"Request body of {size} bytes or more is larger than the server's limit of "
        f"{limit} bytes (--max_request_bytes)"
    )
    return _json(json_tensors.error_body(message), 413)


# What the inline policy tells apart: (model, version, label, verb) as the request names them.
_InlineKey = tuple[str, int | None, str | None, str]

# Bodies larger than this never run on the event loop (their decoding alone takes time).
_INLINE_MAX_BODY = 64 * 1024


class _InlinePolicy:
    """Which requests run on the event loop instead of a worker thread.

    Handing a request to a worker thread and back costs two thread switches, and the worker
    then competes with the event loop for the GIL: for a model that answers in microseconds
    this costs more than the model. So requests of a kind (model, version or label, verb)
    whose recent runs took less than `threshold` seconds (an exponential average), nearly
    all of it computing on the calling thread, run inline. The first request of each kind
    and slower ones go to the worker threads, and a slow request inline moves its kind back
    there. Work that mostly waits (a servable waiting on another thread or process) does not
    run inline: the loop would wait with it; nor do requests of a batched version (the
    caller checks the version the request resolves to). 0 turns this off.
    """

    _WEIGHT = 0.2
    _MAX_KEYS = 10_000  # keys come from clients' requests: keep them bounded

    def __init__(self, threshold: float) -> None:
        self._threshold = threshold
        self._average: dict[object, tuple[float, float]] = {}  # key -> (wall, waiting)

    def allows(self, key: object) -> bool:
        average = self._average.get(key)
        if average is None:
            return False
        wall, waiting = average
        return wall < self._threshold and waiting < self._threshold / 2

    def observe(self, key: object, wall: float, cpu: float) -> None:
        if self._threshold <= 0:
            return
        waiting = max(0.0, wall - cpu)
        average = self._average.get(key)
        if average is None:
            if len(self._average) < self._MAX_KEYS:
                self._average[key] = (wall, waiting)
            return
        weight = self._WEIGHT
        self._average[key] = (
            average[0] + weight * (wall - average[0]),
            average[1] + weight * (waiting - average[1]),
        )

    def observe_task(self, key: object, task: asyncio.Future[tuple[bytes, float, float]]) -> None:
        if not task.cancelled() and task.exception() is None:
            _, wall, cpu = task.result()
            self.observe(key, wall, cpu)


def _timed(work: Callable[..., bytes], *args: Any) -> tuple[bytes, float, float]:
    """Runs `work`; its result, wall seconds and this thread's CPU seconds."""
    started, cpu = time.perf_counter(), time.thread_time()
    body = work(*args)
    return body, time.perf_counter() - started, time.thread_time() - cpu


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Collects the outcome of work whose client stopped waiting for it (or asyncio would
    log it as never retrieved)."""
    if not task.cancelled():
        task.exception()


def _health_response(unready: dict[str, str]) -> Response:
    if unready:
        return _json(orjson.dumps({"status": "NOT_READY", "unready": unready}), 503)
    return _json(orjson.dumps({"status": "READY"}))


class RestHandlers:
    """Plain functions behind the routes; each returns a response body or raises ServingError."""

    def __init__(self, api: InferenceAPI, tasks: Tasks) -> None:
        self._api = api
        self._tasks = tasks

    def predict(
        self,
        name: str,
        version: int | None,
        label: str | None,
        body: bytes,
        context: RunContext | None = None,
    ) -> bytes:
        doc = json_tensors.parse_object(body)
        spec = ModelSpec(name, version, label, json_tensors.signature_name(doc))
        resolved = self._api.resolve(spec, rest=True)
        try:
            inputs, fmt = json_tensors.predict_inputs(
                doc,
                resolved.signature,
                requested_signature=spec.signature_name,
                booleans_possible=b"true" in body or b"false" in body,
            )
            outputs = self._api.predict(resolved, inputs, context=context)
        finally:
            resolved.release()
        return json_tensors.predict_response(outputs, fmt)

    def classify(
        self,
        name: str,
        version: int | None,
        label: str | None,
        body: bytes,
        context: RunContext | None = None,
    ) -> bytes:
        spec, examples = self._examples(name, version, label, body)
        _, result = self._tasks.classify(spec, examples, context)
        rows = [
            [[label.decode("utf-8", "replace"), score] for label, score in row]
            for row in result.rows
        ]
        return json_tensors.dumps({"results": rows})

    def regress(
        self,
        name: str,
        version: int | None,
        label: str | None,
        body: bytes,
        context: RunContext | None = None,
    ) -> bytes:
        spec, examples = self._examples(name, version, label, body)
        _, result = self._tasks.regress(spec, examples, context)
        return json_tensors.dumps({"results": result.values})

    @staticmethod
    def _examples(
        name: str, version: int | None, label: str | None, body: bytes
    ) -> tuple[ModelSpec, list[bytes]]:
        doc = json_tensors.parse_object(body)
        spec = ModelSpec(name, version, label, json_tensors.signature_name(doc))
        return spec, tf_examples.examples_from_json(doc)

    def status(
        self, name: str, version: int | None, label: str | None, context: RunContext | None = None
    ) -> bytes:
        statuses = self._api.model_status(name, version, label)
        return orjson.dumps(protos.model_status_json(statuses))

    def metadata(
        self, name: str, version: int | None, label: str | None, context: RunContext | None = None
    ) -> bytes:
        model, served, signatures = self._api.metadata(ModelSpec(name, version, label))
        return orjson.dumps(protos.metadata_json(model, served, signatures))


def create_app(api: InferenceAPI, tasks: Tasks, options: RestOptions | None = None) -> Starlette:
    options = options or RestOptions()
    handlers = RestHandlers(api, tasks)
    extra_headers = _CORS_HEADERS if options.cors else {}
    timeout = options.timeout if options.timeout > 0 else None

    def respond(response: Response) -> Response:
        response.headers.update(extra_headers)
        return response

    async def run(
        work: Callable[..., bytes], *args: Any, inline_key: _InlineKey | None = None
    ) -> tuple[Response, str]:
        """The response, and the status name the metrics count it under. Work whose recent
        runs under `inline_key` were quick runs on the event loop (see _InlinePolicy)."""
        # The request's deadline and cancellation reach queued work (a batch queue drops
        # a task whose client went away or whose deadline passed).
        context = RunContext.within(timeout)
        if (
            inline_key is not None
            and inline.allows(inline_key)
            and not api.queues(ModelSpec(inline_key[0], inline_key[1], inline_key[2]))
        ):
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                body = work(*args, context)
                return respond(_json(body)), "OK"
            except ServingError as error:
                return respond(_error(error)), status_name(error)
            except Exception as error:  # a bug of ours: answer 500, keep serving
                return respond(_error(from_exception(error))), "INTERNAL"
            finally:
                wall = time.perf_counter() - started
                inline.observe(inline_key, wall, time.thread_time() - cpu)
        # Shielded: a request that times out, or whose client goes away, keeps its worker
        # thread until its work returns (work not started returns at once, see RunContext),
        # so --rest_api_num_threads bounds the threads busy with requests.
        task = asyncio.ensure_future(run_in_threadpool(_timed, work, *args, context))
        task.add_done_callback(_retrieve)
        if inline_key is not None:
            task.add_done_callback(lambda done: inline.observe_task(inline_key, done))
        try:
            body, _, _ = await asyncio.wait_for(asyncio.shield(task), timeout)
            return respond(_json(body)), "OK"
        except ServingError as error:
            return respond(_error(error)), status_name(error)
        except (TimeoutError, asyncio.TimeoutError):  # distinct classes before Python 3.11
            # Work not started is dropped; work running finishes and its result is dropped.
            context.cancel()
            expired = ServingError(Code.DEADLINE_EXCEEDED, "Timed out waiting for notification")
            return respond(_error(expired)), status_name(expired)
        except asyncio.CancelledError:
            context.cancel()  # the client went away
            raise
        except BaseException as error:  # a bug of ours: answer 500, keep serving
            return respond(_error(from_exception(error))), "INTERNAL"

    inline = _InlinePolicy(options.inline_seconds)
    metrics = api.metrics
    health = options.health
    limit = options.max_request_bytes

    def special(method: str, path: str) -> Response | None:
        """The routes outside TF Serving's /v1/models API: metrics and health."""
        if options.metrics_path is not None and path.startswith(options.metrics_path):
            if path != options.metrics_path:  # TF Serving's answer to a query or suffix
                return PlainTextResponse(
                    f"Unexpected path: {path}. Should be {options.metrics_path}", 400
                )
            return Response(metrics.exposition(), media_type=METRICS_CONTENT_TYPE)
        if health is not None and method in ("GET", "HEAD"):
            if path == "/v1/health/live":
                return _json(b'{"status":"LIVE"}')
            if path == "/v1/health/ready":
                return _health_response(health.unready())
            if path.startswith("/v1/health/ready/"):
                name = unquote(path[len("/v1/health/ready/") :])
                if name not in health.configured():
                    return _error(ServingError(Code.NOT_FOUND, f"Model {name} is not configured"))
                ready = health.model_ready(name)
                return _health_response({} if ready else {name: "no version is AVAILABLE"})
        return None

    async def dispatch(request: Request) -> Response:
        raw = request.scope.get("raw_path") or request.scope["path"].encode("utf-8")
        path = raw.decode("latin-1")
        query = request.scope.get("query_string", b"")
        if query:
            # TF Serving matches its routes against the path with its query: /v1/...?x=1 is
            # a malformed request, not the route without the query.
            path += "?" + query.decode("latin-1")
        method = request.method
        answer = special(method, path)
        if answer is not None:
            return answer
        if not _V1.fullmatch(path):
            return PlainTextResponse("Not Found", status_code=404)
        try:
            if method == "OPTIONS" and options.cors:
                return respond(Response(status_code=200))  # a CORS preflight
            if method == "POST":
                match = _POST.fullmatch(path)
                if match and match.group(4).islower():
                    name, version, label, verb = match.groups()
                    name, label = unquote(name), unquote(label) if label else None
                    parsed = _version(version)
                    encoding = request.headers.get("content-encoding", "")
                    started = time.perf_counter()
                    try:
                        raw = await _read_body(request, limit)
                    except _TooLarge as error:
                        return respond(_too_large(error.args[0], limit))
                    handler = getattr(handlers, verb)

                    def work(context: RunContext) -> bytes:
                        # Inflating a body is CPU work: it belongs on the worker thread.
                        body = _decoded_body(encoding, raw)
                        return handler(name, parsed, label, body, context)

                    # Small bodies of a model version whose requests are quick may run
                    # inline; the version the request names decides, not the latest.
                    key = (name, parsed, label, verb) if len(raw) <= _INLINE_MAX_BODY else None
                    response, status = await run(work, inline_key=key)
                    micros = (time.perf_counter() - started) * 1e6
                    metrics.request(name, verb.capitalize(), "REST", status, micros)
                    return response
            elif method == "GET":
                match = _GET.fullmatch(path)
                if match:
                    name, version, label, metadata = match.groups()
                    if not name:
                        raise invalid_argument("Missing model name in request.")
                    name, label = unquote(name), unquote(label) if label else None
                    parsed = _version(version)
                    reader = handlers.metadata if metadata else handlers.status
                    response, _ = await run(reader, name, parsed, label)
                    return response
            raise invalid_argument(f"Malformed request: {method} {path}")
        except ServingError as error:
            return respond(_error(error))

    return Starlette(routes=[Route("/{path:path}", dispatch, methods=_ALL_METHODS)])
