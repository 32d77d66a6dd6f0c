"""Model warmup: replays a version's sample requests after it loads, before it serves.

A version folder may hold `assets.extra/tf_serving_warmup_requests`, a TFRecord file of
tensorflow.serving.PredictionLog records (as TF Serving reads it). Each record's request
(Predict, Classify, Regress or MultiInference) runs against the freshly loaded servable, so
that lazy initialisation happens at load time instead of on the first client request. Any
failure fails the load, and the manager then ends that version with the error.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from fastserve.api.examples import run_classify, run_multi_inference, run_regress
from fastserve.api.predict import check_predict_request, run_predict
from fastserve.api.signatures import find_signature
from fastserve.codecs.warmup_records import (
    ExamplesRecord,
    MultiInferenceRecord,
    PredictRecord,
    WarmupRequest,
    read_requests,
)
from fastserve.errors import ServingError, from_exception, unimplemented
from fastserve.servables.base import Loader, LoadOptions, Servable

log = logging.getLogger("fastserve.warmup")

# TF Serving's names (servables/tensorflow/saved_model_warmup_util.h).
ASSETS_EXTRA = "assets.extra"
REQUESTS_FILE = "tf_serving_warmup_requests"

# Called once per replayed warmup file: (version folder, wall seconds, succeeded).
WarmupObserver = Callable[[str, float, bool], None]


def requests_file(version_path: str) -> str:
    """Where a version folder keeps its warmup requests."""
    return os.path.join(version_path, ASSETS_EXTRA, REQUESTS_FILE)


class WarmupLoader(Loader):
    """Wraps another loader: each version it loads is warmed up before load() returns.

    Wrap it outside a BatchingLoader, so that warmup requests go through the batch queues
    as client requests will. A version without a warmup file loads as the inner loader
    loads it. If warmup fails, the servable is unloaded and load() raises a ServingError
    naming the warmup file.
    """

    def __init__(
        self,
        inner: Loader,
        iterations: int = 0,
        on_warmup: WarmupObserver | None = None,
        *,
        check_method_names: bool = False,
    ) -> None:
        self.platform = inner.platform
        self._inner = inner
        # --num_request_iterations_for_warmup is used only if > 0, as in TF Serving.
        self._iterations = iterations if iterations > 0 else 1
        self._on_warmup = on_warmup
        self._check_method_names = check_method_names

    def load(self, path: str, options: LoadOptions) -> Servable:
        servable = self._inner.load(path, options)
        try:
            self._warm_up(servable, path)
        except BaseException:
            try:
                servable.unload()
            except Exception:  # the warmup failure is the error to report
                log.exception("unloading %s after its failed warmup failed too", path)
            raise
        return servable

    def _warm_up(self, servable: Servable, path: str) -> None:
        warmup_path = requests_file(path)
        if not os.path.exists(warmup_path):
            log.info("No warmup data file found at %s", warmup_path)
            return
        log.info(
            "Starting to read warmup data for model at %s (each record replayed %d time%s)",
            warmup_path,
            self._iterations,
            "" if self._iterations == 1 else "s",
        )
        started = time.monotonic()
        succeeded = False
        try:
            count = replay(
                servable, warmup_path, self._iterations, check_method_names=self._check_method_names
            )
            succeeded = True
        finally:
            elapsed = time.monotonic() - started
            self._report(path, elapsed, succeeded)
        log.info(
            "Finished reading warmup data for model at %s. Number of warmup records read: %d. "
            "Elapsed time (microseconds): %d.",
            warmup_path,
            count,
            int(elapsed * 1e6),
        )

    def _report(self, path: str, seconds: float, succeeded: bool) -> None:
        if self._on_warmup is None:
            return
        try:
            self._on_warmup(path, seconds, succeeded)
        except Exception:  # a broken observer must not fail a load that worked
            log.exception("the warmup observer failed")


def replay(
    servable: Servable, warmup_path: str, iterations: int = 1, *, check_method_names: bool = False
) -> int:
    """Runs every request of the TFRecord file `warmup_path` on `servable`, each `iterations`
    times; returns how many records there were. Raises a ServingError naming the file."""
    count = 0
    for request in read_requests(warmup_path):
        count += 1
        if request is None:
            continue  # a record without a request is skipped, as TF Serving skips it
        for _ in range(iterations):
            try:
                _run(servable, request, check_method_names)
            except Exception as error:
                failure = from_exception(error)
                raise ServingError(
                    failure.code,
                    f"Warmup request {count} of {warmup_path} failed: {failure.message}",
                ) from None
    return count


def _run(servable: Servable, request: WarmupRequest, check_method_names: bool) -> None:
    """Runs one warmup request, as a client request of its kind would run."""
    if isinstance(request, PredictRecord):
        signature = find_signature(servable, request.signature_name)
        check_predict_request(
            signature, request.input_names, request.output_filter, check_method_names
        )
        run_predict(
            servable,
            signature,
            request.inputs(),
            request.output_filter,
            check_method_names=check_method_names,
        )
    elif isinstance(request, ExamplesRecord):
        run = run_classify if request.kind == "classify" else run_regress
        run(
            servable,
            request.signature_name,
            request.examples,
            check_method_names=check_method_names,
        )
    elif isinstance(request, MultiInferenceRecord):
        run_multi_inference(
            servable, request.tasks, request.examples, check_method_names=check_method_names
        )
    else:
        raise unimplemented(f"Unsupported log_type for warmup: {request.log_type}")
