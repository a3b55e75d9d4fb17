"""A tiny Deployment controller for the emulator: replicas become pods that get Ready later.

No kube-controller-manager runs next to kmock, so a scaled Deployment would never get pods or a
status. foreseer measures replica readiness lead time from pods' Ready conditions and the
Deployment's status, and the exporter's load per ready replica follows ``status.readyReplicas``,
so this controller does the minimum a real one does, through the emulator's own write paths
(every change has a resourceVersion and a watch event)::

    async with DeploymentController(emulator, ready_after=2.0):
        await emulator.patch_object(DEPLOYMENTS, "ns", "web", {"spec": {"replicas": 4}}, "scale")
        # ~2s later: 4 pods Ready, status.readyReplicas == 4
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from foreseer.lab.emulator import DEPLOYMENTS, PODS, Emulator


def _stamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.define
class DeploymentController:
    """Reconciles every Deployment in the emulator into pods and a status."""

    emulator: Emulator
    ready_after: float = 2.0
    """Seconds from a pod's creation until it turns Ready: the lead time foreseer must learn."""
    resync: float = 0.2
    """Seconds between reconciliations when no Deployment event arrives."""
    _task: asyncio.Task[None] | None = attrs.field(default=None, init=False)
    _born: dict[str, float] = attrs.field(factory=dict, init=False)
    _owned: dict[str, set[tuple[str, str]]] = attrs.field(factory=dict, init=False)

    async def __aenter__(self) -> DeploymentController:
        self._task = asyncio.create_task(self._run(), name="deployment-controller")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        # Only Deployments that changed or are still converging are looked at, and pods are
        # found through the controller's own index: a benchmark may run thousands of them.
        queue = self.emulator.subscribe(DEPLOYMENTS)
        try:
            for pod in self.emulator.list_objects(PODS):
                for ref in pod["metadata"].get("ownerReferences", []):
                    self._owned.setdefault(ref["uid"], set()).add(
                        (pod["metadata"]["namespace"], pod["metadata"]["name"]))
            pending = {_key(body) for body in self.emulator.list_objects(DEPLOYMENTS)}
            while True:
                for namespace, name in sorted(pending):
                    body = self.emulator.read_object(DEPLOYMENTS, namespace, name)
                    if body is None or await self.reconcile(body):
                        pending.discard((namespace, name))
                with contextlib.suppress(TimeoutError):
                    event = await asyncio.wait_for(queue.get(), self.resync)
                    while event is not None:
                        if event["type"] != "DELETED":
                            pending.add(_key(event["object"]))
                        event = queue.get_nowait() if not queue.empty() else None
        finally:
            self.emulator.unsubscribe(queue)

    async def reconcile(self, deployment: dict[str, Any]) -> bool:
        """One pass over one Deployment; True when it has converged (all pods ready)."""
        meta = deployment["metadata"]
        namespace, uid = meta["namespace"], meta["uid"]
        desired = int(deployment.get("spec", {}).get("replicas", 1))
        owned = self._owned.setdefault(uid, set())
        pods = [pod for pod in (self.emulator.read_object(PODS, *key) for key in sorted(owned))
                if pod is not None]
        for _ in range(desired - len(pods)):
            pods.append(await self._create_pod(deployment))
            owned.add((namespace, pods[-1]["metadata"]["name"]))
        if len(pods) > desired:
            # Like the ReplicaSet controller: not-ready pods go first, then the newest.
            pods.sort(key=lambda pod: (_ready(pod), pod["metadata"]["creationTimestamp"]))
            for pod in pods[: len(pods) - desired]:
                await self.emulator.delete_object(PODS, namespace, pod["metadata"]["name"])
                owned.discard((namespace, pod["metadata"]["name"]))
                self._born.pop(pod["metadata"]["uid"], None)
            pods = pods[len(pods) - desired:]
        now = time.monotonic()
        for index, pod in enumerate(pods):
            born = self._born.setdefault(pod["metadata"]["uid"], now)
            if not _ready(pod) and now - born >= self.ready_after:
                pods[index] = await self.emulator.patch_object(
                    PODS, namespace, pod["metadata"]["name"],
                    _pod_status(ready=True, scheduled=pod["metadata"]["creationTimestamp"]),
                    "status")
        ready = sum(_ready(pod) for pod in pods)
        status = {"observedGeneration": meta.get("generation", 1), "replicas": len(pods),
                  "updatedReplicas": len(pods), "readyReplicas": ready,
                  "availableReplicas": ready, "unavailableReplicas": len(pods) - ready}
        if {key: deployment.get("status", {}).get(key) for key in status} != status:
            await self.emulator.patch_object(DEPLOYMENTS, namespace, meta["name"],
                                             {"status": status}, "status")
        return ready == len(pods) == desired

    async def _create_pod(self, deployment: dict[str, Any]) -> dict[str, Any]:
        meta = deployment["metadata"]
        template = deployment.get("spec", {}).get("template", {})
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "generateName": f"{meta['name']}-", "namespace": meta["namespace"],
                "labels": dict(template.get("metadata", {}).get("labels", {})),
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": meta["name"], "uid": meta["uid"],
                                     "controller": True}],
            },
            "spec": template.get("spec", {}),
            **_pod_status(ready=False, scheduled=_stamp()),
        }
        created = await self.emulator.create_object(PODS, pod)
        self._born[created["metadata"]["uid"]] = time.monotonic()
        return created


def _key(body: dict[str, Any]) -> tuple[str, str]:
    return body["metadata"]["namespace"], body["metadata"]["name"]


def _pod_status(ready: bool, scheduled: str) -> dict[str, Any]:
    now = _stamp()
    flag = "True" if ready else "False"
    return {"status": {
        "phase": "Running" if ready else "Pending",
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": scheduled},
            {"type": "ContainersReady", "status": flag, "lastTransitionTime": now},
            {"type": "Ready", "status": flag, "lastTransitionTime": now},
        ],
    }}


def _ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in pod.get("status", {}).get("conditions", []))


def ready_replicas(emulator: Emulator, namespace: str, name: str) -> Callable[[], int]:
    """For `foreseer.lab.exporter.Workload`: the Deployment's ``status.readyReplicas``."""

    def read() -> int:
        body = emulator.read_object(DEPLOYMENTS, namespace, name) or {}
        return int(body.get("status", {}).get("readyReplicas", 0))
    return read


def ready_replicas_in_cluster(namespace: str, name: str,
                              api: Any = None) -> Callable[[], Awaitable[int]]:
    """A callback for `foreseer.lab.exporter.Workload` reading a real cluster's Deployment (e2e):
    ``status.readyReplicas`` through the `kubernetes` client, off the event loop. `api` is an
    ApiClient; by default one from KUBECONFIG."""
    import kubernetes

    apps = kubernetes.client.AppsV1Api(api or kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
        os.environ.get("KUBECONFIG")))

    async def read() -> int:
        body = await asyncio.to_thread(apps.read_namespaced_deployment_status, name, namespace)
        return int(body.status.ready_replicas or 0) if body.status else 0
    return read
