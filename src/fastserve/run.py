"""Runs the server as a process: signals stop it, and it exits within its shutdown grace."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Any, NoReturn

from fastserve.options import ServerOptions
from fastserve.server import Server, StartupError


class _Interrupted(BaseException):
    """SIGTERM or SIGINT arrived while the server was starting."""


def run(options: ServerOptions) -> int:
    """Starts a server with `options`, serves until SIGTERM or SIGINT, drains and stops, then
    ends the process (0, or 1 if it failed while serving); returns 1 if it failed to start
    (0 if stopped during start-up)."""
    stopping = threading.Event()
    started = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        logging.getLogger("fastserve").info(
            "received %s; shutting down", signal.Signals(signum).name
        )
        stopping.set()
        if not started.is_set():
            raise _Interrupted  # abandon start-up; main() unloads what was loaded

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        server = Server(options)
    except StartupError as error:
        print(f"fastserve: failed to start:\n{error}", file=sys.stderr)
        return 1
    try:
        server.start()
        started.set()
    except StartupError as error:
        print(f"fastserve: failed to start:\n{error}", file=sys.stderr)
        return 1
    except _Interrupted:
        server.stop()
        return 0
    logging.getLogger("fastserve").info("fastserve is ready")
    while not stopping.wait(3600):
        pass
    logger = logging.getLogger("fastserve")
    # Whatever happens in shutdown (a library thread that never ends would keep the
    # interpreter from exiting), the process is gone shortly after the grace.
    outcome = [1]
    watchdog = threading.Timer(
        options.shutdown_grace_seconds + 15.0, _force_exit, args=(outcome, logger)
    )
    watchdog.daemon = True
    watchdog.start()
    finished = server.stop()
    code = outcome[0] = 1 if server.failed else 0
    if finished:
        logger.info("fastserve stopped")
    else:
        # Work still running past the grace (a model stuck in its computation) must not keep
        # the process alive: leave now, without waiting for those threads.
        logger.warning(
            "shutdown grace of %ss ran out; exiting anyway", options.shutdown_grace_seconds
        )
    # Every request was answered and every model unloaded: leave without the interpreter's
    # finalization, whose teardown of library threads and static objects (TensorFlow's,
    # gRPC's) at exit is in no order of ours and can abort a process that stopped cleanly.
    _leave(code)


def _force_exit(outcome: list[int], logger: logging.Logger) -> None:
    logger.warning("the process did not exit after shutdown; exiting now")
    _leave(outcome[0])


def _leave(code: int) -> NoReturn:
    """Ends the process with `code` once logs and output are flushed, skipping finalization."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
