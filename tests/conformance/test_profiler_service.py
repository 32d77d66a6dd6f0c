"""TensorFlow's profiler service on the gRPC port (--enable_profiler, on by default), answering as
TensorFlow's own service does (tsl/profiler/rpc/profiler_service_impl.cc).

Requests here are fastserve's own ProfileRequest type, to reach every field; that it is
TensorFlow's on the wire is shown by TF Serving's test of the service, with TensorFlow's profiler
client, in test_tf_serving_e2e.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from fastserve.frontends.profiler import message
from support.server import ServerProcess
from support.store import ModelStore

pytestmark = pytest.mark.timeout(300)

TEN_MINUTES_MS = 600_000


@pytest.fixture(scope="module")
def served_model(store: ModelStore, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("half_plus_two")
    store.install(store.half_plus_two(2.0), root / "1")
    return root


@pytest.fixture(scope="module")
def served(served_model: Path) -> Iterator[ServerProcess]:
    """A server with the profiler on by default, shared by the tests that leave it as it was."""
    process = ServerProcess([f"--model_base_path={served_model}"], rest=False).ready()
    yield process
    assert process.terminate() == 0, process.output


def stub(server: ServerProcess, method: str, response: str | None = None) -> Any:
    """A call of tensorflow.ProfilerService/`method` that sends a message (or bytes) and
    returns the `response` message parsed (or bytes)."""
    return server.channel.unary_unary(
        f"/tensorflow.ProfilerService/{method}",
        request_serializer=lambda request: (
            request if isinstance(request, bytes) else request.SerializeToString()
        ),
        response_deserializer=(
            None if response is None else lambda data: type(message(response)).FromString(data)
        ),
    )


def profile(server: ServerProcess, **fields: Any) -> Any:
    return stub(server, "Profile", "ProfileResponse")(profile_request(**fields), timeout=120)


def profile_request(duration_ms: int = 1, **fields: Any) -> Any:
    request = message("ProfileRequest")
    request.opts.version = 1
    request.opts.duration_ms = duration_ms
    for name, value in fields.items():
        setattr(request, name, value)
    return request


def refused(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), caught.value.details()


def start_long_profile(server: ServerProcess, root: Path, session_id: str) -> Any:
    """A ten-minute Profile of `session_id` (a future), once the server is tracing it."""
    request = profile_request(
        TEN_MINUTES_MS, repository_root=str(root), session_id=session_id, host_name="h"
    )
    running = stub(server, "Profile", "ProfileResponse").future(request, timeout=120)
    assert server.wait_for_line(f"Profile {session_id}: tracing for {TEN_MINUTES_MS} ms")
    return running


def events(xspace: Any) -> int:
    return sum(len(line.events) for plane in xspace.planes for line in plane.lines)


def test_profile_writes_the_trace_under_the_repository_root(
    served: ServerProcess, tmp_path: Path
) -> None:
    response = profile(
        served, repository_root=str(tmp_path / "root"), session_id="run_1", host_name="host:8500"
    )
    # <repository_root>/<session_id>/<host_name>.xplane.pb, ":" written as "_".
    written = tmp_path / "root" / "run_1" / "host_8500.xplane.pb"
    xspace = xplane_pb2.XSpace.FromString(written.read_bytes())
    assert xspace.hostnames and any(plane.name == "/host:CPU" for plane in xspace.planes)
    assert response.empty_trace == (events(xspace) == 0)
    assert not response.HasField("xspace")


def test_override_hostname_names_the_file(served: ServerProcess, tmp_path: Path) -> None:
    request = profile_request(repository_root=str(tmp_path), session_id="run", host_name="a:1")
    request.opts.advanced_configuration["override_hostname"].string_value = "worker-7"
    stub(served, "Profile", "ProfileResponse")(request, timeout=120)
    assert [path.name for path in (tmp_path / "run").iterdir()] == ["worker-7.xplane.pb"]


def test_emit_xspace_returns_the_trace_instead_of_writing_it(
    served: ServerProcess, tmp_path: Path
) -> None:
    response = profile(
        served, repository_root=str(tmp_path), session_id="run", host_name="h", emit_xspace=True
    )
    assert response.xspace.hostnames
    assert response.empty_trace == (events(response.xspace) == 0)
    assert not list(tmp_path.iterdir())


def test_one_profile_at_a_time_and_terminate_ends_one_early(
    served: ServerProcess, tmp_path: Path
) -> None:
    running = start_long_profile(served, tmp_path, "long")
    assert refused(lambda: profile(served, repository_root=str(tmp_path), session_id="other")) == (
        grpc.StatusCode.INTERNAL,
        "Another profiling session active.",
    )
    terminate = message("TerminateRequest")
    terminate.session_id = "long"
    stub(served, "Terminate", "TerminateResponse")(terminate, timeout=30)
    running.result()  # within the 120 s deadline: Terminate ended it, not its duration
    assert (tmp_path / "long" / "h.xplane.pb").is_file()
    assert not (tmp_path / "other").exists()


def test_a_cancelled_profile_writes_nothing_and_frees_the_profiler(
    served: ServerProcess, tmp_path: Path
) -> None:
    running = start_long_profile(served, tmp_path, "gone")
    running.cancel()
    assert served.wait_for_line("Profile gone: cancelled, its client went away")
    profile(served, repository_root=str(tmp_path), session_id="next", host_name="h")
    assert [path.name for path in tmp_path.iterdir()] == ["next"]


def test_monitor_is_unimplemented(served: ServerProcess) -> None:
    assert refused(lambda: stub(served, "Monitor")(b"", timeout=30)) == (
        grpc.StatusCode.UNIMPLEMENTED,
        "unimplemented.",
    )


def test_bad_requests(served: ServerProcess, tmp_path: Path) -> None:
    # Bytes that are no ProfileRequest: INTERNAL, as grpc++ answers a request it cannot parse.
    code, details = refused(lambda: stub(served, "Profile")(b"\xff\xff\xff", timeout=30))
    assert (code, details) == (grpc.StatusCode.INTERNAL, "Failed to parse the ProfileRequest")
    # A repository root that cannot be made: INTERNAL with the file system's error.
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, details = refused(
        lambda: profile(served, repository_root=str(blocker / "root"), session_id="run")
    )
    assert code == grpc.StatusCode.INTERNAL and str(blocker) in details
    # TensorFlow's service checks no duration: 0 traces nothing, and answers.
    profile(served, duration_ms=0, repository_root=str(tmp_path), session_id="zero", host_name="h")
    assert (tmp_path / "zero" / "h.xplane.pb").is_file()


def test_shutdown_ends_a_profile_in_flight(
    served_model: Path, tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    """fastserve's own: TensorFlow's service would hold the shutdown up for the whole duration;
    here the profile answers with what it traced so far, and the server exits 0."""
    server = start_server(f"--model_base_path={served_model}", rest=False)
    running = start_long_profile(server, tmp_path, "draining")
    server.process.terminate()
    running.result()
    assert server.wait() == 0, server.output
    assert (tmp_path / "draining" / "h.xplane.pb").is_file()


def test_enable_profiler_false_leaves_the_service_out(
    served_model: Path, start_server: Callable[..., ServerProcess]
) -> None:
    server = start_server(
        f"--model_base_path={served_model}", "--enable_profiler=false", rest=False
    )
    code, _ = refused(lambda: profile(server, session_id="off"))
    assert code == grpc.StatusCode.UNIMPLEMENTED
    assert "Profiler service is enabled" not in server.output
