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

import atexit
import base64
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from foreseer.predictors.series import Series

# Servers still running at interpreter exit are stopped then, even when a test or the demo
# died before its own cleanup: no Prometheus outlives the Python process that started it.
_LIVE: set[PrometheusServer] = set()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_LIVE):
        server.stop()


SCRAPE_JOB = "exporter"
"""The job label of every scraped target; backfill with it to continue the same series."""


class PrometheusMissingError(RuntimeError):
    """prometheus or promtool is not installed."""


class _PortTakenError(RuntimeError):
    """Another process bound the port between picking it and Prometheus binding it."""


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


def openmetrics(name: str, labels: Mapping[str, str], series: Series,
                nan_samples: bool = False) -> str:
    """One gauge as OpenMetrics text (no ``# EOF``). NaN points are left out (missing), or
    with `nan_samples` written as NaN samples (an exporter that reports NaN)."""
    label_text = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    lines = [f"# TYPE {name} gauge"]
    for t, v in zip(series.times(), series.values, strict=True):
        if nan_samples or not math.isnan(v):
            lines.append(f"{name}{{{label_text}}} {float(v)!r} {float(t):.3f}")
    return "\n".join(lines) + "\n"


@dataclass(eq=False)
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
    basic_auth: tuple[str, str] | None = None
    """(user, password) the server demands, through its web config (bcrypt-hashed)."""
    tls: bool = False
    """Serve HTTPS with a fresh self-signed CA (see `ca_file`); needs the openssl CLI."""
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _started: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        """The CA that signed the server's certificate (with ``tls=True``)."""
        return self.workdir / "ca.pem"

    @property
    def query_log(self) -> Path:
        """Prometheus' own log of every query it ran (JSON lines), for assertions."""
        return self.workdir / "queries.log"

    def queries(self) -> list[dict[str, Any]]:
        """The queries Prometheus has run so far, oldest first (from its query log)."""
        if not self.query_log.exists():
            return []
        lines = self.query_log.read_text().splitlines()
        return [json.loads(line)["params"] for line in lines if line.strip()]

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
        """Start (or restart) the server and wait until it answers /-/ready.

        Before the first start, a port taken in the meantime (the free port was only free
        when it was picked) is replaced by another; a restart keeps its port, and its URL.
        """
        if self.running:
            return
        for _ in range(3):
            try:
                self._launch()
            except _PortTakenError:
                if self._started:
                    raise
                self.port = free_port()
            else:
                self._started = True
                return
        raise RuntimeError(f"no free port for prometheus; see {self.log_path}")

    def _launch(self) -> None:
        prometheus, _ = binaries()
        config = self.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": self.scrape_interval,
                       "evaluation_interval": self.scrape_interval,
                       "query_log_file": str(self.query_log)},
            "scrape_configs": [{"job_name": SCRAPE_JOB,
                                "static_configs": [{"targets": list(self.targets)}]}],
        }))
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={self.data_dir}",
             "--storage.tsdb.retention.time=90d", f"--web.config.file={self._web_config()}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        _LIVE.add(self)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                tail = self._log_tail()
                error = _PortTakenError if "address already in use" in tail else RuntimeError
                raise error(f"prometheus exited with {self._process.returncode}; "
                            f"see {self.log_path}:\n{tail}")
            if self._ready():
                return
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"prometheus not ready within {self.start_timeout}s; "
                           f"see {self.log_path}:\n{self._log_tail()}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after `stop_timeout`); data is kept."""
        process, self._process = self._process, None
        _LIVE.discard(self)
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
            with self._open(f"{self.url}/-/ready", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def _open(self, url: str, timeout: float) -> Any:
        request = urllib.request.Request(url)
        if self.basic_auth:
            token = base64.b64encode(":".join(self.basic_auth).encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        context = ssl.create_default_context(cafile=str(self.ca_file)) if self.tls else None
        return urllib.request.urlopen(request, timeout=timeout, context=context)

    def _web_config(self) -> Path:
        """Prometheus' --web.config.file: basic-auth users and TLS, when asked for."""
        web: dict[str, Any] = {}
        if self.basic_auth:
            user, password = self.basic_auth
            with warnings.catch_warnings():  # crypt is deprecated, but bcrypt is not installed
                warnings.simplefilter("ignore", DeprecationWarning)
                import crypt

                hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))
            web["basic_auth_users"] = {user: hashed}
        if self.tls:
            key, cert = self.workdir / "server.key", self.workdir / "server.pem"
            if not cert.exists():
                _self_signed(self.workdir, self.ca_file, key, cert)
            web["tls_server_config"] = {"cert_file": str(cert), "key_file": str(key)}
        path = self.workdir / "web.yml"
        path.write_text(yaml.safe_dump(web))
        return path

    def _api(self, endpoint: str, params: Mapping[str, str]) -> list[dict[str, object]]:
        url = f"{self.url}/api/v1/{endpoint}?{urllib.parse.urlencode(params)}"
        with self._open(url, timeout=10) as response:
            payload = json.load(response)
        if payload.get("status") != "success":
            raise RuntimeError(f"prometheus {endpoint} failed: {payload}")
        return list(payload["data"]["result"])

    def _log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def _self_signed(workdir: Path, ca: Path, key: Path, cert: Path) -> None:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it (openssl CLI)."""
    ca_key = workdir / "ca.key"

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=harness-ca", "-keyout", str(ca_key), "-out", str(ca))
    csr = workdir / "server.csr"
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(key), "-out", str(csr))
    extensions = workdir / "san.cnf"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "2", "-extfile", str(extensions), "-out", str(cert))


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
