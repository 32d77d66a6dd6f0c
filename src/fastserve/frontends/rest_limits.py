"""REST request limits: the body's size (--max_request_bytes) and its size once gunzipped."""

from __future__ import annotations

import zlib

from fastserve.errors import invalid_argument
from fastserve.frontends.asgi import Answer, Receive, error_answer

# TF Serving's limit on a gunzipped request body (its zlib wrapper's kMaxUncompressedBytes).
MAX_GUNZIPPED_BYTES = 100 * 1024 * 1024

# How much of a refused body is still read (and dropped) so that the client, still sending,
# gets the 413: closing on a client mid-send resets the connection and loses the answer.
DRAIN_BYTES = 64 * 1024 * 1024


class TooLarge(Exception):
    """The body is longer than the limit; args[0] is the size seen (or declared)."""


class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


async def read_body(receive: Receive, declared: bytes | None, limit: int) -> bytes:
    """The request body (`declared`: its Content-Length header); TooLarge (carrying the size
    seen) when it is longer than `limit` bytes, without keeping more than `limit` bytes of
    it. ClientGone if the client goes away first."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        if int(declared) <= limit + DRAIN_BYTES:
            await _drain(receive)
        raise TooLarge(int(declared))
    message = await receive()
    if message["type"] != "http.request":
        raise ClientGone()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):  # the usual case: one message
        if len(body) > limit:
            raise TooLarge(len(body))
        return body
    chunks = [body]
    size = len(body)
    while True:
        if size > limit:
            await _drain(receive)
            raise TooLarge(size)
        if not message.get("more_body", False):
            return b"".join(chunks)
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)


async def _drain(receive: Receive) -> None:
    dropped = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        dropped += len(message.get("body", b""))
        if not message.get("more_body", False) or dropped > DRAIN_BYTES:
            return


def too_large(size: int, limit: int) -> Answer:
    return error_answer(
        f"Request body of {size} bytes or more is larger than the server's limit of "
        f"{limit} bytes (--max_request_bytes)",
        413,
    )


def decoded_body(encoding: str, body: bytes) -> bytes:
    """The request body, gunzipped when the client says it is gzip-encoded (at most
    MAX_GUNZIPPED_BYTES of it). CPU work: it runs where the request's work runs."""
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
