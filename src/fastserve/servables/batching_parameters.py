"""TF Serving's BatchingParameters as a plain value, with its defaults and its checks."""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


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
