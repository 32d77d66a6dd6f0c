"""TensorFlow's profiler service (tensorflow.ProfilerService), as TF Serving serves it on its gRPC
port (--enable_profiler): Profile traces this process with TensorFlow's profiler for the time
asked and writes the trace under the request's repository_root, where TensorBoard finds it.

It answers as TensorFlow's own service does (tsl/profiler/rpc/profiler_service_impl.cc):
  - Profile waits until opts.start_timestamp_ns, traces for opts.duration_ms (or until
    Terminate names its session_id), then writes the XSpace to
    <repository_root>/<session_id>/<host_name>.xplane.pb (":" in the name becomes "_"; an
    "override_hostname" in opts.advanced_configuration replaces host_name), or returns it in
    the response with emit_xspace; empty_trace says whether anything was recorded.
  - One profile at a time, in the whole process (TensorFlow's profiler lock): another one
    answers INTERNAL "Another profiling session active.".
  - Terminate ends the Profile of that session_id early; Monitor is UNIMPLEMENTED.
  - A client that goes away cancels its Profile (CANCELLED), and nothing is written.
  - Paths are the server's; a relative repository_root (or none) is relative to its working
    directory. Filesystem errors answer INTERNAL with TensorFlow's message.

The handlers take and give messages, or bytes through call() (what a gRPC server hands over),
and know nothing of gRPC. TensorFlow is imported on the first request, not before; without
TensorFlow installed, every call answers UNIMPLEMENTED naming fastserve[tensorflow].
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pool
from google.protobuf.message import DecodeError

from fastserve.codecs.proto_types import F, Field, build_pool, message_class
from fastserve.errors import Code, ServingError, internal, unimplemented
from fastserve.types import RunContext

log = logging.getLogger("fastserve.profiler")

SERVICE = "tensorflow.ProfilerService"
METHODS = ("Profile", "Terminate", "Monitor")

_PACKAGE = "tensorflow"
# The fields of tsl/profiler/protobuf/profiler_service.proto that this service reads or writes,
# with TensorFlow's numbers; the others are skipped when a request is parsed.
_MESSAGES: dict[str, list[Field]] = {
    "ProfileRequest": [
        ("duration_ms", 1, F.TYPE_UINT64, F.LABEL_OPTIONAL, ""),
        ("opts", 4, F.TYPE_MESSAGE, F.LABEL_OPTIONAL, ".tensorflow.ProfileOptions"),
        ("repository_root", 5, F.TYPE_STRING, F.LABEL_OPTIONAL, ""),
        ("session_id", 6, F.TYPE_STRING, F.LABEL_OPTIONAL, ""),
        ("host_name", 7, F.TYPE_STRING, F.LABEL_OPTIONAL, ""),
        ("emit_xspace", 9, F.TYPE_BOOL, F.LABEL_OPTIONAL, ""),
    ],
    "ProfileResponse": [
        ("empty_trace", 7, F.TYPE_BOOL, F.LABEL_OPTIONAL, ""),
        ("xspace", 8, F.TYPE_MESSAGE, F.LABEL_OPTIONAL, ".tensorflow.profiler.XSpace"),
    ],
    "TerminateRequest": [("session_id", 1, F.TYPE_STRING, F.LABEL_OPTIONAL, "")],
    "TerminateResponse": [],
}

# ProfilerSession::DefaultOptions(): what a ProfileOptions without a version asks for.
_DEFAULT_LEVELS = {"host_tracer_level": 2, "device_tracer_level": 1, "python_tracer_level": 0}


@cache
def _pool() -> descriptor_pool.DescriptorPool:
    try:
        from tensorflow.tsl.profiler.protobuf import profiler_options_pb2, xplane_pb2
    except ImportError as error:
        # TensorFlow is optional (fastserve[tensorflow]); without it this service answers
        # every call with this, and the rest of the server is unaffected.
        raise ServingError(
            Code.UNIMPLEMENTED,
            f"{SERVICE} needs TensorFlow, which cannot be imported ({error}): "
            "pip install 'fastserve[tensorflow]'",
        ) from None

    return build_pool(
        "fastserve/profiler_service.proto",
        _PACKAGE,
        _MESSAGES,
        (profiler_options_pb2.DESCRIPTOR, xplane_pb2.DESCRIPTOR),
    )


def message(name: str) -> Any:
    """A new, empty message of this service ("ProfileRequest", "TerminateResponse", ...)."""
    return message_class(_pool(), f"{_PACKAGE}.{name}")()


def _parse(name: str, data: bytes) -> Any:
    parsed = message(name)
    try:
        parsed.ParseFromString(data)
    except DecodeError:
        # What a grpc++ server answers to a request it cannot parse.
        raise internal(f"Failed to parse the {name}") from None
    return parsed


class ProfilerService:
    """The service's state: which sessions Terminate has stopped, and whether the server is
    shutting down. Thread-safe; Profile blocks its caller's thread for the profile's time."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._terminated: set[str] = set()
        self._stopping = False

    def call(self, method: str, request: bytes, run: RunContext) -> bytes:
        """One RPC, from the request's bytes to the response's; raises ServingError."""
        if method == "Profile":
            return self.profile(_parse("ProfileRequest", request), run).SerializeToString()
        if method == "Terminate":
            return self.terminate(_parse("TerminateRequest", request)).SerializeToString()
        if method == "Monitor":
            raise unimplemented("unimplemented.")
        raise unimplemented(f"Method not found: {SERVICE}/{method}")

    def profile(self, request: Any, run: RunContext) -> Any:
        opts = request.opts
        # TensorFlow's service reads opts.duration_ms; the top-level field is the older place
        # (its client still sets both), read here when opts has none.
        duration_ms = opts.duration_ms or request.duration_ms
        if opts.start_timestamp_ns:
            delay = (opts.start_timestamp_ns - time.time_ns()) / 1e9
            self._wait(delay, run, request.session_id, terminable=False)

        def traced() -> None:
            log.info("Profile %s: tracing for %d ms", request.session_id, duration_ms)
            self._wait(duration_ms / 1000, run, request.session_id, terminable=True)

        serialized = _trace(traced, _session_options(opts))
        xspace = _read_xspace(serialized)
        response = message("ProfileResponse")
        # Only the client's retry hint depends on this: a trace that cannot be read here is
        # still written as recorded.
        response.empty_trace = xspace is not None and _is_empty(xspace)
        if request.emit_xspace:
            if xspace is None:
                raise internal("The profile recorded by TensorFlow could not be read")
            response.xspace.CopyFrom(xspace)
        else:
            _save(
                _join(request.repository_root, request.session_id),
                f"{_host_name(request)}.xplane.pb".replace(":", "_"),
                serialized,
            )
        return response

    def terminate(self, request: Any) -> Any:
        """Ends the Profile of request.session_id early (now, or as soon as it starts)."""
        with self._changed:
            self._terminated.add(request.session_id)
            self._changed.notify_all()
        return message("TerminateResponse")

    def stop(self) -> None:
        """The server is shutting down: profiles in flight end now and answer with what they
        traced so far, so that they do not hold the shutdown up."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()

    def _wake(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _wait(self, seconds: float, run: RunContext, session_id: str, *, terminable: bool) -> None:
        """Blocks for `seconds`, less if the server stops or (when `terminable`) Terminate
        names `session_id`; raises CANCELLED if the caller goes away (or its deadline passes)
        meanwhile."""
        end = time.monotonic() + seconds
        run.on_cancel(self._wake)
        with self._changed:
            while True:
                remaining = end - time.monotonic()
                left = run.remaining()
                if run.cancelled or left == 0:
                    log.info("Profile %s: cancelled, its client went away", session_id)
                    raise ServingError(Code.CANCELLED, "")
                if terminable and session_id in self._terminated:
                    self._terminated.discard(session_id)
                    return
                if remaining <= 0 or self._stopping:
                    return
                self._changed.wait(remaining if left is None else min(remaining, left))


def _session_options(opts: Any) -> dict[str, int]:
    """The tracer levels asked for, where they differ from TensorFlow's defaults (a
    ProfileOptions without a version asks for the defaults)."""
    if not opts.version:
        return {}
    return {
        name: getattr(opts, name)
        for name, default in _DEFAULT_LEVELS.items()
        if getattr(opts, name) != default
    }


def _trace(wait: Callable[[], None], options: dict[str, int]) -> bytes:
    """Runs TensorFlow's profiler session while wait() blocks; returns the XSpace it recorded,
    serialized. The session's binding exports to a TensorBoard log folder only, so the XSpace
    goes through a scratch folder."""
    from tensorflow.python.framework import errors
    from tensorflow.python.profiler.internal import _pywrap_profiler

    with tempfile.TemporaryDirectory(prefix="fastserve-profile-") as scratch:
        session = _pywrap_profiler.ProfilerSession()
        try:
            session.start(scratch, options)
        except errors.OpError as error:
            raise internal(error.message) from None
        try:
            wait()
        except BaseException:
            session.stop()  # frees TensorFlow's profiler lock; the trace is dropped
            raise
        try:
            session.export_to_tb()
        except errors.OpError as error:
            raise internal(error.message) from None
        exported = sorted(Path(scratch).glob("plugins/profile/*/*.xplane.pb"))
        if len(exported) != 1:
            raise internal(f"TensorFlow's profiler wrote {len(exported)} XSpace files, not one")
        return exported[0].read_bytes()


def _host_name(request: Any) -> str:
    advanced = request.opts.advanced_configuration
    if "override_hostname" in advanced and advanced["override_hostname"].string_value:
        return str(advanced["override_hostname"].string_value)
    return str(request.host_name)


def _join(*parts: str) -> str:
    """tsl's JoinPath: empty parts are left out, and one "/" goes between the others."""
    joined = ""
    for part in parts:
        if part:
            joined = f"{joined.rstrip('/')}/{part.lstrip('/')}" if joined else part
    return joined


def _save(folder: str, file_name: str, data: bytes) -> None:
    """Writes through TensorFlow's file systems (so gs:// and the like work as in TensorFlow),
    and with its error messages."""
    import tensorflow as tf

    path = _join(folder, file_name)
    log.info("Collecting XSpace to repository: %s", path)
    try:
        if folder:
            tf.io.gfile.makedirs(folder)
        with tf.io.gfile.GFile(path, "wb") as file:
            file.write(data)
    except tf.errors.OpError as error:
        raise internal(error.message) from None


def _read_xspace(data: bytes) -> Any:
    """The XSpace, or None if it does not parse here (a string that is not UTF-8, which
    TensorFlow's C++ writes but Python's protobuf refuses)."""
    xspace = message_class(_pool(), "tensorflow.profiler.XSpace")()
    try:
        xspace.ParseFromString(data)
    except DecodeError:
        return None
    return xspace


def _is_empty(xspace: Any) -> bool:
    """tsl's IsEmpty: no plane has an event."""
    return not any(line.events for plane in xspace.planes for line in plane.lines)
