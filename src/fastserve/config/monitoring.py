"""The monitoring config file (--monitoring_config_file): where Prometheus scrapes."""

from __future__ import annotations

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


def prometheus_path(config_file: str) -> str | None:
    """The REST path of the Prometheus endpoint a MonitoringConfig text proto asks for
    (`prometheus_config { enable: true path: "..." }`), or None when it is not enabled.
    Raises ConfigError naming the file for a file that cannot be read or a path that cannot
    be served."""
    from fastserve.config.protos import read_text_file
    from fastserve.errors import ConfigError

    config = read_text_file(config_file, "MonitoringConfig", "monitoring config")
    prometheus = config.prometheus_config
    if not prometheus.enable:
        return None
    path = prometheus.path or DEFAULT_PROMETHEUS_PATH
    if not path.startswith("/") or any(c.isspace() or c in "?#%" for c in path):
        raise ConfigError(
            f"{config_file}: prometheus_config.path {path!r} is not a URL path "
            "(it must start with '/' and have no spaces, '?', '#' or '%')"
        )
    if path.lower() == "/v1" or path.lower().startswith("/v1/"):
        raise ConfigError(
            f"{config_file}: prometheus_config.path {path!r} is under /v1/, which is the REST API's"
        )
    return path
