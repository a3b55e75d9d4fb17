"""A real Prometheus server (Debian's /usr/bin/prometheus) for tests, e2e and the demo.

History is backfilled with ``promtool tsdb create-blocks-from openmetrics`` before the server
starts; the server then scrapes live exporters. Retention is 90d because the default (15d) is
measured from the newest sample, and backfilled weeks must survive the first compaction::

    server = PrometheusServer(tmp_path, targets=["127.0.0.1:9101"])
    server.backfill(openmetrics("workload_load", {"app": "web"}, history))
    server.start()             # waits until /-/ready, with a deadline
    server.stop(); server.start()   # an outage, same data and port
    server.close()

Every wait has a deadline; `close` kills the process if it does not stop in time.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from foreseer.predictors.series import Series


class PrometheusMissingError(RuntimeError):
    """prometheus or promtool is not installed."""


def binaries() -> tuple[str, str]:
    """Paths of prometheus and promtool; raises PrometheusMissingError with a hint otherwise."""
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if prometheus is None or promtool is None:
        raise PrometheusMissingError(
            "prometheus/promtool not found: install Debian's 'prometheus' package "
            "(`make prometheus` does it as root)")
    return prometheus, promtool


def free_port() -> int:
    """A loopback port that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def openmetrics(name: str, labels: Mapping[str, str], series: Series) -> str:
    """One gauge as OpenMetrics text (no ``# EOF``); NaN points are left out, i.e. missing."""
    label_text = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    lines = [f"# TYPE {name} gauge"]
    for t, v in zip(series.times(), series.values, strict=True):
        if not math.isnan(v):
            lines.append(f"{name}{{{label_text}}} {float(v)!r} {float(t):.3f}")
    return "\n".join(lines) + "\n"


@dataclass
class PrometheusServer:
    """One Prometheus process with its own data directory, port and scrape targets."""

    workdir: Path
    """Holds the config, the TSDB data and the log; created if missing."""
    targets: Sequence[str] = ()
    """host:port of exporters to scrape (``/metrics``)."""
    scrape_interval: str = "1s"
    """How often targets are scraped; short so tests see new samples quickly."""
    port: int = field(default_factory=free_port)
    """Loopback port of the HTTP API; kept across stop/start so URLs stay valid."""
    start_timeout: float = 30.0
    """Seconds to wait for /-/ready."""
    stop_timeout: float = 10.0
    """Seconds to wait for a graceful stop before SIGKILL."""
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        return self.workdir / "prometheus.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def backfill(self, *metrics: str) -> None:
        """Write OpenMetrics texts (see `openmetrics`) into TSDB blocks; call before `start`."""
        _, promtool = binaries()
        source = self.workdir / "backfill.om"
        source.write_text("".join(metrics) + "# EOF\n")
        result = subprocess.run(
            [promtool, "tsdb", "create-blocks-from", "openmetrics", "--quiet",
             str(source), str(self.data_dir)],
            capture_output=True, text=True, timeout=300, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"promtool backfill failed: {result.stderr.strip()}")
        source.unlink()

    def start(self) -> None:
        """Start (or restart) the server and wait until it answers /-/ready."""
        if self.running:
            return
        prometheus, _ = binaries()
        config = self.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": self.scrape_interval,
                       "evaluation_interval": self.scrape_interval},
            "scrape_configs": [{"job_name": "exporter",
                                "static_configs": [{"targets": list(self.targets)}]}],
        }))
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={self.data_dir}",
             "--storage.tsdb.retention.time=90d",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self._process.returncode}; "
                                   f"see {self.log_path}:\n{self._log_tail()}")
            if self._ready():
                return
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"prometheus not ready within {self.start_timeout}s; "
                           f"see {self.log_path}:\n{self._log_tail()}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after `stop_timeout`); data is kept."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=self.stop_timeout)

    def close(self) -> None:
        """Stop the server; the workdir is left to its owner (e.g. pytest's tmp_path)."""
        self.stop()

    def __enter__(self) -> PrometheusServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query(self, promql: str, at: float | None = None) -> list[dict[str, object]]:
        """An instant query straight through the HTTP API, for assertions in tests."""
        params = {"query": promql} | ({"time": str(at)} if at is not None else {})
        return self._api("query", params)

    def query_range(self, promql: str, start: float, end: float,
                    step: float) -> list[dict[str, object]]:
        """A range query straight through the HTTP API, for assertions in tests."""
        return self._api("query_range", {"query": promql, "start": str(start),
                                         "end": str(end), "step": str(step)})

    def wait_for(self, promql: str, timeout: float = 30.0) -> list[dict[str, object]]:
        """Wait until an instant query returns a result (e.g. the first live scrape)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(promql)
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"{promql!r} returned nothing within {timeout}s")
            time.sleep(0.2)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def _api(self, endpoint: str, params: Mapping[str, str]) -> list[dict[str, object]]:
        url = f"{self.url}/api/v1/{endpoint}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            payload = json.load(response)
        if payload.get("status") != "success":
            raise RuntimeError(f"prometheus {endpoint} failed: {payload}")
        return list(payload["data"]["result"])

    def _log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


@contextlib.contextmanager
def running(workdir: Path, targets: Iterable[str] = (), *metrics: str,
            scrape_interval: str = "1s") -> Iterator[PrometheusServer]:
    """A backfilled, started `PrometheusServer` that is always stopped on exit."""
    server = PrometheusServer(Path(workdir), list(targets), scrape_interval)
    if metrics:
        server.backfill(*metrics)
    try:
        server.start()
        yield server
    finally:
        server.close()
