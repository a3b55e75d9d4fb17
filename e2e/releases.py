"""The chart installed with the real helm, and the operator it describes, run either by the
cluster (`--operator image`) or on this machine (`--operator local`) with the chart's own
command line and a token of the chart's ServiceAccount, so its RBAC is what gets exercised."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from chart.rendering import CHART, helm
from clusters import Cluster, eventually

from foreseer.lab.prometheus import free_port

LABEL = "app.kubernetes.io/instance"
"""The chart labels every object it renders with the release name."""


@dataclass
class Release:
    """One `helm install` of charts/foreseer, serving only its own namespace."""

    name: str
    namespace: str
    values: dict[str, Any]

    def helm(self, *args: str, timeout: float = 600.0) -> str:
        done = subprocess.run([str(helm()), *args, "--namespace", self.namespace],
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"helm {args[0]} {self.name} failed: {done.stderr.strip()}")
        return done.stdout

    def install(self) -> None:
        """Install (CRDs first, then RBAC and the rest) and wait until it is ready."""
        self.helm("install", self.name, str(CHART), "--wait", "--timeout", "5m",
                  *(arg for key, value in self.values.items()
                    for arg in ("--set-json", f"{key}={json.dumps(value)}")))

    def uninstall(self, missing_ok: bool = False) -> None:
        """`helm uninstall`, waiting until the objects are gone; with `missing_ok`, a release
        that is not (or no longer) installed is no error."""
        self.helm("uninstall", self.name, "--wait", "--timeout", "3m",
                  *(["--ignore-not-found"] if missing_ok else []))

    def listed(self) -> list[str]:
        """Names of the releases helm lists in the namespace, whatever their state: helm v4
        lists every state by default and has no `--all` (v3's flag for that)."""
        return self.helm("list", "--short").split()

    def objects(self) -> list[dict[str, Any]]:
        """What the release created, as helm recorded it."""
        out = self.helm("get", "manifest", self.name)
        return [doc for doc in yaml.safe_load_all(out) if doc]

    def deployment(self) -> dict[str, Any]:
        (found,) = [o for o in self.objects() if o["kind"] == "Deployment"]
        return found

    def service_account(self) -> str:
        return str(self.deployment()["spec"]["template"]["spec"]["serviceAccountName"])


def release_values(namespace: str, prometheus_url: str, mode: str, image: str,
                   ) -> dict[str, Any]:
    """Values for a release that serves only `namespace`: a namespaced operator cannot
    touch anything else on a shared cluster, and two releases never compete for a policy."""
    values: dict[str, Any] = {
        "watchNamespaces": [namespace],
        "prometheus": {"url": prometheus_url, "timeout": 3, "retries": 1},
        "logging": {"level": "DEBUG", "json": False},
    }
    if mode == "image":
        repository, _, tag = image.rpartition(":")
        values["image"] = {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"}
        values["replicaCount"] = 1
    else:
        values["replicaCount"] = 0  # RBAC, ServiceAccount and peering only: it runs here
    return values


@dataclass
class LocalOperator:
    """The chart's operator command line, run on this machine as the chart's ServiceAccount."""

    cluster: Cluster
    release: Release
    workdir: Path
    port: int = field(default_factory=free_port)
    _process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / f"operator-{self.release.name}.log"

    def start(self, timeout: float = 120.0) -> None:
        deployment = self.release.deployment()
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        kubeconfig = self.cluster.service_account_kubeconfig(
            self.release.namespace, self.release.service_account(),
            self.workdir / f"kubeconfig-{self.release.name}")
        # The chart's command as is (with its peering-priority wrapper); only where /metrics
        # listens differs, since this machine may run several operators.
        argv = [*container.get("command", []), *container["args"],
                "--metrics-host=127.0.0.1", f"--metrics-port={self.port}"]
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONSAFEPATH": "1",
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        log.close()
        try:
            eventually(self._healthy, timeout, f"the local operator on :{self.port} to be ready")
        except TimeoutError:
            self.stop()
            raise TimeoutError(
                f"the operator did not become ready; log:\n{self.log_tail()}") from None

    def _healthy(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            raise RuntimeError(f"the operator exited with {self._process.returncode}:\n"
                               f"{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz",
                                        timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (Kopf leaves its peering entry and stops its daemons), then SIGKILL."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=timeout)

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


@dataclass
class Operator:
    """The release's operator, wherever it runs; `start` after install, `stop` before
    uninstall (in-cluster, helm does both)."""

    release: Release
    local: LocalOperator | None

    def start(self) -> None:
        if self.local is not None:
            self.local.start()

    def stop(self) -> None:
        if self.local is not None:
            self.local.stop()

    def metrics(self, cluster: Cluster) -> str:
        """The operator's /metrics: from the chart's Service through the API server's service
        proxy when it runs in the cluster, straight from the process when it runs here."""
        if self.local is not None:
            url = f"http://127.0.0.1:{self.local.port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as response:
                return str(response.read().decode())
        (service,) = [o for o in self.release.objects() if o["kind"] == "Service"]
        (port,) = service["spec"]["ports"]
        path = (f"/api/v1/namespaces/{self.release.namespace}/services/"
                f"{service['metadata']['name']}:{port['name']}/proxy/metrics")
        return cluster.kubectl("get", "--raw", path).stdout

    def diagnostics(self, cluster: Cluster) -> str:
        """The operator's recent log, for a failing assertion's message."""
        if self.local is not None:
            return self.local.log_tail()
        return self.log(cluster, tail=40)

    def log(self, cluster: Cluster, tail: int = -1) -> str:
        """The operator's log (whole, unless `tail` lines): the local process's file, or
        the logs of every pod of the release's Deployment."""
        if self.local is not None:
            with contextlib.suppress(OSError):
                text = self.local.log_path.read_text(errors="replace")
                return text if tail < 0 else "\n".join(text.splitlines()[-tail:])
            return ""
        done = cluster.kubectl("logs", "-n", self.release.namespace, f"--tail={tail}",
                               "--all-containers", "--prefix", "-l",
                               f"{LABEL}={self.release.name}", check=False)
        return done.stdout + done.stderr


def start_operator(cluster: Cluster, release: Release, mode: str, workdir: Path) -> Operator:
    """Install the release and get its operator running (in the cluster, or here)."""
    release.install()
    operator = Operator(release, LocalOperator(cluster, release, workdir)
                        if mode == "local" else None)
    operator.start()
    return operator


def leftovers(cluster: Cluster, release: str, namespaces: list[str]) -> list[str]:
    """Every object still labelled with the release, cluster-wide and in `namespaces`."""
    selector = f"{LABEL}={release}"
    found = cluster.kubectl("get", "clusterroles,clusterrolebindings,clusterkopfpeerings.kopf.dev",
                            "-l", selector, "-o", "name").stdout.split()
    for namespace in namespaces:
        found += cluster.kubectl(
            "get", "deployments,replicasets,pods,services,serviceaccounts,configmaps,secrets,"
            "roles,rolebindings,poddisruptionbudgets,kopfpeerings.kopf.dev",
            "-n", namespace, "-l", selector, "-o", "name").stdout.split()
    return found


def wait_until_gone(cluster: Cluster, release: str, namespaces: list[str],
                    timeout: float = 120.0) -> None:
    """Pods take their grace period to go; wait for them (and everything else) with a deadline."""
    eventually(lambda: not leftovers(cluster, release, namespaces), timeout,
               f"every object of release {release} to be deleted", interval=2.0)
