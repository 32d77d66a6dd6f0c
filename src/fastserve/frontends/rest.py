"""The REST frontend: TF Serving's /v1/models API as a bare ASGI app.

Routing follows TF Serving's own regular expressions on the raw (still percent-encoded) path,
so names and labels are decoded exactly once and malformed paths get its 400 messages. Each
route is a plain function that calls the API layer and returns a JSON body or raises
ServingError. Quick work runs on the event loop, the rest on worker threads (rest_inline.py);
request limits, health and metrics are their own modules.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import unquote

import orjson

from fastserve.api.examples import Tasks
from fastserve.api.inference import InferenceAPI
from fastserve.codecs import protos
from fastserve.codecs import rest_json as json_tensors
from fastserve.codecs import tf_example as tf_examples
from fastserve.errors import DEFAULT_MAX_REQUEST_BYTES, ServingError, invalid_argument
from fastserve.frontends.asgi import (
    Answer,
    Headers,
    Receive,
    Scope,
    Send,
    close_websocket,
    error_answer,
    header,
    json_answer,
    lifespan,
    send_answer,
    text_answer,
)
from fastserve.frontends.rest_health import health_answer
from fastserve.frontends.rest_inline import (
    INLINE_MAX_BODY,
    InlinePolicy,
    Work,
    run_inline,
    run_on_thread,
)
from fastserve.frontends.rest_limits import ClientGone, TooLarge, decoded_body, read_body, too_large
from fastserve.frontends.rest_metrics import metrics_answer
from fastserve.observability.health import Health
from fastserve.observability.metrics import status_name
from fastserve.types import ModelSpec, RunContext

log = logging.getLogger("fastserve.rest")


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


# --- the routes' functions ----------------------------------------------------------------------


class ModelPath(NamedTuple):
    """The model a REST path names: a version number, a label, or neither (the latest)."""

    name: str
    version: int | None
    label: str | None


def predict(
    api: InferenceAPI, tasks: Tasks, model: ModelPath, body: bytes, context: RunContext
) -> bytes:
    doc = json_tensors.parse_object(body)
    spec = ModelSpec(model.name, model.version, model.label, json_tensors.signature_name(doc))
    with api.resolve(spec, rest=True) as resolved:
        inputs, fmt = json_tensors.predict_inputs(
            doc,
            resolved.signature,
            requested_signature=spec.signature_name,
            booleans_possible=b"true" in body or b"false" in body,
        )
        outputs = api.predict(resolved, inputs, context=context)
    return json_tensors.predict_response(outputs, fmt)


def _examples(model: ModelPath, body: bytes) -> tuple[ModelSpec, list[bytes]]:
    doc = json_tensors.parse_object(body)
    spec = ModelSpec(model.name, model.version, model.label, json_tensors.signature_name(doc))
    return spec, tf_examples.examples_from_json(doc)


def classify(
    api: InferenceAPI, tasks: Tasks, model: ModelPath, body: bytes, context: RunContext
) -> bytes:
    spec, examples = _examples(model, body)
    _, result = tasks.classify(spec, examples, context)
    rows = [
        [[label.decode("utf-8", "replace"), score] for label, score in row] for row in result.rows
    ]
    return json_tensors.dumps({"results": rows})


def regress(
    api: InferenceAPI, tasks: Tasks, model: ModelPath, body: bytes, context: RunContext
) -> bytes:
    spec, examples = _examples(model, body)
    _, result = tasks.regress(spec, examples, context)
    return json_tensors.dumps({"results": result.values})


def status(api: InferenceAPI, model: ModelPath) -> bytes:
    statuses = api.model_status(model.name, model.version, model.label)
    return orjson.dumps(protos.model_status_json(statuses))


def metadata(api: InferenceAPI, model: ModelPath) -> bytes:
    name, served, signatures = api.metadata(ModelSpec(model.name, model.version, model.label))
    return orjson.dumps(protos.metadata_json(name, served, signatures))


Verb = Callable[[InferenceAPI, Tasks, ModelPath, bytes, RunContext], bytes]
Reader = Callable[[InferenceAPI, ModelPath], bytes]

# The routes, as TF Serving's http_rest_api_handler.cc matches them:
# POST /v1/models/<model>[/versions/<n>|/labels/<label>]:<verb>
_POST = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
VERBS: dict[str, Verb] = {"predict": predict, "classify": classify, "regress": regress}
# GET /v1/models/<model>[/versions/<n>|/labels/<label>][/metadata]
_GET = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)
READERS: dict[str | None, Reader] = {None: status, "metadata": metadata}


# --- the app ------------------------------------------------------------------------------------

_MAX_VERSION = 2**63 - 1
# The methods any path answers; others get 405 (as the Starlette app did).
_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD")
_ALLOW = ((b"allow", ", ".join(_METHODS).encode("latin-1")),)
# TF Serving's CORS headers (model_servers/http_server.cc).
_CORS_HEADERS: Headers = (
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"POST, GET"),
    (b"access-control-allow-headers", b"Content-Type"),
)


def _version(text: str | None) -> int | None:
    if text is None:
        return None
    value = int(text)
    if value > _MAX_VERSION:
        raise invalid_argument(f"Failed to convert version: {text} to numeric.")
    return value


def _error(error: ServingError) -> Answer:
    return error_answer(error.message, error.http_status)


def _model_path(name: str, version: str | None, label: str | None) -> ModelPath:
    return ModelPath(unquote(name), _version(version), unquote(label) if label else None)


class RestApp:
    """The ASGI app: the routes above, the health and metrics endpoints, and TF Serving's
    answers to everything else."""

    def __init__(self, api: InferenceAPI, tasks: Tasks, options: RestOptions) -> None:
        self._api = api
        self._tasks = tasks
        self._options = options
        self._cors: Headers = _CORS_HEADERS if options.cors else ()
        self._timeout = options.timeout if options.timeout > 0 else None
        self._inline = InlinePolicy(options.inline_seconds)
        self._limit = options.max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "lifespan":
                await lifespan(receive, send)
            elif kind == "websocket":
                await close_websocket(send)
            return
        try:
            answer = await self._answer(scope, receive)
        except ClientGone:
            return  # nobody is left to answer
        except Exception:  # a bug of ours: answer 500, keep serving
            log.exception("the REST request %s %s failed", scope["method"], scope["path"])
            answer = (text_answer("Internal Server Error", 500), ())
        await send_answer(send, *answer)

    async def _answer(self, scope: Scope, receive: Receive) -> tuple[Answer, Headers]:
        """The answer to a request, and the headers to add to it (CORS for the API's)."""
        method: str = scope["method"]
        if not scope["path"].startswith("/"):
            return text_answer("Not Found", 404), ()
        if method not in _METHODS:
            return text_answer("Method Not Allowed", 405, _ALLOW), ()
        raw = scope.get("raw_path") or scope["path"].encode("utf-8")
        path = raw.decode("latin-1")
        query = scope.get("query_string", b"")
        if query:
            # TF Serving matches its routes against the path with its query: /v1/...?x=1 is
            # a malformed request, not the route without the query.
            path += "?" + query.decode("latin-1")
        options = self._options
        if options.metrics_path is not None:
            answer = metrics_answer(self._api.metrics, options.metrics_path, path)
            if answer is not None:
                return answer, ()
        if options.health is not None:
            answer = health_answer(options.health, method, path)
            if answer is not None:
                return answer, ()
        if path[:4].lower() != "/v1/":
            return text_answer("Not Found", 404), ()
        try:
            if method == "POST":
                match = _POST.fullmatch(path)
                if match and match.group(4).islower():
                    return await self._post(scope, receive, match), self._cors
            elif method == "GET":
                match = _GET.fullmatch(path)
                if match:
                    return await self._get(match), self._cors
            elif method == "OPTIONS" and options.cors:
                return Answer(200, b"", None), self._cors  # a CORS preflight
            raise invalid_argument(f"Malformed request: {method} {path}")
        except ServingError as error:
            return _error(error), self._cors

    async def _post(self, scope: Scope, receive: Receive, match: re.Match[str]) -> Answer:
        name, version, label, verb = match.groups()
        model = _model_path(name, version, label)
        encoding = header(scope, b"content-encoding")
        started = time.perf_counter()
        try:
            raw = await read_body(receive, header(scope, b"content-length"), self._limit)
        except TooLarge as error:
            return too_large(error.args[0], self._limit)
        handler = VERBS[verb]
        api, tasks = self._api, self._tasks

        def work(context: RunContext) -> bytes:
            # Inflating a body is CPU work: it belongs where the request's work runs.
            body = decoded_body(encoding.decode("latin-1"), raw) if encoding else raw
            return handler(api, tasks, model, body, context)

        # Small bodies of a model version whose requests are quick may run inline; the
        # version the request names decides, not the latest.
        key = (
            (model.name, model.version, model.label, verb) if len(raw) <= INLINE_MAX_BODY else None
        )
        answer, code = await self._run(work, key)
        micros = (time.perf_counter() - started) * 1e6
        api.metrics.request(model.name, verb.capitalize(), "REST", code, micros)
        return answer

    async def _get(self, match: re.Match[str]) -> Answer:
        name, version, label, kind = match.groups()
        if not name:
            raise invalid_argument("Missing model name in request.")
        model = _model_path(name, version, label)
        reader = READERS["metadata" if kind else None]
        api = self._api
        answer, _ = await self._run(lambda _: reader(api, model), None)
        return answer

    async def _run(
        self, work: Work, key: tuple[str, int | None, str | None, str] | None
    ) -> tuple[Answer, str]:
        """The answer, and the status name the metrics count it under. Work whose recent
        runs under `key` were quick runs on the event loop (see InlinePolicy)."""
        # The request's deadline and cancellation reach queued work (a batch queue drops
        # a task whose client went away or whose deadline passed).
        context = RunContext.within(self._timeout)
        inline = self._inline
        try:
            if (
                key is not None
                and inline.allows(key)
                and not self._api.queues(ModelSpec(key[0], key[1], key[2]))
            ):
                body = run_inline(work, context, inline, key)
            else:
                body = await run_on_thread(
                    work, context, self._timeout, inline if key is not None else None, key
                )
        except ServingError as error:
            return _error(error), status_name(error)
        return json_answer(body), "OK"


def create_app(api: InferenceAPI, tasks: Tasks, options: RestOptions | None = None) -> RestApp:
    return RestApp(api, tasks, options or RestOptions())
