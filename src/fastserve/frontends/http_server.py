"""The HTTP server under the REST app: Hypercorn or Uvicorn, on its own event loop and thread.

Both servers get the same promises from `HttpServerThread`:
- the port is bound before serving starts, so a port in use fails `start()` at once with the
  reason, and the bound port is known when port 0 was asked for;
- `stop(grace)` stops accepting connections, lets in-flight requests finish for up to
  `grace` seconds, then cancels what is left;
- the app's worker threads (anyio's `to_thread.run_sync`, see rest_inline.py) are bounded
  by `num_threads`, set on the anyio limiter of the server's own loop;
- with `access_log`, one line per request on the `fastserve.access` logger, in the same
  format whichever server runs (Hypercorn's default access-log format);
- neither server touches signal handlers: SIGTERM and SIGINT stay with fastserve's command.

Hypercorn (h11, h2) serves HTTP/1.1 and HTTP/2, over TLS with ALPN, and cleartext HTTP/2
(h2c, by prior knowledge or by upgrade). Uvicorn (httptools on uvloop) serves HTTP/1.1 only,
several times faster per request; over TLS it offers only http/1.1 by ALPN.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger("fastserve.rest")
access_log = logging.getLogger("fastserve.access")

HYPERCORN = "hypercorn"
UVICORN = "uvicorn"
SERVERS = (HYPERCORN, UVICORN)

# How long an idle keep-alive connection is kept open, and how many connections may wait to
# be accepted (both servers).
KEEP_ALIVE_SECONDS = 75
BACKLOG = 1024


def choose_server(requested: str, tls: bool) -> str:
    """The HTTP server to run: the one asked for, else Uvicorn (the faster for HTTP/1.1), or
    Hypercorn with TLS, which keeps HTTP/2 for clients that negotiate it by ALPN."""
    requested = requested.strip().lower()
    if requested and requested not in SERVERS:
        raise ValueError(f"--rest_server must be one of {', '.join(SERVERS)}, got {requested!r}")
    if requested:
        return requested
    return HYPERCORN if tls else UVICORN


def describe_server(server: str) -> str:
    if server == UVICORN:
        return "uvicorn (httptools on uvloop; HTTP/1.1)"
    return "hypercorn (HTTP/1.1, and HTTP/2 by ALPN over TLS or h2c in clear)"


@dataclass(frozen=True)
class HttpServerOptions:
    host: str
    port: int
    server: str = UVICORN
    num_threads: int = 40
    grace: float = 30.0
    ssl_context: ssl.SSLContext | None = None
    access_log: bool = False


class _Backend(Protocol):
    """One HTTP server library, driven by HttpServerThread."""

    def new_loop(self) -> asyncio.AbstractEventLoop: ...

    async def serve(self, app: Any, sock: socket.socket) -> None:
        """Serves until asked to stop, then drains within the grace; runs in the loop."""

    def request_stop(self) -> None:
        """Asks serve() to return; called in the loop's thread."""


class HttpServerThread:
    """An ASGI app served on one TCP port by the chosen server, in a thread of its own."""

    def __init__(self, app: Any, options: HttpServerOptions, on_failure: Callable[[], None]):
        self._options = options
        self._app = _AccessLog(app) if options.access_log else app
        self._on_failure = on_failure
        self._backend: _Backend = (
            _Uvicorn(options) if options.server == UVICORN else _Hypercorn(options)
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._serving = False
        self._bound = threading.Event()
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def start(self) -> int:
        """Binds the port and starts serving; returns the bound port. Raises OSError saying
        why the port cannot be served."""
        options = self._options
        try:
            sock = bind(options.host, options.port)
        except OSError as error:
            raise OSError(f"cannot serve REST on {options.host}:{options.port}: {error}") from None
        self.port = sock.getsockname()[1]
        self._loop = self._backend.new_loop()
        self._thread = threading.Thread(
            target=self._run, args=(sock, self._loop), name="fastserve-rest", daemon=True
        )
        self._thread.start()
        self._bound.wait()
        if self._failure is not None:
            raise OSError(f"cannot serve REST on {options.host}:{options.port}: {self._failure}")
        return self.port

    def _run(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(sock))
        except BaseException as error:  # reported to start() or logged
            if not self._bound.is_set():
                self._failure = error
                self._bound.set()
            else:
                log.exception("the REST server stopped with an error; stopping fastserve")
                self._on_failure()
        finally:
            sock.close()
            loop.close()

    async def _serve(self, sock: socket.socket) -> None:
        import anyio.to_thread

        # The limiter belongs to this loop: set it here, before the first request.
        anyio.to_thread.current_default_thread_limiter().total_tokens = self._options.num_threads
        self._serving = True
        self._bound.set()
        await self._backend.serve(self._app, sock)

    def stop(self, grace: float) -> None:
        """Stops accepting connections and waits for in-flight requests, up to `grace`."""
        loop = self._loop
        if self._serving and loop is not None and not loop.is_closed():
            # The loop may close between the check and the call: then it has stopped anyway.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._backend.request_stop)
        if self._thread is not None:
            self._thread.join(grace + 5.0)


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port (IPv6 if the host is), listening: clients that connect
    before the server's loop accepts wait in the backlog instead of being refused."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


# --- Hypercorn ---------------------------------------------------------------------------------


class _Hypercorn:
    def __init__(self, options: HttpServerOptions) -> None:
        self._options = options
        self._stopping = asyncio.Event()  # bound to the loop at its first wait

    def new_loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.new_event_loop()

    async def serve(self, app: Any, sock: socket.socket) -> None:
        from hypercorn.asyncio.run import worker_serve
        from hypercorn.config import Sockets
        from hypercorn.utils import wrap_app

        config = _hypercorn_config(self._options.ssl_context)
        config.accesslog = None  # _AccessLog writes the lines, the same under both servers
        config.errorlog = log
        config.graceful_timeout = self._options.grace
        config.keep_alive_timeout = KEEP_ALIVE_SECONDS
        config.backlog = BACKLOG
        tls = self._options.ssl_context is not None
        sockets = Sockets([sock] if tls else [], [] if tls else [sock], [])
        wrapped = wrap_app(app, config.wsgi_max_body_size, "asgi")
        await worker_serve(wrapped, config, sockets=sockets, shutdown_trigger=self._stopping.wait)

    def request_stop(self) -> None:
        self._stopping.set()


def _hypercorn_config(ssl_context: ssl.SSLContext | None) -> Any:
    """Hypercorn's Config, serving HTTPS with `ssl_context` when one is given. Hypercorn would
    build its context from key and certificate files; ours comes from the SSLConfig's PEM
    contents, so it is handed over as it is, with Hypercorn's ciphers and ALPN (h2, http/1.1)."""
    from hypercorn.config import Config

    class _Config(Config):
        @property
        def ssl_enabled(self) -> bool:
            return ssl_context is not None

        def create_ssl_context(self) -> ssl.SSLContext | None:
            return ssl_context

    config = _Config()
    if ssl_context is not None:
        ssl_context.set_ciphers(config.ciphers)
        ssl_context.set_alpn_protocols(config.alpn_protocols)
    return config


# --- Uvicorn -----------------------------------------------------------------------------------


class _Uvicorn:
    def __init__(self, options: HttpServerOptions) -> None:
        self._options = options
        self._server: Any = None
        self._stop_requested = False

    def new_loop(self) -> asyncio.AbstractEventLoop:
        import uvloop

        return uvloop.new_event_loop()

    async def serve(self, app: Any, sock: socket.socket) -> None:
        import uvicorn

        context = self._options.ssl_context
        if context is not None:
            context.set_alpn_protocols(["http/1.1"])  # Uvicorn serves no HTTP/2
        # Uvicorn reports on "uvicorn.error", at INFO even when all is well ("Started server
        # process"): only its warnings and errors are kept, unless its level was set.
        noisy = logging.getLogger("uvicorn.error")
        if noisy.level == logging.NOTSET:
            noisy.setLevel(logging.WARNING)
        if not any(isinstance(f, _NoUpgradeWarnings) for f in noisy.filters):
            noisy.addFilter(_NoUpgradeWarnings())
        from fastserve.frontends.uvicorn_protocol import CoalescingHttpToolsProtocol

        config = uvicorn.Config(
            app,
            # httptools, writing each answer in one system call (see uvicorn_protocol.py)
            http=CoalescingHttpToolsProtocol,
            ws="none",
            lifespan="off",
            log_config=None,  # fastserve's logging stays as configured
            access_log=False,  # _AccessLog writes the lines, the same under both servers
            proxy_headers=False,  # as Hypercorn: the client address is the peer's
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            backlog=BACKLOG,
            timeout_graceful_shutdown=self._options.grace,  # type: ignore[arg-type]
            ssl_context_factory=(lambda _config, _default: context) if context else None,
        )
        self._server = uvicorn.Server(config)
        # Serving from a thread that is not the main one, Uvicorn installs no signal handlers.
        self._server.should_exit = self._stop_requested
        await self._server.serve(sockets=[sock])

    def request_stop(self) -> None:
        # Uvicorn's main loop looks at should_exit every 0.1 s, then closes the listening
        # socket, closes idle connections, and waits for the others (up to the grace).
        self._stop_requested = True
        if self._server is not None:
            self._server.should_exit = True


class _NoUpgradeWarnings(logging.Filter):
    """Drops Uvicorn's two warnings for each request asking to upgrade (an h2c client's
    `Upgrade: h2c`): the request is answered over HTTP/1.1 as it should be, and fastserve
    serves no WebSockets by design, which the second warning would suggest installing."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not (
            message.startswith("Unsupported upgrade request")
            or message.startswith("No supported WebSocket library detected")
        )


# --- the access log ----------------------------------------------------------------------------


class _AccessLog:
    """ASGI middleware writing one line per HTTP request when its response ends, in
    Hypercorn's default access-log format:
    `client - - [time] "METHOD /path 1.1" status length "referer" "user-agent"`."""

    def __init__(self, app: Any) -> None:
        self._app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        status: list[int] = []
        length = "-"

        async def logged_send(message: Any) -> None:
            nonlocal length
            if message["type"] == "http.response.start":
                status.append(message["status"])
                for name, value in message.get("headers", ()):
                    if name.lower() == b"content-length":
                        length = value.decode("latin-1")
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                _log_request(scope, status[0] if status else 0, length)

        try:
            await self._app(scope, receive, logged_send)
        except BaseException:
            if not status:
                _log_request(scope, 500, "-")
            raise


def _log_request(scope: Any, status: int, length: str) -> None:
    if not access_log.isEnabledFor(logging.INFO):
        return
    client = scope.get("client")
    peer = f"{client[0]}:{client[1]}" if client else "-"
    headers = {name.lower(): value for name, value in scope.get("headers", ())}
    referer = headers.get(b"referer", b"-").decode("latin-1")
    agent = headers.get(b"user-agent", b"-").decode("latin-1")
    access_log.info(
        '%s - - %s "%s %s %s" %s %s "%s" "%s"',
        peer,
        time.strftime("[%d/%b/%Y:%H:%M:%S %z]"),
        scope["method"],
        scope["path"],
        scope.get("http_version", "1.1"),
        status or "-",
        length,
        referer,
        agent,
    )
