"""Reading fastserve's metrics as a monitoring system would.

`Scraper(real=True)` is a real Prometheus server (Debian's `prometheus` package) started on
loopback with a generated config that scrapes fastserve every second, queried through its HTTP
API. `Scraper(real=False)` reads the endpoint itself and evaluates the same selectors with
prometheus-client's parser. Tests choose one and say so: the real one skips, naming the
package, where the binary is not installed.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from fastserve.tune.processes import ServerProcess, free_port

PROMETHEUS = shutil.which("prometheus")


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition: (name, labels) -> value.

    The parser names every counter sample `<family>_total`, whatever the text said; TF
    Serving's counters have no such suffix, so each counter sample is listed under both."""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = frozenset(sample.labels.items())
            samples[(sample.name, labels)] = sample.value
            if family.type == "counter" and sample.name.endswith("_total"):
                samples[(sample.name.removesuffix("_total"), labels)] = sample.value
    return samples


def select(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
    wanted = set(labels.items())
    return sum(
        value for (sample, have), value in samples.items() if sample == name and wanted <= have
    )


class Scraper:
    def __init__(self, target: str, path: str, workdir: Path, *, real: bool) -> None:
        self.target = target
        self.path = path
        self._process: ServerProcess | None = None
        self.kind = "prometheus" if real else "prometheus-client parser"
        if real:
            assert PROMETHEUS, "the prometheus binary is not installed"
            self.port = free_port()
            config = workdir / "prometheus.yml"
            config.write_text(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                "scrape_configs:\n  - job_name: fastserve\n"
                f"    metrics_path: {path}\n"
                f"    static_configs:\n      - targets: ['{target}']\n"
            )
            self._process = ServerProcess(
                [
                    PROMETHEUS,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                ready="Server is ready to receive web requests",
                name="prometheus",
            )

    def query(self, name: str, **labels: str) -> float:
        """The current value of sum(name{labels})."""
        if self._process is None:
            text = httpx.get(f"http://{self.target}{self.path}", timeout=10).text
            return select(parse(text), name, **labels)
        matchers = ",".join([f'__name__="{name}"', *(f'{k}="{v}"' for k, v in labels.items())])
        answer = httpx.get(
            f"http://127.0.0.1:{self.port}/api/v1/query",
            params={"query": f"sum({{{matchers}}})"},
            timeout=10,
        )
        answer.raise_for_status()
        result = answer.json()["data"]["result"]
        return float(result[0]["value"][1]) if result else 0.0

    def wait_for(self, expected: float, name: str, timeout: float = 60.0, **labels: str) -> float:
        """Waits until sum(name{labels}) reaches `expected` (Prometheus scrapes each second);
        returns the last value seen."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.query(name, **labels)
            except httpx.TransportError:
                value = float("nan")  # Prometheus still starting
            except httpx.HTTPStatusError as error:
                if error.response.status_code != 503:
                    raise
                value = float("nan")  # its query engine not ready yet (or busy): ask again
            if value == expected or time.monotonic() > deadline:
                return value
            time.sleep(0.25)

    def target_health(self) -> str:
        """What Prometheus says of the scrape target ("up"), or the parser's verdict."""
        if self._process is None:
            text = httpx.get(f"http://{self.target}{self.path}", timeout=10).text
            parse(text)  # raises on anything Prometheus could not read
            return "up"
        answer = httpx.get(f"http://127.0.0.1:{self.port}/api/v1/targets", timeout=10)
        targets = answer.json()["data"]["activeTargets"]
        return str(targets[0]["health"]) if targets else "none"

    def close(self) -> None:
        if self._process is not None:
            self._process.stop(30)
