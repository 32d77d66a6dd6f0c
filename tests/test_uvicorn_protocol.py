"""The REST server's Uvicorn protocol writes each answer to the socket in one write.

Driven as Uvicorn drives it (connection_made, data_received) on a real event loop, with a
transport that records what reaches the socket."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from fastserve.frontends.uvicorn_protocol import CoalescingHttpToolsProtocol


class RecordingTransport(asyncio.Transport):
    """Records each write that would reach the socket."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "a write after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    message = await receive()
    body = b"echo:" + message["body"]
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve(request: bytes, rounds: int = 20) -> RecordingTransport:
    async def main() -> RecordingTransport:
        config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False)
        config.load()
        protocol = CoalescingHttpToolsProtocol(config, ServerState(), {})
        transport = RecordingTransport()
        protocol.connection_made(transport)
        protocol.data_received(request)
        for _ in range(rounds):  # let the app's task run and the writes flush
            await asyncio.sleep(0)
        protocol.connection_lost(None)
        return transport

    return asyncio.run(main())


def test_an_answer_leaves_in_one_write() -> None:
    transport = serve(b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\n\r\nhi")
    assert len(transport.writes) == 1
    head, _, body = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"content-length: 7" in head
    assert body == b"echo:hi"


def test_two_pipelined_requests_get_both_answers_in_order() -> None:
    one = b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 1\r\n\r\n"
    transport = serve(one + b"a" + one + b"b")
    sent = b"".join(transport.writes)
    assert sent.count(b"HTTP/1.1 200 OK") == 2
    assert sent.index(b"echo:a") < sent.index(b"echo:b")


def test_what_was_written_before_close_is_sent_first() -> None:
    # Connection: close makes Uvicorn close the transport right after the body.
    transport = serve(
        b"POST /x HTTP/1.1\r\nhost: a\r\nconnection: close\r\ncontent-length: 1\r\n\r\nz"
    )
    assert transport.closed
    assert b"".join(transport.writes).endswith(b"echo:z")
