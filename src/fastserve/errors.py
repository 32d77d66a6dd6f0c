"""The one error type of fastserve: a status code and a message, mapped to HTTP here.

The codes are google.rpc.Code, whose names grpc.StatusCode shares, so the gRPC frontend maps
by name and nothing below the frontends imports grpc.
"""

from __future__ import annotations

import enum

# TF Serving cuts long error messages to this many characters and appends a marker.
MAX_MESSAGE_LENGTH = 1024
TRUNCATION_MARKER = "...TRUNCATED"
# --max_request_bytes' default: the largest message gRPC itself can carry.
DEFAULT_MAX_REQUEST_BYTES = 2**31 - 1


class Code(enum.IntEnum):
    """Canonical status codes (google.rpc.Code), as TF Serving reports them."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


# TF Serving's ToHTTPStatusCode (model_servers/http_rest_api_util.cc).
HTTP_STATUS: dict[Code, int] = {
    Code.OK: 200,
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}


def truncate(message: str) -> str:
    """Cuts a message to TF Serving's limit, marking the cut."""
    if len(message) <= MAX_MESSAGE_LENGTH:
        return message
    return message[:MAX_MESSAGE_LENGTH] + TRUNCATION_MARKER


class ServingError(Exception):
    """An error with a status code; every layer raises this and every frontend maps it."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    def __repr__(self) -> str:
        return f"ServingError({self.code.name}, {self.message!r})"


def from_exception(error: BaseException, code: Code = Code.INTERNAL) -> ServingError:
    """`error` as a ServingError: itself when it is one, else `code` with the exception's type
    and message. Whatever a servable or a bug of ours raises, one request fails, worded so."""
    if isinstance(error, ServingError):
        return error
    return ServingError(code, f"{type(error).__name__}: {error}")


def invalid_argument(message: str) -> ServingError:
    return ServingError(Code.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(Code.NOT_FOUND, message)


def failed_precondition(message: str) -> ServingError:
    return ServingError(Code.FAILED_PRECONDITION, message)


def internal(message: str) -> ServingError:
    return ServingError(Code.INTERNAL, message)


def unimplemented(message: str) -> ServingError:
    return ServingError(Code.UNIMPLEMENTED, message)


class ConfigError(Exception):
    """A config file that cannot be used; the message names the file, line and field."""
