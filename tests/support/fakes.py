"""Fakes of the Loader and Servable contracts (servables/base.py), as TF Serving's fake_loader:
small real implementations the API, the manager and health can be tested over.

FakeServable is half_plus_two in numpy: version N computes y = 0.5x + (N + 1), so version 1 is
TF Serving's half_plus_two and version 2 its half_plus_three. Besides Predict's signature it has
a classify and a regress signature over serialized tf.Examples (feature "x", one float), and
signatures that misbehave on purpose.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence

import numpy as np
from tensorflow.core.example import example_pb2

from fastserve.dtypes import DType
from fastserve.errors import Code, ServingError
from fastserve.servables.base import Loader, LoadOptions, Servable
from fastserve.types import (
    CLASSIFY_METHOD,
    REGRESS_METHOD,
    RunContext,
    Signature,
    TensorInfo,
)

FLOATS = TensorInfo("x:0", DType.DT_FLOAT, (-1,))
EXAMPLES = TensorInfo("tf_example:0", DType.DT_STRING, (-1,))

SIGNATURES = {
    # y = 0.5x + offset, and x2 = 2x.
    "serving_default": Signature(
        "serving_default",
        {"x": FLOATS},
        {
            "y": TensorInfo("y:0", DType.DT_FLOAT, (-1,)),
            "x2": TensorInfo("x2:0", DType.DT_FLOAT, (-1,)),
        },
    ),
    # Per example, the classes "x" and "y" scored x and 0.5x + offset.
    "classify_x": Signature(
        "classify_x",
        {"inputs": EXAMPLES},
        {
            "classes": TensorInfo("classes:0", DType.DT_STRING, (-1, 2)),
            "scores": TensorInfo("scores:0", DType.DT_FLOAT, (-1, 2)),
        },
        CLASSIFY_METHOD,
    ),
    # Per example, 0.5x + offset.
    "regress_x": Signature(
        "regress_x",
        {"inputs": EXAMPLES},
        {"outputs": TensorInfo("outputs:0", DType.DT_FLOAT, (-1,))},
        REGRESS_METHOD,
    ),
    # Raises ValueError("boom"): not a ServingError.
    "raises": Signature("raises", {"x": FLOATS}, {"y": FLOATS}),
    # Raises a ServingError of its own choosing.
    "exhausted": Signature("exhausted", {"x": FLOATS}, {"y": FLOATS}),
    # Returns no output at all.
    "returns_nothing": Signature("returns_nothing", {"x": FLOATS}, {"y": FLOATS}),
    # A method name Predict may not run with --enable_signature_method_name_check.
    "custom_method": Signature("custom_method", {"x": FLOATS}, {"y": FLOATS}, "custom/method"),
}


def example(x: float) -> bytes:
    """A serialized tf.Example with the one float feature "x"."""
    proto = example_pb2.Example()
    proto.features.feature["x"].float_list.value.append(x)
    return proto.SerializeToString()


def _xs(serialized: np.ndarray) -> np.ndarray:
    return np.array(
        [
            example_pb2.Example.FromString(item).features.feature["x"].float_list.value[0]
            for item in serialized
        ],
        np.float32,
    )


class FakeServable(Servable):
    """One version of the fake model; records each run's signature and output names."""

    runtime = "fake"

    def __init__(self, offset: float) -> None:
        self.offset = offset
        self.runs: list[tuple[str, tuple[str, ...]]] = []
        self.unloaded = False

    @property
    def signatures(self) -> Mapping[str, Signature]:
        return SIGNATURES

    def run(
        self,
        signature: Signature,
        inputs: Mapping[str, np.ndarray],
        output_names: Sequence[str],
        context: RunContext | None = None,
    ) -> dict[str, np.ndarray]:
        self.runs.append((signature.name, tuple(output_names)))
        name = signature.name
        if name == "raises":
            raise ValueError("boom")
        if name == "exhausted":
            raise ServingError(Code.RESOURCE_EXHAUSTED, "out of fake memory")
        if name == "returns_nothing":
            return {}
        if name in ("classify_x", "regress_x"):
            x = _xs(inputs["inputs"])
            y = 0.5 * x + self.offset
            computed = {
                "classes": np.array([[b"x", b"y"]] * len(x), dtype=object),
                "scores": np.stack([x, y], axis=1).astype(np.float32),
                "outputs": y.astype(np.float32),
            }
        else:
            x = inputs["x"]
            computed = {"y": (0.5 * x + self.offset).astype(np.float32), "x2": 2 * x}
        return {output: computed[output] for output in output_names}

    def unload(self) -> None:
        self.unloaded = True


class FakeLoader(Loader):
    """Loads a FakeServable from a version folder named N (offset N + 1). A folder holding a
    file named `broken` fails to load with its text as the error."""

    platform = "fake"

    def __init__(self) -> None:
        self.loaded: dict[str, FakeServable] = {}
        self._lock = threading.Lock()

    def load(self, path: str, options: LoadOptions) -> Servable:
        broken = os.path.join(path, "broken")
        if os.path.exists(broken):
            with open(broken) as reason:
                raise RuntimeError(reason.read())
        servable = FakeServable(int(os.path.basename(path)) + 1.0)
        with self._lock:
            self.loaded[path] = servable
        return servable
