"""WarmupLoader against fakes of the Loader and Servable contracts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from fastserve.api.warmup import WarmupLoader, requests_file
from fastserve.dtypes import DType
from fastserve.errors import Code, ServingError
from fastserve.servables.base import Loader, LoadOptions, Servable
from fastserve.types import RunContext, Signature, TensorInfo

FLOATS = TensorInfo("x:0", DType.DT_FLOAT, (-1,))
DEFAULT = Signature("serving_default", {"x": FLOATS}, {"y": FLOATS})


class FakeServable(Servable):
    def __init__(self) -> None:
        self.runs = 0
        self.unloaded = False

    @property
    def signatures(self) -> Mapping[str, Signature]:
        return {"serving_default": DEFAULT}

    def run(
        self,
        signature: Signature,
        inputs: Mapping[str, np.ndarray],
        output_names: Sequence[str],
        context: RunContext | None = None,
    ) -> dict[str, np.ndarray]:
        self.runs += 1
        return {"y": inputs["x"] + 1}

    def unload(self) -> None:
        self.unloaded = True


class FakeLoader(Loader):
    platform = "fake"

    def __init__(self) -> None:
        self.loaded: list[FakeServable] = []

    def load(self, path: str, options: LoadOptions) -> Servable:
        servable = FakeServable()
        self.loaded.append(servable)
        return servable


def predict_record(signature: str = "") -> bytes:
    log = prediction_log_pb2.PredictionLog()
    request = log.predict_log.request
    request.model_spec.signature_name = signature
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0], dtype=np.float32)))
    return log.SerializeToString()


def write(version: Path, records: Sequence[bytes]) -> str:
    path = requests_file(str(version))
    Path(path).parent.mkdir(parents=True)
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    return path


class Observed:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float, bool]] = []

    def __call__(self, path: str, seconds: float, ok: bool) -> None:
        self.calls.append((path, seconds, ok))


@pytest.mark.parametrize(("iterations", "runs"), [(0, 2), (-1, 2), (1, 2), (4, 8)])
def test_each_record_runs_iterations_times_and_is_observed_once(
    tmp_path: Path, iterations: int, runs: int
) -> None:
    write(tmp_path, [predict_record(), predict_record()])
    observed = Observed()
    loader = WarmupLoader(FakeLoader(), iterations, observed)
    servable = loader.load(str(tmp_path), LoadOptions())
    assert isinstance(servable, FakeServable)
    assert servable.runs == runs and not servable.unloaded
    assert len(observed.calls) == 1
    path, seconds, ok = observed.calls[0]
    assert (path, ok) == (str(tmp_path), True) and seconds >= 0


def test_without_a_file_nothing_runs_and_nothing_is_observed(tmp_path: Path) -> None:
    observed = Observed()
    servable = WarmupLoader(FakeLoader(), 1, observed).load(str(tmp_path), LoadOptions())
    assert isinstance(servable, FakeServable) and servable.runs == 0
    assert observed.calls == []


def test_a_failure_unloads_the_servable_and_is_observed(tmp_path: Path) -> None:
    path = write(tmp_path, [predict_record(), predict_record("missing")])
    observed = Observed()
    inner = FakeLoader()
    with pytest.raises(ServingError) as raised:
        WarmupLoader(inner, 1, observed).load(str(tmp_path), LoadOptions())
    assert raised.value.code is Code.FAILED_PRECONDITION
    assert raised.value.message == (
        f'Warmup request 2 of {path} failed: Serving signature key "missing" not found.'
    )
    assert inner.loaded[0].runs == 1 and inner.loaded[0].unloaded
    assert [(p, ok) for p, _, ok in observed.calls] == [(str(tmp_path), False)]


def test_records_without_a_request_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, [prediction_log_pb2.PredictionLog().SerializeToString(), predict_record()])
    servable = WarmupLoader(FakeLoader()).load(str(tmp_path), LoadOptions())
    assert isinstance(servable, FakeServable) and servable.runs == 1


def test_a_broken_observer_does_not_fail_the_load(tmp_path: Path) -> None:
    write(tmp_path, [predict_record()])

    def broken(path: str, seconds: float, ok: bool) -> None:
        raise RuntimeError("metrics are down")

    servable = WarmupLoader(FakeLoader(), 1, broken).load(str(tmp_path), LoadOptions())
    assert isinstance(servable, FakeServable) and servable.runs == 1


def test_the_platform_is_the_inner_loaders() -> None:
    assert WarmupLoader(FakeLoader()).platform == "fake"
