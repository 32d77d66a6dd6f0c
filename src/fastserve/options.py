"""The server's settings, each with its one default (the flags' defaults are these)."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from fastserve.errors import DEFAULT_MAX_REQUEST_BYTES

if TYPE_CHECKING:
    from fastserve.core.models import ModelConfig


@dataclass(frozen=True)
class ServerOptions:
    host: str = "0.0.0.0"
    port: int = 8500
    rest_api_port: int = 0
    rest_api_num_threads: int = 0
    grpc_max_threads: int = 0
    file_system_poll_wait_seconds: float = 1
    num_load_threads: int = 0
    num_unload_threads: int = 0
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    allow_version_labels_for_unavailable_models: bool = False
    enable_serialization_as_tensor_content: bool = False
    saved_model_tags: tuple[str, ...] = ("serve",)
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    shutdown_grace_seconds: float = 30.0
    model_config_file: str = ""
    grpc_socket_path: str = ""
    rest_api_enable_cors_support: bool = False
    enable_signature_method_name_check: bool = False
    enable_batching: bool = False
    batching_parameters_file: str = ""
    enable_per_model_batching_parameters: bool = False
    rest_api_timeout_in_ms: int = 30_000
    grpc_channel_arguments: str = ""
    model_config_file_poll_wait_seconds: float = 0
    monitoring_config_file: str = ""
    enable_grpc_healthcheck_service: bool = False
    enable_profiler: bool = True
    access_log: bool = False
    rest_server: str = ""  # "hypercorn" or "uvicorn"; "": uvicorn, or hypercorn with TLS
    rest_inline_micros: int = 500
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    ssl_config_file: str = ""
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 0
    allow_pickled_models: bool = False
    models: tuple[ModelConfig, ...] = field(default_factory=tuple)


def default(name: str) -> Any:
    """ServerOptions' default for the setting `name` (KeyError: not a setting)."""
    for option in fields(ServerOptions):
        if option.name == name:
            if option.default is not MISSING:
                return option.default
            if option.default_factory is not MISSING:
                return option.default_factory()
            raise KeyError(name)
    raise KeyError(name)
