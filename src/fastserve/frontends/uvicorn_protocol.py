"""Uvicorn's httptools protocol with one socket write per response instead of two.

Uvicorn writes a response's status line and headers as soon as the app sends
`http.response.start`, and its body at `http.response.body`: two `send()` system calls, and
on loopback two wake-ups of the client, for every small answer. Here each connection's
transport collects what is written during one turn of the event loop and writes it at the
end of that turn, so an answer sent in one go (as the REST app sends every answer) leaves in
one write. Nothing waits longer than the current turn of the loop; closing the transport
writes what was collected first.

Everything runs on the HTTP server's event loop thread, with the GIL (as all of Uvicorn).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _CoalescingTransport:
    """A transport that defers writes to the end of the loop's current turn and joins them.
    Every other attribute is the wrapped transport's."""

    __slots__ = ("_loop", "_pending", "_scheduled", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._pending.append(data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def _flush(self) -> None:
        self._scheduled = False
        pending = self._pending
        if not pending:
            return
        self._pending = []
        if self._transport.is_closing():
            return  # the peer is gone: as the transport itself drops writes after close
        self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """Uvicorn's httptools protocol, writing through a _CoalescingTransport."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        wrapped = _CoalescingTransport(transport, self.loop)  # type: ignore[arg-type]
        super().connection_made(wrapped)  # type: ignore[arg-type]
