"""Which REST requests run on the event loop: the policy alone (the e2e REST tests run most
requests of a quick model inline, and check their answers and errors)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from fastserve.frontends.rest_inline import InlinePolicy

KEY = ("model", "predict")


def test_a_kind_runs_inline_only_after_quick_runs() -> None:
    policy = InlinePolicy(0.0005)
    assert not policy.allows(KEY)  # the first request of a kind goes to a worker thread
    policy.observe(KEY, 0.0001, 0.0001)
    assert policy.allows(KEY)
    assert not policy.allows(("model", "classify"))


def test_a_slow_run_moves_its_kind_back_to_the_threads_until_runs_are_quick_again() -> None:
    policy = InlinePolicy(0.0005)
    policy.observe(KEY, 0.0001, 0.0001)
    policy.observe(KEY, 0.050, 0.050)
    assert not policy.allows(KEY)
    for _ in range(30):
        policy.observe(KEY, 0.0001, 0.0001)
    assert policy.allows(KEY)


def test_work_that_waits_rather_than_computes_stays_on_the_threads() -> None:
    policy = InlinePolicy(0.0005)
    policy.observe(KEY, 0.0004, 0.00005)  # quick, but mostly waiting on something else
    assert not policy.allows(KEY)


def test_zero_turns_inlining_off_and_keys_are_bounded() -> None:
    off = InlinePolicy(0.0)
    off.observe(KEY, 0.0, 0.0)
    assert not off.allows(KEY)
    policy = InlinePolicy(0.0005)
    for index in range(InlinePolicy._MAX_KEYS + 5):
        policy.observe((f"m{index}", "predict"), 0.0001, 0.0001)
    assert policy.allows(("m0", "predict"))
    assert not policy.allows((f"m{InlinePolicy._MAX_KEYS + 1}", "predict"))


THREAD_MODEL = """
    import threading

    from fastserve.servables.python import signature, tensor


    @signature(inputs={"x": tensor("float32", [-1])}, outputs={"y": tensor("float32", [-1])})
    def serving_default(x):
        # 1 where the request ran on the REST event loop's own thread, 0 on a worker thread.
        return {"y": x * 0 + float(threading.current_thread().name == "fastserve-rest")}
"""


def _on_the_loop(start_server, tmp_path, *flags: str) -> list[float]:  # type: ignore[no-untyped-def]
    from support import models

    models.python_model(tmp_path / "where" / "1", THREAD_MODEL)
    config = tmp_path / "models.yaml"
    config.write_text(
        f"models:\n  - {{name: where, base_path: {tmp_path / 'where'}, model_platform: python}}\n"
    )
    server = start_server(f"--config={config}", *flags)
    answers = [
        server.http.post("/v1/models/where:predict", json={"instances": [0.0]}).json()
        for _ in range(20)
    ]
    return [answer["predictions"][0] for answer in answers]


def test_a_quick_model_runs_on_the_event_loop_after_its_first_request(
    start_server,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    where = _on_the_loop(start_server, tmp_path)
    assert where[0] == 0.0  # the first request of a kind runs on a worker thread
    assert 1.0 in where  # quick runs move its kind onto the loop


def test_rest_inline_micros_zero_keeps_every_request_on_the_threads(
    start_server,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    assert _on_the_loop(start_server, tmp_path, "--rest_inline_micros=0") == [0.0] * 20


BATCH_SIZE_MODEL = """
    from fastserve.servables.python import signature, tensor


    @signature(inputs={"x": tensor("float32", [-1])}, outputs={"rows": tensor("float32", [-1])})
    def serving_default(x):
        return {"rows": x * 0 + len(x)}  # the size of the batch each request ran in
"""


def test_a_batched_version_never_runs_on_the_event_loop_whatever_the_latest_is(
    start_server,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    """Regression: the inline decision looked at the model's latest version. Here version 1
    is batched (2 rows, or a 5 s wait) and version 2, the latest, is quick and unbatched.
    Once requests to the latest had run inline, version 1's requests ran on the event loop
    too: each held the loop in the batch queue, so two concurrent requests never met in a
    batch. Decided on the version asked for, they go to worker threads and share one."""
    from support import models

    for version in (1, 2):
        models.python_model(tmp_path / "sized" / str(version), BATCH_SIZE_MODEL)
    (tmp_path / "sized" / "1" / "batching_params.pbtxt").write_text(
        "max_batch_size { value: 2 }\nbatch_timeout_micros { value: 5000000 }\n"
    )
    config = tmp_path / "models.yaml"
    config.write_text(
        "models:\n"
        f"  - {{name: sized, base_path: {tmp_path / 'sized'}, model_platform: python,\n"
        "     model_version_policy: {all: {}}}\n"
    )
    server = start_server(
        f"--config={config}", "--enable_batching", "--enable_per_model_batching_parameters"
    )
    for _ in range(20):  # the latest (2) answers alone and quickly: its kind runs inline
        answer = server.http.post("/v1/models/sized:predict", json={"instances": [0.0]})
        assert answer.json() == {"predictions": [1.0]}
    barrier = threading.Barrier(2)

    def batched() -> list[float]:
        barrier.wait()
        with httpx.Client(base_url=server.rest_url, timeout=60) as client:  # its own connection
            answer = client.post("/v1/models/sized/versions/1:predict", json={"instances": [0.0]})
        return answer.json()["predictions"]

    with ThreadPoolExecutor(2) as pool:
        sizes = list(pool.map(lambda _: batched(), range(2)))
    assert sizes == [[2.0], [2.0]]


def test_the_cpu_clock_is_read_only_for_kinds_not_clearly_quick() -> None:
    policy = InlinePolicy(0.0005)
    assert policy.measures_cpu(KEY)  # nothing known yet
    policy.observe(KEY, 0.0001, 0.0001)
    assert not policy.measures_cpu(KEY)  # averages under a quarter of the threshold
    policy.observe(KEY, 0.0001, 0.0)  # observed unmeasured: all its wall time counts as waiting
    assert policy.allows(KEY)
    for _ in range(5):
        policy.observe(KEY, 0.0004, 0.0004)
    assert policy.measures_cpu(KEY)
