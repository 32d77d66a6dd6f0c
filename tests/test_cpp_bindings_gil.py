"""The C++ bindings never wait with the GIL held for a thread that needs the GIL to go on."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# A native gRPC server dropped from Python while a call is in flight: its destructor shuts it
# down, which cancels the call and waits for its handler to return. The cancel callback and
# the handler both need the GIL, and the handler returns only once the callback ran, so the
# drop finishes only if the destructor runs without the GIL. Run apart: a deadlock holding
# the GIL cannot be interrupted in this process.
DROP_SERVER_DURING_A_CALL = textwrap.dedent(
    """
    import threading

    import grpc

    from fastserve._core import GrpcServer

    entered = threading.Event()
    cancelled = threading.Event()


    def dispatch(call, request):
        call.on_cancel(cancelled.set)
        entered.set()
        cancelled.wait()
        return (1, "cancelled", b"")


    server = GrpcServer(
        addresses=["127.0.0.1:0"],
        tls=None,
        channel_arguments=[],
        max_receive_message_bytes=4 << 20,
        max_send_message_bytes=-1,
        health=False,
        worker_threads=1,
        fallback=dispatch,
    )
    port = server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    answer = channel.unary_unary("/test.Blocking/Wait").future(b"")
    entered.wait()
    del server  # no shutdown() first: the destructor shuts the server down
    assert cancelled.is_set()
    try:
        answer.result()
    except grpc.RpcError as error:
        print("answered", error.code().name)
    channel.close()
    print("dropped")
    """
)


def test_dropping_a_serving_grpc_server_does_not_deadlock() -> None:
    # The timeout only turns a deadlock into a failure; the drop takes well under a second.
    done = subprocess.run(
        [sys.executable, "-c", DROP_SERVER_DURING_A_CALL],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "dropped" in done.stdout
