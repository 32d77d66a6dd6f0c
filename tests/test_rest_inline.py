"""Which REST requests run on the event loop: the policy alone (the e2e REST tests run most
requests of a quick model inline, and check their answers and errors)."""

from __future__ import annotations

from fastserve.frontends.rest import _InlinePolicy

KEY = ("model", "predict")


def test_a_kind_runs_inline_only_after_quick_runs() -> None:
    policy = _InlinePolicy(0.0005)
    assert not policy.allows(KEY)  # the first request of a kind goes to a worker thread
    policy.observe(KEY, 0.0001, 0.0001)
    assert policy.allows(KEY)
    assert not policy.allows(("model", "classify"))


def test_a_slow_run_moves_its_kind_back_to_the_threads_until_runs_are_quick_again() -> None:
    policy = _InlinePolicy(0.0005)
    policy.observe(KEY, 0.0001, 0.0001)
    policy.observe(KEY, 0.050, 0.050)
    assert not policy.allows(KEY)
    for _ in range(30):
        policy.observe(KEY, 0.0001, 0.0001)
    assert policy.allows(KEY)


def test_work_that_waits_rather_than_computes_stays_on_the_threads() -> None:
    policy = _InlinePolicy(0.0005)
    policy.observe(KEY, 0.0004, 0.00005)  # quick, but mostly waiting on something else
    assert not policy.allows(KEY)


def test_zero_turns_inlining_off_and_keys_are_bounded() -> None:
    off = _InlinePolicy(0.0)
    off.observe(KEY, 0.0, 0.0)
    assert not off.allows(KEY)
    policy = _InlinePolicy(0.0005)
    for index in range(_InlinePolicy._MAX_KEYS + 5):
        policy.observe((f"m{index}", "predict"), 0.0001, 0.0001)
    assert policy.allows(("m0", "predict"))
    assert not policy.allows((f"m{_InlinePolicy._MAX_KEYS + 1}", "predict"))
