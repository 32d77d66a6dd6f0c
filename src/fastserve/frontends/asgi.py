"""Plain ASGI for the REST frontend: an answer (status, headers, body) and how it is sent.

The REST app is a bare ASGI callable: a framework's routing, request and response objects
cost more per request than TF Serving's whole :predict of a small model. The headers written
are the ones Starlette wrote before (content-length, then content-type with a charset for
text), so clients see the same answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = Sequence[tuple[bytes, bytes]]

JSON = b"application/json"
TEXT = b"text/plain; charset=utf-8"


class Answer:
    """An HTTP answer: status, body, content type (None: no content-type header) and any
    further headers."""

    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes = b"",
        content_type: bytes | None = JSON,
        headers: Headers = (),
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers


def json_answer(body: bytes, status: int = 200) -> Answer:
    return Answer(status, body)


def error_answer(message: str, status: int) -> Answer:
    """TF Serving's error body: {"error": "..."}."""
    return Answer(status, orjson.dumps({"error": message}))


def text_answer(text: str, status: int, headers: Headers = ()) -> Answer:
    return Answer(status, text.encode("utf-8"), TEXT, headers)


async def send_answer(send: Send, answer: Answer, extra: Headers = ()) -> None:
    """Sends `answer`, with the `extra` headers after its own."""
    body = answer.body
    headers = [(b"content-length", str(len(body)).encode("latin-1"))]
    if answer.content_type is not None:
        headers.append((b"content-type", answer.content_type))
    if answer.headers:
        headers.extend(answer.headers)
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of the request header `name` (lower case), or None."""
    for key, value in scope["headers"]:
        if key == name:  # ASGI servers give header names in lower case
            return bytes(value)
    return None


async def lifespan(receive: Receive, send: Send) -> None:
    """ASGI's lifespan protocol, with nothing to start or stop (Hypercorn always speaks it)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def close_websocket(send: Send) -> None:
    """No WebSockets are served: a WebSocket handshake is refused."""
    await send({"type": "websocket.close", "code": 1000, "reason": ""})
