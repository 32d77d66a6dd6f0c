"""Feature transformations: `transform.yaml` declares inputs, a list of ops and the outputs.

A version folder holds `transform.yaml` (and any vocabulary file an op names)::

    inputs:                        # the signature's inputs: dtype and shape (shape optional)
      age: {dtype: float32, shape: [-1]}
      city: {dtype: string, shape: [-1]}
    ops:                           # run in order; see transform_ops for every op
      - {op: standardize, input: age, output: age_z, mean: 40.0, std: 12.0}
      - {op: vocabulary, input: city, output: city_id, vocabulary: [paris, tokyo],
         num_oov_buckets: 1}
      - {op: one_hot, input: city_id, output: city_hot, depth: 3}
    outputs: [age_z, city_hot]     # optional: every op output no later op uses

It is served under one signature, serving_default, whose inputs are the declared inputs (the
names no op produces; each must be used) and whose outputs have the dtypes and shapes inferred
through the ops. Every problem of the file is a load error naming the op and what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from fastserve.servables.base import Loader, LoadOptions, Servable, check_declared_shapes
from fastserve.servables.settings import read_yaml
from fastserve.servables.transform_ops import Op, read_ops, read_tensor_infos, run_ops
from fastserve.types import DEFAULT_SIGNATURE, PREDICT_METHOD, RunContext, Signature, TensorInfo

TRANSFORM_FILE = "transform.yaml"


class TransformServable(Servable):
    """A checked list of ops behind one signature."""

    runtime = "numpy"

    def __init__(self, signature: Signature, ops: Sequence[Op]) -> None:
        self._signatures = {signature.name: signature}
        self._ops = tuple(ops)

    @property
    def signatures(self) -> Mapping[str, Signature]:
        return self._signatures

    def run(
        self,
        signature: Signature,
        inputs: Mapping[str, np.ndarray],
        output_names: Sequence[str],
        context: RunContext | None = None,
    ) -> dict[str, np.ndarray]:
        check_declared_shapes(signature, inputs)
        values = dict(inputs)
        run_ops(self._ops, values)
        return {name: values[name] for name in output_names}


def read_transform(path: str) -> tuple[Signature, list[Op]]:
    """transform.yaml of the version folder `path`, checked: the signature and the ops."""
    settings = read_yaml(path, TRANSFORM_FILE, required=True)
    assert settings is not None
    inputs = read_tensor_infos(settings, "inputs")
    ops, names = read_ops(settings.raw("ops"), settings.where, path, inputs)
    used = {name for op in ops for name in op.inputs}
    if "outputs" in settings:
        outputs = settings.strings("outputs")
        if not outputs:
            settings.fail("outputs: expected at least one name")
        for name in outputs:
            if name not in names:
                settings.fail(
                    f"outputs: {name} is neither an input nor an op's output (known: "
                    f"{', '.join(sorted(names))})"
                )
    else:
        outputs = [op.output for op in ops if op.output not in used]
    settings.finish()
    for name in inputs:
        if name not in used and name not in outputs:
            settings.fail(f"inputs: {name} is used by no op and is not an output")
    infos: dict[str, TensorInfo] = {}
    for name in outputs:
        info = names[name]
        assert info is not None  # every input is declared, so every output is inferred
        infos[name] = TensorInfo(name, info.dtype, info.shape)
    signature = Signature(DEFAULT_SIGNATURE, inputs, infos, PREDICT_METHOD)
    return signature, ops


class TransformLoader(Loader):
    """Loads `transform.yaml` version folders (model_platform "transform")."""

    platform = "transform"

    def load(self, path: str, options: LoadOptions) -> Servable:
        signature, ops = read_transform(path)
        return TransformServable(signature, ops)
