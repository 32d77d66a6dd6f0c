"""Batching parameters: TF Serving's BatchingParameters text proto, its defaults and its checks."""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fastserve.config import ConfigError

# The file TF Serving reads per model version with --enable_per_model_batching_parameters.
PER_MODEL_FILE = "batching_params.pbtxt"


def _cpus() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class BatchingParameters:
    """TF Serving's BatchingParameters with its defaults for fields left unset."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = field(default_factory=_cpus)
    thread_pool_name: str = "batch_threads"
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = False
    # 0: the same as max_batch_size (TF Serving's rule when splitting is on and it is unset).
    max_execution_batch_size: int = 0

    @property
    def execution_batch_size(self) -> int:
        """The most rows one batch runs with."""
        if self.enable_large_batch_splitting and self.max_execution_batch_size > 0:
            return self.max_execution_batch_size
        return self.max_batch_size

    def checked(self) -> BatchingParameters:
        """These parameters, or ValueError worded as TF Serving words it (which TF Serving
        raises when a version loads with them)."""
        if self.max_batch_size <= 0:
            raise ValueError(f"input_batch_size_limit must be positive; was {self.max_batch_size}")
        if self.batch_timeout_micros < 0:
            raise ValueError(
                f"batch_timeout_micros must be non-negative; was {self.batch_timeout_micros}"
            )
        enqueued = self.max_enqueued_batches
        if enqueued == 0 and not self.enable_large_batch_splitting:
            enqueued = 1  # TF Serving's rewrite: low-traffic models rely on 0 meaning 1
        if enqueued <= 0:
            raise ValueError(f"max_enqueued_batches must be positive; was {enqueued}")
        if self.num_batch_threads <= 0:
            raise ValueError(f"num_batch_threads must be positive; was {self.num_batch_threads}")
        if (
            self.enable_large_batch_splitting
            and self.max_execution_batch_size > self.max_batch_size
        ):
            raise ValueError(
                "When enable_large_batch_splitting is true, input_batch_size_limit must be "
                "greater than or equal to max_execution_batch_size."
            )
        sizes = self.allowed_batch_sizes
        if sizes:
            if any(later <= earlier for earlier, later in itertools.pairwise(sizes)):
                raise ValueError("allowed_batch_sizes entries must be monotonically increasing")
            if self.enable_large_batch_splitting:
                if sizes[-1] != self.execution_batch_size:
                    raise ValueError(
                        "Last entry in allowed_batch_sizes must be equal to "
                        f"max_execution_batch_size; last entry was {sizes[-1]}; expected "
                        f"{self.execution_batch_size}"
                    )
            elif sizes[-1] != self.max_batch_size:
                raise ValueError(
                    "Last entry in allowed_batch_sizes must match max_batch_size; last entry "
                    f"was {sizes[-1]}; expected {self.max_batch_size}"
                )
        return dataclasses.replace(self, max_enqueued_batches=enqueued)

    def merged(self, overrides: Mapping[str, Any]) -> BatchingParameters:
        """These parameters with some fields replaced (a model's own settings)."""
        return dataclasses.replace(self, **dict(overrides))


FIELDS = tuple(f.name for f in dataclasses.fields(BatchingParameters))
# Settings of the shared batch threads, not of one model's queue.
SERVER_WIDE = ("num_batch_threads", "thread_pool_name")
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
    from fastserve.config_protos import read_text_file

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
