"""The gRPC frontend: TF Serving's PredictionService and ModelService, and TensorFlow's
profiler service, on fastserve's native (grpc++) server.

The native server hands each call's method and request bytes to `Dispatcher`, which parses the
request, runs the servicer's method and gives back the response's bytes; grpc.health.v1.Health
is grpc++'s own service, whose statuses follow `Health`."""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import numpy as np
from google.protobuf.message import DecodeError

from fastserve._core import GrpcCall, GrpcServer, RequestLog
from fastserve.api.examples import Classifications, Regressions, Served, Tasks
from fastserve.api.inference import InferenceAPI, Resolved
from fastserve.codecs import protos
from fastserve.codecs import tensor_proto as tensors
from fastserve.codecs import tf_example as tf_examples
from fastserve.codecs.tfs_protos import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    predict_pb2,
    regression_pb2,
)
from fastserve.core.models import ModelConfig
from fastserve.dtypes import NUMPY_MAX_RANK, DType, from_numpy
from fastserve.errors import (
    Code,
    ConfigError,
    ServingError,
    from_exception,
    internal,
    invalid_argument,
    truncate,
    unimplemented,
)
from fastserve.frontends.profiler import METHODS as PROFILER_METHODS
from fastserve.frontends.profiler import SERVICE as PROFILER_SERVICE
from fastserve.frontends.profiler import ProfilerService
from fastserve.observability.health import Health
from fastserve.observability.metrics import INFERENCE_APIS, status_name
from fastserve.servables.base import Pending
from fastserve.types import ModelSpec, RunContext, Signature, SSLConfig

log = logging.getLogger("fastserve.grpc")
access_log = logging.getLogger("fastserve.access")

# TF Serving lifts gRPC's 4 MB message limit to the largest a protobuf can be (requests are
# bounded by --max_request_bytes, whose default is the same).
MAX_MESSAGE_BYTES = 2**31 - 1

Request = TypeVar("Request")
Response = TypeVar("Response")


def _model_name(request: Any) -> str:
    if hasattr(request, "model_spec"):
        return str(request.model_spec.name)
    tasks = getattr(request, "tasks", ())  # MultiInference: the first task's model
    return str(tasks[0].model_spec.name) if tasks else ""


def _account(
    api: InferenceAPI, access: bool, method: str, model: str, status: str, peer: str, micros: float
) -> None:
    """Counts one answered gRPC call (the inference APIs) and writes its access-log line."""
    if method in INFERENCE_APIS:
        api.metrics.request(model, method, "GRPC", status, micros)
    if access:
        access_log.info(
            "grpc %s model=%s status=%s peer=%s took=%.0fus", method, model, status, peer, micros
        )


class _Servicer:
    """What every servicer shares: the API, and whether to log each call."""

    def __init__(self, api: InferenceAPI, access: bool) -> None:
        self._api = api
        self._access = access


# A handler's answer as the native server takes it: (status code, message, response bytes).
Answer = tuple[int, str, bytes]


def _guarded(
    handler: Callable[[Any, Request, GrpcCall], Response],
) -> Callable[[Any, Request, GrpcCall], Response]:
    """Marks a servicer method as a gRPC method; the dispatcher turns its ServingError (and
    anything unexpected) into a gRPC status, never a crash."""
    handler.__grpc_method__ = True  # type: ignore[attr-defined]
    return handler


class PredictionServicer(_Servicer):
    def __init__(
        self,
        api: InferenceAPI,
        tasks: Tasks,
        tensor_content: bool,
        access: bool = False,
        max_tensor_bytes: int = tensors.DEFAULT_MAX_REQUEST_BYTES,
    ) -> None:
        super().__init__(api, access)
        self._max_tensor_bytes = max_tensor_bytes
        self._tasks = tasks
        self._tensor_content = tensor_content

    @_guarded
    def Predict(
        self, request: predict_pb2.PredictRequest, context: GrpcCall
    ) -> predict_pb2.PredictResponse:
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        with self._api.resolve(protos.model_spec_from_proto(request.model_spec)) as resolved:
            self._api.check_request(resolved, request.inputs.keys(), request.output_filter)
            inputs = {
                alias: tensors.to_numpy(proto, alias, self._max_tensor_bytes)
                for alias, proto in request.inputs.items()
            }
            outputs = self._api.predict(
                resolved, inputs, request.output_filter, _run_context(context)
            )
            response = predict_pb2.PredictResponse()
            signature = resolved.signature
            protos.fill_model_spec(
                response.model_spec, request.model_spec.name, resolved.version, signature.name
            )
            for name, array in outputs.items():
                tensors.fill_proto(
                    response.outputs[name],
                    array,
                    _output_dtype(signature, name, array),
                    as_content=self._tensor_content,
                )
            return response

    def run_arrays(
        self,
        call: GrpcCall,
        name: str,
        version: int | None,
        label: str | None,
        signature_name: str,
        inputs: dict[str, np.ndarray],
        output_filter: list[str],
        wait: bool = True,
    ) -> tuple[Any, ...]:
        """Predict's Python step on the native path: the request was parsed and its tensors
        decoded in C++. Resolves, checks and runs; returns (0, version, signature name,
        [(alias, DataType, array), ...]) or (code, message). Counted and logged as Predict.

        With wait=False, a request queued by a servable that pends (a Python batch queue) is
        not waited for:
        the answer is then (-1, task, finish), where `task` (a _core.Task) ends when its
        batch ran and finish() then returns one of the answers above. Cancellation is then
        the caller's: it abandons the task when the call is cancelled."""
        step = _ArraysStep(self._api, self._access, call, name)
        spec = ModelSpec(name, version, label, signature_name)
        return step.settle(step.start, spec, inputs, output_filter, wait)

    @_guarded
    def GetModelMetadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: GrpcCall
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        protos.check_metadata_fields(list(request.metadata_field))
        name, version, signatures = self._api.metadata(
            protos.model_spec_from_proto(request.model_spec)
        )
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        protos.fill_model_spec(response.model_spec, name, version, "")
        response.metadata[protos.SIGNATURE_DEF_FIELD].Pack(protos.signature_def_map(signatures))
        return response

    @_guarded
    def Classify(
        self, request: classification_pb2.ClassificationRequest, context: GrpcCall
    ) -> classification_pb2.ClassificationResponse:
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        served, result = self._tasks.classify(
            protos.model_spec_from_proto(request.model_spec),
            tf_examples.serialize_input(request.input),
            _run_context(context),
        )
        response = classification_pb2.ClassificationResponse()
        _fill_served(response.model_spec, served)
        _fill_classifications(response.result, result)
        return response

    @_guarded
    def Regress(
        self, request: regression_pb2.RegressionRequest, context: GrpcCall
    ) -> regression_pb2.RegressionResponse:
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        served, result = self._tasks.regress(
            protos.model_spec_from_proto(request.model_spec),
            tf_examples.serialize_input(request.input),
            _run_context(context),
        )
        response = regression_pb2.RegressionResponse()
        _fill_served(response.model_spec, served)
        _fill_regressions(response.result, result)
        return response

    @_guarded
    def MultiInference(
        self, request: inference_pb2.MultiInferenceRequest, context: GrpcCall
    ) -> inference_pb2.MultiInferenceResponse:
        tasks = [
            (protos.model_spec_from_proto(task.model_spec), task.method_name)
            for task in request.tasks
        ]
        results = self._tasks.multi_inference(tasks, tf_examples.serialize_input(request.input))
        response = inference_pb2.MultiInferenceResponse()
        for served, result in results:
            entry = response.results.add()
            _fill_served(entry.model_spec, served)
            if isinstance(result, Classifications):
                _fill_classifications(entry.classification_result, result)
            else:
                _fill_regressions(entry.regression_result, result)
        return response


class _ArraysStep:
    """One Predict's Python step on the native path (run_arrays): its resolved version, held
    until the answer is made, and its accounting, done once."""

    __slots__ = ("_access", "_api", "_call", "_name", "_resolved", "_started")

    def __init__(self, api: InferenceAPI, access: bool, call: GrpcCall, name: str) -> None:
        self._api = api
        self._access = access
        self._call = call
        self._name = name
        self._started = time.perf_counter()
        self._resolved: Resolved | None = None

    def start(
        self,
        spec: ModelSpec,
        inputs: dict[str, np.ndarray],
        output_filter: list[str],
        wait: bool,
    ) -> dict[str, np.ndarray] | Pending[dict[str, np.ndarray]]:
        api = self._api
        resolved = self._resolved = api.resolve(spec)
        # Checked before the run, so that a request failing them is not timed as the
        # model's (runtime_latency).
        api.check_request(resolved, inputs.keys(), output_filter)
        servable = resolved.servable
        if servable.queues_requests and (wait or not servable.pends):
            # Waiting in a queue: a cancelled call drops the queued work.
            return api.predict(resolved, inputs, output_filter, _run_context(self._call))
        # An unqueued run has nothing to drop on cancellation (registering would cost the
        # call a GIL acquisition when it ends), and a pending one is abandoned by the caller:
        # only the deadline here, and without one no context at all.
        remaining = self._call.remaining()
        context = None if remaining is None else RunContext.within(remaining)
        if servable.queues_requests:
            return api.start_predict(resolved, inputs, output_filter, context)
        return api.predict(resolved, inputs, output_filter, context)

    def settle(
        self,
        produce: Callable[..., Mapping[str, np.ndarray] | Pending[dict[str, np.ndarray]]],
        *args: Any,
    ) -> tuple[Any, ...]:
        """The answer from what `produce(*args)` gives or raises; the version released and
        the request counted once it is final (not while it is Pending)."""
        failure: ServingError | None = None
        final = True
        try:
            outputs = produce(*args)
            if isinstance(outputs, Pending):
                final = False
                return (-1, outputs.waitable, partial(self.settle, outputs.finish))
            resolved = self._resolved
            assert resolved is not None
            signature = resolved.signature
            encoded = [
                (alias, int(_output_dtype(signature, alias, array)), array)
                for alias, array in outputs.items()
            ]
            return (0, resolved.version, signature.name, encoded)
        except ServingError as error:
            failure = error
        except BaseException as error:  # a bug of ours: report it, keep serving
            log.exception("Predict failed")
            failure = from_exception(error)
        finally:
            if final:
                if self._resolved is not None:
                    self._resolved.release()
                    self._resolved = None
                micros = (time.perf_counter() - self._started) * 1e6
                _account(
                    self._api,
                    self._access,
                    "Predict",
                    self._name,
                    status_name(failure),
                    self._call.peer,
                    micros,
                )
        return (failure.code.value, truncate(failure.message))


def _output_dtype(signature: Signature, alias: str, array: np.ndarray) -> DType:
    """An output's type on the wire: the signature's, or the array's where it declares none."""
    declared = signature.outputs[alias].dtype
    return declared if declared is not DType.DT_INVALID else from_numpy(array.dtype)


def _run_context(context: GrpcCall) -> RunContext:
    """The client's deadline, and a cancellation that fires when the RPC ends early (a client
    that goes away): queued work is then dropped. A call without a deadline (h2load's) has
    none here either."""
    run = RunContext.within(context.remaining())
    context.on_cancel(run.cancel)
    return run


def _fill_served(proto: Any, served: Served) -> None:
    protos.fill_model_spec(proto, served.model, served.version, served.signature_name)


def _fill_classifications(proto: Any, result: Classifications) -> None:
    for row in result.rows:
        classes = proto.classifications.add().classes
        for label, score in row:
            entry = classes.add()
            if label:
                entry.label = label.decode("utf-8", "replace")
            entry.score = score


def _fill_regressions(proto: Any, result: Regressions) -> None:
    for value in result.values:
        proto.regressions.add().value = value


class ModelServicer(_Servicer):
    def __init__(
        self, api: InferenceAPI, access: bool, read_models: Callable[[Any], list[ModelConfig]]
    ) -> None:
        super().__init__(api, access)
        self._read_models = read_models

    @_guarded
    def GetModelStatus(
        self, request: get_model_status_pb2.GetModelStatusRequest, context: GrpcCall
    ) -> get_model_status_pb2.GetModelStatusResponse:
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        spec = protos.model_spec_from_proto(request.model_spec)
        statuses = self._api.model_status(spec.name, spec.version, spec.label)
        return protos.model_status_response(statuses)

    @_guarded
    def HandleReloadConfigRequest(
        self, request: model_management_pb2.ReloadConfigRequest, context: GrpcCall
    ) -> model_management_pb2.ReloadConfigResponse:
        if request.config.WhichOneof("config") != "model_config_list":
            raise invalid_argument(
                "ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
                "ModelConfigList is currently supported"
            )
        try:
            models = self._read_models(request.config)
        except ConfigError as error:
            raise invalid_argument(str(error)) from None
        self._api.reload_config(models)
        response = model_management_pb2.ReloadConfigResponse()
        response.status.error_code = 0
        return response


class ProfilerServicer(_Servicer):
    """tensorflow.ProfilerService: each request's bytes go to the protocol-free service."""

    def __init__(self, api: InferenceAPI, service: ProfilerService, access: bool) -> None:
        super().__init__(api, access)
        self._service = service

    @_guarded
    def Profile(self, request: bytes, context: GrpcCall) -> bytes:
        return self._service.call("Profile", request, _run_context(context))

    @_guarded
    def Terminate(self, request: bytes, context: GrpcCall) -> bytes:
        return self._service.call("Terminate", request, _run_context(context))

    @_guarded
    def Monitor(self, request: bytes, context: GrpcCall) -> bytes:
        return self._service.call("Monitor", request, _run_context(context))


@dataclass(frozen=True)
class _Method:
    """One gRPC method answered in Python: how its request parses, and who answers it."""

    name: str  # the method's own name ("Predict"), the metrics' API label
    parse: Callable[[bytes], Any]
    handler: Callable[[Any, GrpcCall], Any]


def _methods(service: str, servicer: _Servicer, requests: Mapping[str, Any]) -> dict[str, _Method]:
    """The gRPC paths of `servicer`'s methods; `requests` gives each one's request message
    class (None: the handler takes the request's bytes)."""
    methods = {}
    for name, message in requests.items():
        parse = message.FromString if message is not None else bytes
        methods[f"/{service}/{name}"] = _Method(name, parse, getattr(servicer, name))
    return methods


class Dispatcher:
    """Answers the calls the native server hands to Python: parses the request, runs the
    servicer's method, serializes its response; a ServingError (or anything unexpected)
    becomes a gRPC status, never a crash. Counts and times the inference APIs, and writes
    the access log."""

    def __init__(self, api: InferenceAPI, access: bool, methods: Mapping[str, _Method]) -> None:
        self._api = api
        self._access = access
        self._methods = dict(methods)

    def __call__(self, call: GrpcCall, data: bytes) -> Answer:
        method = self._methods.get(call.method)
        if method is None:
            return (Code.UNIMPLEMENTED.value, "Method not found!", b"")
        started = time.perf_counter()
        failure: ServingError | None = None
        request: Any = None
        try:
            try:
                request = method.parse(data)
            except DecodeError:
                raise internal("Exception deserializing request!") from None
            response = method.handler(request, call)
            return (
                0,
                "",
                response if isinstance(response, bytes) else response.SerializeToString(),
            )
        except ServingError as error:
            failure = error
        except BaseException as error:  # a bug of ours: report it, keep serving
            log.exception("%s failed", method.name)
            failure = from_exception(error)
        finally:
            self._report(method.name, request, call, failure, started)
        return (failure.code.value, truncate(failure.message), b"")

    def _report(
        self,
        method: str,
        request: Any,
        call: GrpcCall,
        failure: ServingError | None,
        started: float,
    ) -> None:
        micros = (time.perf_counter() - started) * 1e6
        model = _model_name(request) if request is not None else ""
        _account(self._api, self._access, method, model, status_name(failure), call.peer, micros)


@dataclass(frozen=True)
class GrpcOptions:
    host: str
    port: int
    max_threads: int
    tensor_content: bool = False
    channel_arguments: Sequence[tuple[str, Any]] = ()
    socket_path: str = ""
    access_log: bool = False
    max_request_bytes: int = tensors.DEFAULT_MAX_REQUEST_BYTES
    # --enable_grpc_healthcheck_service: serve grpc.health.v1.Health from this.
    health: Health | None = None
    # Both the TCP port and the UNIX socket serve TLS with it, as in TF Serving.
    ssl_config: SSLConfig | None = None
    # --enable_profiler: serve tensorflow.ProfilerService with this.
    profiler: ProfilerService | None = None
    # HandleReloadConfigRequest's ModelConfigList, read into plain values (ConfigError when it
    # cannot be served); the config reader is the server's to choose.
    read_models: Callable[[Any], list[ModelConfig]] = lambda _: _no_reload()


def _no_reload() -> list[ModelConfig]:
    raise unimplemented("HandleReloadConfigRequest is not served by this server")


# The services whose health is reported besides "" (the whole server) and each model's name.
_SERVICES = ("tensorflow.serving.PredictionService", "tensorflow.serving.ModelService")


def _report_health(server: GrpcServer, health: Health) -> None:
    """grpc.health.v1.Health (grpc++'s own service): "" is SERVING when the server is ready
    (every configured model has a version AVAILABLE, and no shutdown has begun), TF Serving's
    two services while it is not shutting down, and a model's name while that model has a
    version AVAILABLE."""
    known: set[str] = set()
    lock = threading.Lock()

    def refresh() -> None:
        with lock:
            server.set_health("", health.ready())
            for service in _SERVICES:
                server.set_health(service, not health.stopping)
            known.update(health.configured())
            for model in known:
                server.set_health(model, health.model_ready(model))

    refresh()
    health.add_listener(refresh)


def parse_channel_arguments(text: str) -> list[tuple[str, Any]]:
    """--grpc_channel_arguments: "k=v,k=v"; a value that parses as an integer is passed as
    one, anything else as a string (as TF Serving does)."""
    arguments: list[tuple[str, Any]] = []
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--grpc_channel_arguments: {item!r} is not key=value")
        value = value.strip()
        try:
            arguments.append((key.strip(), int(value)))
        except ValueError:
            arguments.append((key.strip(), value))
    return arguments


class _NativeRequests:
    """Counts and logs the requests the native Predict path answered without Python: a
    thread drains their records every `interval` seconds (and a scrape drains first)."""

    def __init__(self, api: InferenceAPI, access: bool, interval: float = 0.25) -> None:
        self.log = RequestLog()
        self._api = api
        self._access = access
        self._interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="fastserve-native-requests", daemon=True
        )
        api.metrics.add_source(self.drain)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.drain()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.drain()

    def drain(self) -> None:
        with self._lock:  # records are reported in the order they were answered
            metrics = self._api.metrics
            for model, code, micros, runtime_micros, runtime, peer in self.log.drain():
                status = Code(code).name if code else "OK"
                _account(self._api, self._access, "Predict", model, status, peer, micros)
                if runtime_micros:
                    metrics.runtime_observed(model, "Predict", runtime, runtime_micros)


class NativeGrpcServer:
    """The native (grpc++) server, started and stopped from Python."""

    def __init__(
        self, server: GrpcServer, health: Health | None, requests: _NativeRequests | None
    ) -> None:
        self._server = server
        self._health = health
        self._requests = requests
        self._stopped = threading.Event()
        self._stopping = False
        self._lock = threading.Lock()

    def start(self) -> int:
        """Binds every address and serves; returns the TCP port. Raises OSError naming an
        address that cannot be bound."""
        try:
            port = int(self._server.start())
        except RuntimeError as error:
            raise OSError(str(error)) from None
        # Threads of the server call into Python: stop it before the interpreter finalizes.
        atexit.register(self._server.shutdown, 0.0)
        if self._health is not None:
            _report_health(self._server, self._health)
        if self._requests is not None:
            self._requests.start()
        return port

    def stop(self, grace: float) -> threading.Event:
        """Stops accepting calls and lets those in flight finish within `grace` seconds (the
        rest are cancelled); the event is set once the server has stopped."""
        with self._lock:
            if not self._stopping:
                self._stopping = True
                threading.Thread(
                    target=self._shutdown, args=(grace,), name="fastserve-grpc-stop", daemon=True
                ).start()
        return self._stopped

    def _shutdown(self, grace: float) -> None:
        try:
            self._server.shutdown(grace)
            if self._requests is not None:
                self._requests.stop()
        finally:
            self._stopped.set()


def create_server(api: InferenceAPI, tasks: Tasks, options: GrpcOptions) -> NativeGrpcServer:
    """Builds the gRPC server (not yet bound: start() binds and serves).

    Channel arguments given by the user come first and win over fastserve's defaults.
    """
    access = options.access_log
    predictions = PredictionServicer(
        api, tasks, options.tensor_content, access, options.max_request_bytes
    )
    methods = {
        **_methods(
            "tensorflow.serving.PredictionService",
            predictions,
            {
                "Predict": predict_pb2.PredictRequest,
                "Classify": classification_pb2.ClassificationRequest,
                "Regress": regression_pb2.RegressionRequest,
                "MultiInference": inference_pb2.MultiInferenceRequest,
                "GetModelMetadata": get_model_metadata_pb2.GetModelMetadataRequest,
            },
        ),
        **_methods(
            "tensorflow.serving.ModelService",
            ModelServicer(api, access, options.read_models),
            {
                "GetModelStatus": get_model_status_pb2.GetModelStatusRequest,
                "HandleReloadConfigRequest": model_management_pb2.ReloadConfigRequest,
            },
        ),
    }
    if options.profiler is not None:
        methods.update(
            _methods(
                PROFILER_SERVICE,
                ProfilerServicer(api, options.profiler, access),
                dict.fromkeys(PROFILER_METHODS),
            )
        )
    host = f"[{options.host}]" if ":" in options.host else options.host
    addresses = [f"{host}:{options.port}"]
    if options.socket_path:
        addresses.append(f"unix:{options.socket_path}")
    requests = _NativeRequests(api, access) if api.metrics.enabled or access else None
    config = options.ssl_config
    tls = (
        (config.server_key, config.server_cert, config.custom_ca, config.client_verify)
        if config is not None
        else None
    )
    server = GrpcServer(
        addresses=addresses,
        tls=tls,
        channel_arguments=list(options.channel_arguments),
        max_receive_message_bytes=options.max_request_bytes,
        max_send_message_bytes=MAX_MESSAGE_BYTES,
        health=options.health is not None,
        worker_threads=options.max_threads,
        fallback=Dispatcher(api, access, methods),
        predict=predictions.run_arrays,
        tensor_content=options.tensor_content,
        max_tensor_bytes=options.max_request_bytes,
        max_rank=NUMPY_MAX_RANK,
        # Versions with a native form are served without Python; their requests are
        # counted and logged from records Python drains off the request path.
        table=api.table.native,
        check_method_names=api.check_method_names,
        request_log=requests.log if requests is not None else None,
    )
    return NativeGrpcServer(server, options.health, requests)
