"""Batching parameters: TF Serving's BatchingParameters text proto, its defaults and its checks."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from fastserve.errors import ConfigError, invalid_argument
from fastserve.servables.batching_parameters import FIELDS, SERVER_WIDE, BatchingParameters

# The file TF Serving reads per model version with --enable_per_model_batching_parameters.
PER_MODEL_FILE = "batching_params.pbtxt"


_WRAPPED = (
    "max_batch_size",
    "batch_timeout_micros",
    "max_enqueued_batches",
    "num_batch_threads",
    "thread_pool_name",
    "enable_large_batch_splitting",
    "max_execution_batch_size",
)


def from_proto(message: Any) -> dict[str, Any]:
    """The fields a BatchingParameters message sets (unset wrapper fields keep defaults)."""
    values: dict[str, Any] = {}
    for name in _WRAPPED:
        if message.HasField(name):
            values[name] = getattr(message, name).value
    if message.allowed_batch_sizes:
        values["allowed_batch_sizes"] = tuple(message.allowed_batch_sizes)
    if message.pad_variable_length_inputs:
        values["pad_variable_length_inputs"] = True
    return values


def read_text_proto(path: str) -> dict[str, Any]:
    """The fields set in a BatchingParameters text-proto file."""
    from fastserve.config.protos import read_text_file

    return from_proto(read_text_file(path, "BatchingParameters", "batching parameters"))


def from_mapping(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A model's `batching:` section of the YAML config, checked field by field."""
    parsed: dict[str, Any] = {}
    for name, value in values.items():
        if name in SERVER_WIDE:
            raise ConfigError(
                f"{where}.{name}: the batch threads are shared by every model; set it in "
                "--batching_parameters_file"
            )
        if name not in FIELDS:
            own = ", ".join(f for f in FIELDS if f not in SERVER_WIDE)
            raise ConfigError(f"{where}.{name}: unknown field (expected one of: {own})")
        if name == "allowed_batch_sizes":
            if not isinstance(value, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            ):
                raise ConfigError(f"{where}.{name}: expected a list of integers")
            parsed[name] = tuple(value)
        elif name in ("pad_variable_length_inputs", "enable_large_batch_splitting"):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}.{name}: expected true or false")
            parsed[name] = value
        elif name == "thread_pool_name":
            parsed[name] = str(value)
        else:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{where}.{name}: expected an integer")
            parsed[name] = value
    return parsed


class ParametersFor:
    """The batching parameters of one model's versions: its own, or the server's, or (with
    per-model parameters) the batching_params.pbtxt in each version folder."""

    def __init__(
        self,
        common: BatchingParameters | None,
        per_model_files: bool = False,
        overrides: Mapping[str, object] | None = None,
    ) -> None:
        self._common = common
        self._per_model_files = per_model_files
        self._overrides = dict(overrides or {})

    def __call__(self, path: str) -> BatchingParameters | None:

        if self._per_model_files:
            file = os.path.join(path, PER_MODEL_FILE)
            if not os.path.exists(file):
                return None  # TF Serving serves such a version unbatched
            try:
                own = read_text_proto(file)
            except ConfigError as error:
                raise invalid_argument(str(error)) from None
            base = BatchingParameters(
                num_batch_threads=self._common.num_batch_threads if self._common else 1
            )
            return base.merged(own)
        if self._common is None and not self._overrides:
            return None
        return (self._common or BatchingParameters()).merged(self._overrides)


def common_parameters(
    enable_batching: bool, parameters_file: str, per_model_files: bool
) -> BatchingParameters | None:
    """The server-wide batching parameters the flags ask for (None: batching is off), checked.
    Raises ConfigError for flags that do not go together or a file that cannot be used."""
    if parameters_file and not enable_batching:
        raise ConfigError(
            "server_options.batching_parameters_file is set without setting "
            "server_options.enable_batching to true."
        )
    if per_model_files and not enable_batching:
        raise ConfigError(
            "--enable_per_model_batching_parameters applies only with --enable_batching"
        )
    try:
        if parameters_file:
            return BatchingParameters().merged(read_text_proto(parameters_file)).checked()
        if enable_batching:
            return BatchingParameters(thread_pool_name="model_server_batch_threads").checked()
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return None


def parameters_for(
    own: Mapping[str, Any] | None, common: BatchingParameters | None, per_model_files: bool
) -> ParametersFor | None:
    """How a model's versions get their batching parameters: from batching_params.pbtxt in
    each version folder (--enable_per_model_batching_parameters), from the model's own
    `batching:` settings over the server's, or the server's; None: the model is not batched."""
    if per_model_files:
        return ParametersFor(common, per_model_files=True)
    if own is not None:
        return ParametersFor(common or BatchingParameters(), overrides=own)
    if common is not None:
        return ParametersFor(common)
    return None
