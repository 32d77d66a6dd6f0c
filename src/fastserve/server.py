"""Builds the parts of a model server, starts them in order and stops them gracefully."""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any

from fastserve.api.examples import Tasks
from fastserve.api.inference import InferenceAPI
from fastserve.api.warmup import WarmupLoader
from fastserve.config.batching import common_parameters, parameters_for
from fastserve.config.model_server import models_from_proto
from fastserve.config.monitoring import prometheus_path
from fastserve.config.ssl import read_ssl_config, server_context
from fastserve.config.watcher import ConfigFileWatcher
from fastserve.core.manager import Manager, ManagerOptions
from fastserve.core.models import ModelConfig, ModelFailures, Models, default_loader
from fastserve.core.table import ServableTable
from fastserve.errors import ConfigError, ServingError
from fastserve.frontends.http_server import (
    HttpServerOptions,
    HttpServerThread,
    bind,
    choose_server,
    describe_server,
)
from fastserve.frontends.profiler import ProfilerService
from fastserve.observability.health import Health
from fastserve.observability.metrics import Metrics
from fastserve.options import ServerOptions
from fastserve.servables.base import Loader, LoadOptions
from fastserve.servables.batching import BatchingLoader, BatchScheduler
from fastserve.servables.batching_parameters import BatchingParameters
from fastserve.types import SSLConfig, State

log = logging.getLogger("fastserve.server")


class StartupError(Exception):
    """The server cannot start; the message says why, one problem per line."""


def _default_threads(value: int) -> int:
    return value if value > 0 else 4 * (os.cpu_count() or 1)


class Server:
    """One model server: the table, the manager, the source poller and the frontends."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.metrics_path = _metrics_path(options)
        self.metrics = Metrics(
            enabled=self.metrics_path is not None,
            known_model=lambda name: name in self.models.names,
        )
        self.ssl_config: SSLConfig | None = None
        if options.ssl_config_file:
            # Checked before any model loads: a bad key should not wait for a big model.
            try:
                self.ssl_config = read_ssl_config(options.ssl_config_file)
            except ConfigError as error:
                raise StartupError(str(error)) from None
        try:
            self.rest_server = choose_server(options.rest_server, self.ssl_config is not None)
        except ValueError as error:
            raise StartupError(str(error)) from None
        self.table = ServableTable()
        self.manager = Manager(
            self.table,
            ManagerOptions(
                num_load_threads=options.num_load_threads,
                num_unload_threads=options.num_unload_threads,
                max_num_load_retries=options.max_num_load_retries,
                load_retry_interval=max(0.0, options.load_retry_interval_micros / 1e6),
                load_options=LoadOptions(
                    saved_model_tags=options.saved_model_tags,
                    intra_op_parallelism=options.tensorflow_intra_op_parallelism,
                    inter_op_parallelism=options.tensorflow_inter_op_parallelism,
                    allow_pickled_models=options.allow_pickled_models,
                ),
            ),
            on_transition=self._transition,
            on_load_attempt=lambda path, ok, seconds: self.metrics.load_attempt(
                path, ok, seconds * 1e6
            ),
        )
        self.batching = BatchingSetup(options)
        if self.batching.scheduler is not None:
            self.metrics.add_batching(self.batching.scheduler)
        self.models = Models(
            self.table,
            self.manager,
            options.file_system_poll_wait_seconds,
            options.allow_version_labels_for_unavailable_models,
            loader=self._loader,
            on_change=self._readiness_changed,
        )
        self.health = Health(self.manager, self.models)
        self.api = InferenceAPI(
            self.table,
            self.manager,
            self.models,
            check_method_names=options.enable_signature_method_name_check,
            metrics=self.metrics,
        )
        self.tasks = Tasks(self.api, check_method_names=options.enable_signature_method_name_check)
        self._config_watcher: ConfigFileWatcher | None = None
        self.failed = False
        self.grpc_port: int | None = None
        self.rest_port: int | None = None
        self._grpc_server: Any = None
        self._rest: HttpServerThread | None = None
        self.profiler = ProfilerService() if options.enable_profiler else None

    def _transition(
        self, model: str, version: int, state: State, error: ServingError | None, took: float
    ) -> None:
        self.metrics.transition(model, version, state, error, took)
        self._readiness_changed()

    def _readiness_changed(self) -> None:
        health = getattr(self, "health", None)  # changes may come before it exists
        if health is not None:
            health.changed()

    def _loader(self, model: ModelConfig) -> Loader:
        """A model's loader: its kind's, batched if configured, then warmed up (outside the
        batching, so that warmup requests go through the batch queues)."""
        loader = self.batching.loader(model)
        if not self.options.enable_model_warmup:
            return loader
        return WarmupLoader(
            loader,
            self.options.num_request_iterations_for_warmup,
            self.metrics.warmup,
            check_method_names=self.options.enable_signature_method_name_check,
        )

    # --- start -------------------------------------------------------------------------------

    def start(self) -> None:
        """Loads every model, then opens the ports. Raises StartupError naming each failure;
        a port that cannot be listened on fails at once, before any model loads."""
        self._check_ports()
        try:
            self.models.apply(self.options.models)
        except ModelFailures as error:
            self.stop()
            raise StartupError(
                "\n".join(
                    f"model {name} failed to load: {failure.message}"
                    for name, failure in error.failures.items()
                )
            ) from None
        except ServingError as error:
            self.stop()
            raise StartupError(error.message) from None
        self._start_frontends()
        options = self.options
        if options.model_config_file and options.model_config_file_poll_wait_seconds > 0:
            self._config_watcher = ConfigFileWatcher(
                options.model_config_file, options.model_config_file_poll_wait_seconds, self.models
            )
            self._config_watcher.start()

    def _check_ports(self) -> None:
        """Binds each TCP port once and lets it go: a port in use is reported now rather
        than after every model has loaded (which may take minutes)."""
        options = self.options
        ports = [("gRPC", options.port), ("REST", options.rest_api_port)]
        if options.rest_api_port and options.rest_api_port == options.port:
            raise StartupError("--rest_api_port cannot be the same as --port")
        for what, port in ports:
            if not port:
                continue
            try:
                bind(options.host, port).close()
            except OSError as error:
                raise StartupError(
                    f"cannot serve {what} on {options.host}:{port}: {error}"
                ) from None

    def _start_frontends(self) -> None:
        from fastserve.frontends import grpc as grpc_frontend
        from fastserve.frontends.rest import RestOptions, create_app

        options = self.options
        try:
            self._grpc_server = grpc_frontend.create_server(
                self.api,
                self.tasks,
                grpc_frontend.GrpcOptions(
                    host=options.host,
                    port=options.port,
                    max_threads=_default_threads(options.grpc_max_threads),
                    tensor_content=options.enable_serialization_as_tensor_content,
                    channel_arguments=grpc_frontend.parse_channel_arguments(
                        options.grpc_channel_arguments
                    ),
                    socket_path=options.grpc_socket_path,
                    access_log=options.access_log,
                    max_request_bytes=options.max_request_bytes,
                    health=self.health if options.enable_grpc_healthcheck_service else None,
                    ssl_config=self.ssl_config,
                    profiler=self.profiler,
                    read_models=lambda proto: models_from_proto(proto, ""),
                ),
            )
            self.grpc_port = self._grpc_server.start()
            log.info("Running gRPC ModelServer at %s:%d ...", options.host, self.grpc_port)
            if options.grpc_socket_path:
                log.info("Running gRPC ModelServer at UNIX socket %s ...", options.grpc_socket_path)
            if self.profiler is not None:
                log.info("Profiler service is enabled")
            if self.ssl_config is not None:
                log.info(
                    "TLS with the key and certificate of %s (%s)",
                    options.ssl_config_file,
                    _client_certificates(self.ssl_config),
                )
            if options.rest_api_port:
                app = create_app(
                    self.api,
                    self.tasks,
                    RestOptions(
                        cors=options.rest_api_enable_cors_support,
                        timeout=options.rest_api_timeout_in_ms / 1000,
                        metrics_path=self.metrics_path,
                        health=self.health,
                        max_request_bytes=options.max_request_bytes,
                        inline_seconds=max(0, options.rest_inline_micros) / 1e6,
                    ),
                )
                self._rest = HttpServerThread(
                    app,
                    HttpServerOptions(
                        host=options.host,
                        port=options.rest_api_port,
                        server=self.rest_server,
                        num_threads=_default_threads(options.rest_api_num_threads),
                        grace=options.shutdown_grace_seconds,
                        ssl_context=server_context(self.ssl_config) if self.ssl_config else None,
                        access_log=options.access_log,
                    ),
                    on_failure=self._frontend_failed,
                )
                self.rest_port = self._rest.start()
                log.info("Exporting HTTP/REST API at:%s:%d ...", options.host, self.rest_port)
                log.info("REST HTTP server: %s", describe_server(self.rest_server))
        except (OSError, ValueError) as error:
            self.stop()
            raise StartupError(str(error)) from None

    def _frontend_failed(self) -> None:
        """A frontend died after start-up: a half-alive server would pass health checks, so
        the whole process stops (and exits non-zero)."""
        self.failed = True
        os.kill(os.getpid(), signal.SIGTERM)

    # --- stop --------------------------------------------------------------------------------

    def stop(self) -> bool:
        """Stops accepting requests, lets in-flight ones finish, then unloads every model,
        all within --shutdown_grace_seconds. Returns False if the grace ran out first."""
        grace = self.options.shutdown_grace_seconds
        deadline = time.monotonic() + grace
        self.health.start_stopping()
        stopped = None
        if self.profiler is not None:
            self.profiler.stop()
        if self._grpc_server is not None:
            stopped = self._grpc_server.stop(grace)
        if self._rest is not None:
            self._rest.stop(grace)
        if stopped is not None:
            stopped.wait(max(0.0, deadline - time.monotonic()))
        if self._config_watcher is not None:
            self._config_watcher.stop()
        self.models.stop()
        finished = self.manager.stop(max(0.0, deadline - time.monotonic()))
        self.batching.stop()
        return finished


def _metrics_path(options: ServerOptions) -> str | None:
    """The Prometheus endpoint's path, from --monitoring_config_file (None: no endpoint)."""
    if not options.monitoring_config_file:
        return None
    try:
        path = prometheus_path(options.monitoring_config_file)
    except ConfigError as error:
        raise StartupError(str(error)) from None
    if path is not None and not options.rest_api_port:
        raise StartupError(
            f"{options.monitoring_config_file} enables the Prometheus endpoint, which is "
            "served on the REST port: give --rest_api_port too"
        )
    return path


def _client_certificates(config: SSLConfig) -> str:
    if config.client_verify:
        return "client certificates signed by custom_ca are required"
    if config.custom_ca:
        return "gRPC asks for no client certificate; REST verifies one if sent"
    return "no client certificates"


class BatchingSetup:
    """The batch threads, and each model's loader wrapped in batching when its config says so
    (config.batching decides which models are batched and with what parameters)."""

    def __init__(self, options: ServerOptions) -> None:
        self._per_model_files = options.enable_per_model_batching_parameters
        self.scheduler: BatchScheduler | None = None
        try:
            self.common = common_parameters(
                options.enable_batching,
                options.batching_parameters_file,
                options.enable_per_model_batching_parameters,
            )
            if self.common is not None or any(m.batching for m in options.models):
                threads = self.common or BatchingParameters()
                self.scheduler = BatchScheduler(threads.num_batch_threads, threads.thread_pool_name)
        except ConfigError as error:
            raise StartupError(str(error)) from None

    def loader(self, model: ModelConfig) -> Loader:
        inner = default_loader(model)
        if self.scheduler is None:
            return inner
        parameters = parameters_for(model.batching, self.common, self._per_model_files)
        if parameters is None:
            return inner
        return BatchingLoader(inner, self.scheduler, parameters)

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
