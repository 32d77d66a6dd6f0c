"""The gRPC frontend: TF Serving's PredictionService and ModelService over grpcio, and the
services beside them (health, TensorFlow's profiler)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health as health_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from fastserve import protos, tensors, tf_examples
from fastserve.api import InferenceAPI
from fastserve.config import ConfigError, models_from_proto
from fastserve.dtypes import DType, from_numpy
from fastserve.errors import ServingError, internal, invalid_argument, truncate
from fastserve.frontends.profiler import METHODS as PROFILER_METHODS
from fastserve.frontends.profiler import SERVICE as PROFILER_SERVICE
from fastserve.frontends.profiler import ProfilerService
from fastserve.health import Health
from fastserve.metrics import INFERENCE_APIS, status_name
from fastserve.servables.base import RunContext
from fastserve.tasks import Classifications, Regressions, Served, Tasks
from fastserve.tls import SSLConfig

log = logging.getLogger("fastserve.grpc")
access_log = logging.getLogger("fastserve.access")

# TF Serving lifts gRPC's 4 MB message limit to the largest a protobuf can be (requests are
# bounded by --max_request_bytes, whose default is the same).
MAX_MESSAGE_BYTES = 2**31 - 1

Request = TypeVar("Request")
Response = TypeVar("Response")


def _abort(context: grpc.ServicerContext, error: ServingError) -> None:
    context.abort(getattr(grpc.StatusCode, error.code.name), truncate(error.message))


def _model_name(request: Any) -> str:
    if hasattr(request, "model_spec"):
        return str(request.model_spec.name)
    tasks = getattr(request, "tasks", ())  # MultiInference: the first task's model
    return str(tasks[0].model_spec.name) if tasks else ""


class _Servicer:
    """What every servicer shares: the API, and whether to log each call."""

    def __init__(self, api: InferenceAPI, access: bool) -> None:
        self._api = api
        self._access = access


def _guarded(
    handler: Callable[[Any, Request, grpc.ServicerContext], Response],
) -> Callable[[Any, Request, grpc.ServicerContext], Response]:
    """Turns ServingError (and anything unexpected) into a gRPC status, never a crash; counts
    and times the inference APIs, and writes the access log."""
    method = handler.__name__
    inference = method in INFERENCE_APIS

    def wrapper(self: _Servicer, request: Request, context: grpc.ServicerContext) -> Response:
        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            return handler(self, request, context)
        except ServingError as error:
            failure = error
            _abort(context, error)
        except BaseException as error:  # a bug of ours: report it, keep serving
            log.exception("%s failed", method)
            failure = internal(f"{type(error).__name__}: {error}")
            _abort(context, failure)
        finally:
            micros = (time.perf_counter() - started) * 1e6
            status = status_name(failure)
            if inference:
                self._api.metrics.request(_model_name(request), method, "GRPC", status, micros)
            if self._access:
                access_log.info(
                    "grpc %s model=%s status=%s peer=%s took=%.0fus",
                    method,
                    _model_name(request),
                    status,
                    context.peer(),
                    micros,
                )
        raise AssertionError("unreachable: context.abort raises")

    wrapper.__name__ = method
    return wrapper


class PredictionServicer(_Servicer, prediction_service_pb2_grpc.PredictionServiceServicer):
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
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> predict_pb2.PredictResponse:
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        resolved = self._api.resolve(protos.model_spec_from_proto(request.model_spec))
        try:
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
                declared = signature.outputs[name].dtype
                dtype = declared if declared is not DType.DT_INVALID else from_numpy(array.dtype)
                tensors.fill_proto(
                    response.outputs[name], array, dtype, as_content=self._tensor_content
                )
            return response
        finally:
            resolved.release()

    @_guarded
    def GetModelMetadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: grpc.ServicerContext
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
        self, request: classification_pb2.ClassificationRequest, context: grpc.ServicerContext
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
        self, request: regression_pb2.RegressionRequest, context: grpc.ServicerContext
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
        self, request: inference_pb2.MultiInferenceRequest, context: grpc.ServicerContext
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


# grpcio reports a call without a deadline as one about 2**63 ns away (gRPC's infinite
# future); anything this far off is treated as no deadline at all.
_NO_DEADLINE_SECONDS = 1e9


def _run_context(context: grpc.ServicerContext) -> RunContext:
    """The client's deadline, and a cancellation that fires when the RPC ends early (a client
    that goes away): queued work is then dropped. A call without a deadline (grpcio's default,
    h2load's) has none here either, rather than one too far off for the batch queue's clock."""
    remaining = context.time_remaining()
    if remaining is not None and remaining > _NO_DEADLINE_SECONDS:
        remaining = None
    run = RunContext.within(remaining)
    context.add_callback(run.cancel)
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


class ModelServicer(_Servicer, model_service_pb2_grpc.ModelServiceServicer):
    @_guarded
    def GetModelStatus(
        self, request: get_model_status_pb2.GetModelStatusRequest, context: grpc.ServicerContext
    ) -> get_model_status_pb2.GetModelStatusResponse:
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        spec = protos.model_spec_from_proto(request.model_spec)
        statuses = self._api.model_status(spec.name, spec.version, spec.label)
        return protos.model_status_response(statuses)

    @_guarded
    def HandleReloadConfigRequest(
        self, request: model_management_pb2.ReloadConfigRequest, context: grpc.ServicerContext
    ) -> model_management_pb2.ReloadConfigResponse:
        if request.config.WhichOneof("config") != "model_config_list":
            raise invalid_argument(
                "ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
                "ModelConfigList is currently supported"
            )
        try:
            models = models_from_proto(request.config, "")
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
    def Profile(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        return self._service.call("Profile", request, _run_context(context))

    @_guarded
    def Terminate(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        return self._service.call("Terminate", request, _run_context(context))

    @_guarded
    def Monitor(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        return self._service.call("Monitor", request, _run_context(context))


def _add_profiler_service(server: grpc.Server, servicer: ProfilerServicer) -> None:
    # No (de)serializers: the handlers take and give the messages' bytes.
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(getattr(servicer, name))
        for name in PROFILER_METHODS
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(PROFILER_SERVICE, handlers),)
    )


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


# The services whose health is reported besides "" (the whole server) and each model's name.
_SERVICES = ("tensorflow.serving.PredictionService", "tensorflow.serving.ModelService")


def _add_health_service(server: grpc.Server, health: Health) -> None:
    """grpc.health.v1.Health: "" is SERVING when the server is ready (every configured model
    has a version AVAILABLE, and no shutdown has begun), TF Serving's two services while it
    is not shutting down, and a model's name while that model has a version AVAILABLE."""
    servicer = health_grpc.HealthServicer(experimental_non_blocking=True)
    known: set[str] = set()
    lock = threading.Lock()
    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING

    def refresh() -> None:
        with lock:
            servicer.set("", serving if health.ready() else not_serving)
            for service in _SERVICES:
                servicer.set(service, not_serving if health.stopping else serving)
            known.update(health.configured())
            for model in known:
                servicer.set(model, serving if health.model_ready(model) else not_serving)

    refresh()
    health.add_listener(refresh)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)


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


def server_credentials(config: SSLConfig) -> grpc.ServerCredentials:
    """TF Serving's: with client_verify a client must present a certificate signed by
    custom_ca; without it, no client certificate is asked for."""
    return grpc.ssl_server_credentials(
        [(config.server_key.encode(), config.server_cert.encode())],
        root_certificates=config.custom_ca.encode() or None,
        require_client_auth=config.client_verify,
    )


def _bind(server: grpc.Server, address: str, credentials: grpc.ServerCredentials | None) -> int:
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError as error:
        raise OSError(f"cannot listen for gRPC on {address}: {error}") from None
    if port == 0:
        raise OSError(f"cannot listen for gRPC on {address}: the address is in use or invalid")
    return int(port)


def create_server(api: InferenceAPI, tasks: Tasks, options: GrpcOptions) -> tuple[grpc.Server, int]:
    """Builds and binds the gRPC server (not yet started); returns it and the bound TCP port.

    Channel arguments given by the user come first: gRPC takes the first of duplicate keys,
    so they override fastserve's defaults.
    """
    server_options: list[tuple[str, Any]] = [
        *options.channel_arguments,
        ("grpc.max_receive_message_length", options.max_request_bytes),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        # Without this, a second server could bind the same port and split the traffic.
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.server(
        ThreadPoolExecutor(max_workers=options.max_threads, thread_name_prefix="fastserve-grpc"),
        options=server_options,
        maximum_concurrent_rpcs=None,
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(
            api, tasks, options.tensor_content, options.access_log, options.max_request_bytes
        ),
        server,
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelServicer(api, options.access_log), server
    )
    if options.health is not None:
        _add_health_service(server, options.health)
    if options.profiler is not None:
        _add_profiler_service(server, ProfilerServicer(api, options.profiler, options.access_log))
    host = f"[{options.host}]" if ":" in options.host else options.host
    credentials = server_credentials(options.ssl_config) if options.ssl_config else None
    port = _bind(server, f"{host}:{options.port}", credentials)
    if options.socket_path:
        _bind(server, f"unix:{options.socket_path}", credentials)
    return server, port
