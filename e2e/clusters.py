"""The cluster KUBECONFIG points to, driven the way a user drives it: with kubectl. Every read
and write goes through the API server; nothing here is specific to one provider."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from foreseer.lab.waiting import until
from foreseer.operator.specs import GROUP, PLURAL

T = TypeVar("T")
POLICIES = f"{PLURAL}.{GROUP}"
E2E_LABEL = "foreseer.dev/e2e"
"""Set on every namespace the suite creates, so leftovers of a killed run are easy to find."""


class ClusterUnavailableError(Exception):
    """No cluster answers: no kubectl, no kubeconfig, or its API server does not respond."""


def eventually(condition: Callable[[], T], timeout: float, what: str,
               interval: float = 1.0) -> T:
    """Poll `condition` until truthy (returned), or TimeoutError naming `what`."""
    return asyncio.run(until(condition, timeout, what, interval))


@dataclass
class Cluster:
    """kubectl against the current kubeconfig context."""

    kubectl_path: str

    @classmethod
    def connect(cls, timeout: float = 10.0) -> Cluster:
        """The current context's cluster; ClusterUnavailableError says why there is none."""
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            raise ClusterUnavailableError("kubectl is not installed")
        cluster = cls(kubectl)
        done = cluster.kubectl("version", "-o", "json", f"--request-timeout={timeout:.0f}s",
                               check=False)
        server = json.loads(done.stdout or "{}").get("serverVersion")
        if done.returncode != 0 or server is None:
            raise ClusterUnavailableError((done.stderr.strip().splitlines() or [done.stdout])[-1])
        if (int(server["major"]), int(server["minor"].rstrip("+"))) < (1, 29):
            raise ClusterUnavailableError(
                f"Kubernetes {server['gitVersion']} is older than the chart's 1.29")
        return cluster

    def kubectl(self, *args: str, stdin: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([self.kubectl_path, *args], input=stdin, capture_output=True,
                              text=True, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
        return done

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        """One object, or None when it does not exist."""
        done = self.kubectl("get", kind, name, "-n", namespace, "-o", "json",
                            "--ignore-not-found")
        return json.loads(done.stdout) if done.stdout.strip() else None

    def list(self, kind: str, namespace: str, *selectors: str) -> list[dict[str, Any]]:
        done = self.kubectl("get", kind, "-n", namespace, "-o", "json", *selectors)
        return list(json.loads(done.stdout)["items"])

    def apply(self, manifest: Mapping[str, Any],
              check: bool = True) -> subprocess.CompletedProcess[str]:
        """`kubectl apply` with strict field validation: unknown fields are errors."""
        return self.kubectl("apply", "--validate=strict", "-f", "-",
                            stdin=json.dumps(manifest), check=check)

    # Namespaces -------------------------------------------------------------------------------

    def create_namespace(self, prefix: str) -> str:
        name = f"{prefix}-{secrets.token_hex(3)}"
        self.apply({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": name, "labels": {E2E_LABEL: "true"}}})
        return name

    def delete_namespace(self, name: str, timeout: float = 180.0, wait: bool = True) -> None:
        """Delete, and (with `wait`) wait until it is gone. ScalingPolicies still there (the
        operator is gone, e.g. after a failed test) lose their finalizers first, or the
        namespace never goes."""
        for policy in self.list(POLICIES, name):
            self.kubectl("patch", POLICIES, policy["metadata"]["name"], "-n", name,
                         "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False)
        self.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=false")
        if wait:
            self.wait_until_namespaces_gone([name], timeout)

    def wait_until_namespaces_gone(self, names: Sequence[str], timeout: float = 180.0) -> None:
        def gone() -> bool:
            left = set(self.kubectl("get", "namespaces", "-l", E2E_LABEL, "-o", "name").stdout
                       .split())
            return left.isdisjoint(f"namespace/{name}" for name in names)
        eventually(gone, timeout, f"namespaces {', '.join(names)} to be deleted", interval=2.0)

    # CustomResourceDefinitions ----------------------------------------------------------------

    def apply_crds(self, crds: Sequence[Mapping[str, Any]], timeout: float = 60.0) -> None:
        """Server-side apply the chart's CRDs and wait until they are established. Helm never
        upgrades the CRDs of a chart's crds/ folder, so a cluster that ran an older suite
        would otherwise keep validating policies with the older schema."""
        for crd in crds:
            self.kubectl("apply", "--server-side", "--force-conflicts",
                         "--field-manager=foreseer-e2e", "-f", "-", stdin=json.dumps(crd))
        for crd in crds:
            self.kubectl("wait", "--for=condition=Established", f"--timeout={timeout:.0f}s",
                         f"customresourcedefinition/{crd['metadata']['name']}")

    # Deployments (the simulated workloads) ----------------------------------------------------

    def create_deployment(self, namespace: str, name: str, replicas: int) -> None:
        """A Deployment of pause containers: its replicas matter, its pods need not run."""
        labels = {"app": name}
        container = {
            "name": "app", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "1m", "memory": "4Mi"},
                          "limits": {"memory": "16Mi"}},
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65535,
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                                "seccompProfile": {"type": "RuntimeDefault"}},
        }
        self.apply({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [container]}}},
        })

    def replicas(self, namespace: str, name: str) -> int:
        """spec.replicas of a Deployment, as the API server holds it."""
        return self.all_replicas(namespace)[name]

    def all_replicas(self, namespace: str) -> dict[str, int]:
        """spec.replicas of every Deployment in the namespace, in one request."""
        return {d["metadata"]["name"]: int(d["spec"].get("replicas", 1))
                for d in self.list("deployments", namespace)}

    # ScalingPolicies --------------------------------------------------------------------------

    def policy(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(POLICIES, name, namespace)

    def status(self, namespace: str, name: str) -> dict[str, Any]:
        return dict((self.policy(namespace, name) or {}).get("status") or {})

    def condition(self, namespace: str, name: str, kind: str) -> dict[str, Any]:
        """The ``kind`` condition of a policy's status ({} while absent)."""
        for item in self.status(namespace, name).get("conditions", []):
            if item.get("type") == kind:
                return dict(item)
        return {}

    def policy_events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return self.list("events", namespace, "--field-selector",
                         f"involvedObject.kind=ScalingPolicy,involvedObject.name={name}")

    def delete_policies(self, namespace: str, timeout: float = 120.0) -> None:
        """Delete every ScalingPolicy in the namespace and wait until the operator has let
        them go (it removes its finalizers); needs the operator to be running."""
        self.kubectl("delete", POLICIES, "--all", "-n", namespace, "--wait=false")
        eventually(lambda: not self.list(POLICIES, namespace), timeout,
                   f"the ScalingPolicies in {namespace} to be deleted", interval=2.0)

    # Credentials ------------------------------------------------------------------------------

    def service_account_kubeconfig(self, namespace: str, account: str, path: Path,
                                   duration: str = "2h") -> Path:
        """A kubeconfig for the current cluster that authenticates as the ServiceAccount, with
        a token from `kubectl create token`: whatever uses it gets exactly that account's RBAC."""
        token = self.kubectl("create", "token", account, "-n", namespace,
                             f"--duration={duration}").stdout.strip()
        current = json.loads(self.kubectl("config", "view", "--raw", "--minify", "--flatten",
                                          "-o", "json").stdout)
        (cluster,) = current["clusters"]
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "e2e", "cluster": cluster["cluster"]}],
            "users": [{"name": account, "user": {"token": token}}],
            "contexts": [{"name": account, "context": {"cluster": "e2e", "user": account,
                                                       "namespace": namespace}}],
            "current-context": account,
        }))
        path.chmod(0o600)
        return path

    def can_i(self, kubeconfig: Path, namespace: str | None, verb: str, resource: str,
              *flags: str) -> bool:
        """`kubectl auth can-i` as whoever the kubeconfig authenticates as, asked of the API
        server's own authorizer; in `namespace`, or at cluster scope when it is None."""
        scope = ["--all-namespaces"] if namespace is None else ["-n", namespace]
        done = self.kubectl("--kubeconfig", str(kubeconfig), "auth", "can-i", verb, resource,
                            *scope, *flags, check=False)
        return done.stdout.strip() == "yes"
