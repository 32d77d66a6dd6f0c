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
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from fastserve import protos, tensors, tf_examples
from fastserve.api import check_predict_request, find_signature, run_predict
from fastserve.errors import Code, ServingError, invalid_argument
from fastserve.servables.base import Loader, LoadOptions, Servable
from fastserve.tasks import run_classify, run_multi_inference, run_regress

log = logging.getLogger("fastserve.warmup")

# TF Serving's names and limit (servables/tensorflow/saved_model_warmup_util.h).
ASSETS_EXTRA = "assets.extra"
REQUESTS_FILE = "tf_serving_warmup_requests"
MAX_RECORDS = 1000

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
    from tensorflow_serving.apis import prediction_log_pb2

    count = 0
    for record in _records(warmup_path):
        count += 1
        if count > MAX_RECORDS:
            raise invalid_argument(
                f"Number of warmup records exceeds the maximum ({MAX_RECORDS}) at {warmup_path}"
            )
        try:
            prediction_log = prediction_log_pb2.PredictionLog.FromString(record)
        except Exception as error:  # protobuf's DecodeError, or its C++ twin
            raise invalid_argument(
                f"Failed to parse warmup record {count} from {warmup_path}: "
                f"it is not a tensorflow.serving.PredictionLog ({error})"
            ) from None
        for _ in range(iterations):
            try:
                _run(servable, prediction_log, check_method_names)
            except ServingError as error:
                raise ServingError(
                    error.code,
                    f"Warmup request {count} of {warmup_path} failed: {error.message}",
                ) from None
            except Exception as error:
                raise ServingError(
                    Code.INTERNAL,
                    f"Warmup request {count} of {warmup_path} failed: "
                    f"{type(error).__name__}: {error}",
                ) from None
    return count


def _records(warmup_path: str) -> Iterator[bytes]:
    """The records of a TFRecord file, read with TensorFlow; unreadable or corrupt data
    becomes a ServingError naming the file."""
    import tensorflow as tf

    try:
        for record in tf.data.TFRecordDataset(warmup_path):
            yield record.numpy()
    except tf.errors.DataLossError as error:
        raise ServingError(
            Code.DATA_LOSS,
            f"Cannot read warmup data {warmup_path}: {_op_message(error)}. "
            "Please verify your warmup data is in TFRecord format.",
        ) from None
    except tf.errors.OpError as error:
        raise ServingError(
            Code(error.error_code),  # TensorFlow's codes are the canonical ones
            f"Cannot read warmup data {warmup_path}: {_op_message(error)}",
        ) from None


def _op_message(error: Any) -> str:
    """An eager op's error message without the function and op names TensorFlow wraps it in
    ("{{function_node ...}} corrupted record at 0 [Op:IteratorGetNext] name: ")."""
    message = _FUNCTION_NODE.sub("", str(error.message))
    return _OP_SUFFIX.sub("", message).strip()


_FUNCTION_NODE = re.compile(r"^\{\{function_node [^}]*\}\}\s*")
_OP_SUFFIX = re.compile(r"\s*\[Op:[^\]]*\].*$", re.DOTALL)


def _run(servable: Servable, prediction_log: Any, check_method_names: bool) -> None:
    """Runs one PredictionLog's request, as a client request of its kind would run."""
    kind = prediction_log.WhichOneof("log_type")
    if kind == "predict_log":
        request = prediction_log.predict_log.request
        signature = find_signature(servable, request.model_spec.signature_name)
        check_predict_request(
            signature, request.inputs.keys(), request.output_filter, check_method_names
        )
        inputs = {alias: tensors.to_numpy(proto, alias) for alias, proto in request.inputs.items()}
        run_predict(
            servable,
            signature,
            inputs,
            request.output_filter,
            check_method_names=check_method_names,
        )
    elif kind in ("classify_log", "regress_log"):
        request = getattr(prediction_log, kind).request
        run = run_classify if kind == "classify_log" else run_regress
        run(
            servable,
            request.model_spec.signature_name,
            tf_examples.serialize_input(request.input),
            check_method_names=check_method_names,
        )
    elif kind == "multi_inference_log":
        request = prediction_log.multi_inference_log.request
        tasks = [
            (protos.model_spec_from_proto(task.model_spec), task.method_name)
            for task in request.tasks
        ]
        run_multi_inference(
            servable,
            tasks,
            tf_examples.serialize_input(request.input),
            check_method_names=check_method_names,
        )
    elif kind is not None:
        raise ServingError(Code.UNIMPLEMENTED, f"Unsupported log_type for warmup: {kind}")
    # A record without a request is skipped, as TF Serving skips it.
