"""What the operator's integration scenarios share: manifests, readers of the emulator's
objects, a replica recorder, the `Stack` of emulator, exporter and Prometheus, and operator
replicas in processes of their own."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import kmock
from prometheus_client.parser import text_string_to_metric_families

from foreseer.lab.emulator import DEPLOYMENTS, EVENTS, Emulator, deployment
from foreseer.lab.exporter import Exporter, Workload
from foreseer.lab.prometheus import PrometheusServer, free_port
from foreseer.lab.waiting import until
from foreseer.lab.workloads import ready_replicas
from foreseer.operator.runtime import Runtime
from foreseer.operator.specs import GROUP, PLURAL, VERSION

POLICIES = kmock.resource(GROUP, VERSION, PLURAL)


@dataclass
class RunningOperator:
    """One operator in its own thread and event loop, as Kopf recommends for embedding: at
    exit, Kopf cancels every task its loop started after it, which would include the test's."""

    runtime: Runtime
    thread: threading.Thread
    stop_flag: threading.Event
    errors: list[BaseException]

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop as on SIGTERM; waits for Kopf's graceful shutdown, with a deadline."""
        self.stop_flag.set()
        await asyncio.to_thread(self.thread.join, timeout)
        if self.thread.is_alive():
            raise TimeoutError(f"the operator did not stop within {timeout}s")
        if self.errors:
            raise self.errors[0]

    def ticks(self, namespace: str, name: str) -> int:
        """Control cycles the operator has finished for a policy."""
        value = self.runtime.telemetry.registry.get_sample_value(
            "foreseer_tick_seconds_count", {"namespace": namespace, "policy": name})
        return int(value or 0)


StartOperator = Callable[..., Awaitable[RunningOperator]]


def policy(name: str, namespace: str, target: str, metrics: list[Mapping[str, Any]],
           **spec: Any) -> dict[str, Any]:
    """A ScalingPolicy manifest; ``spec`` adds or overrides camelCase spec fields."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ScalingPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                    "name": target},
                 "minReplicas": 1, "maxReplicas": 20, "metrics": list(metrics),
                 "interval": "1s", **spec},
    }


def metric(name: str, query: str, target: float) -> dict[str, Any]:
    return {"name": name, "query": query, "targetPerReplica": target}


def load_query(app: str, namespace: str) -> str:
    return f'workload_load{{app="{app}",namespace="{namespace}"}}'


async def create_deployment(emulator: Emulator, name: str, namespace: str,
                            replicas: int) -> None:
    await emulator.create_object(DEPLOYMENTS, deployment(name, namespace, replicas=replicas))


def replicas(emulator: Emulator, namespace: str, name: str) -> int:
    """spec.replicas of a Deployment as the emulator holds it."""
    body = emulator.read_object(DEPLOYMENTS, namespace, name) or {}
    return int(body.get("spec", {}).get("replicas", 0))


def status(emulator: Emulator, namespace: str, name: str) -> dict[str, Any]:
    body = emulator.read_object(POLICIES, namespace, name) or {}
    return dict(body.get("status") or {})


def condition(emulator: Emulator, namespace: str, name: str, kind: str) -> dict[str, Any]:
    """The ``kind`` condition of a policy's status ({} when absent)."""
    for item in status(emulator, namespace, name).get("conditions", []):
        if item.get("type") == kind:
            return dict(item)
    return {}


def events(emulator: Emulator, namespace: str, name: str) -> list[dict[str, Any]]:
    """Events about the policy ``name``."""
    return [e for e in emulator.list_objects(EVENTS, namespace)
            if e.get("involvedObject", {}).get("name") == name]


def reasons(emulator: Emulator, namespace: str, name: str) -> list[str]:
    """The reasons of the Events about the policy ``name``, oldest first."""
    return [e["reason"] for e in events(emulator, namespace, name)]


async def until_event(emulator: Emulator, namespace: str, name: str, reason: str,
                      timeout: float = 10) -> list[str]:
    """Wait for an Event with ``reason`` about the policy ``name``; all its reasons.

    The operator posts an Event after the status or /scale patch it reports, so a test
    that has just seen that patch must wait for the Event rather than look once."""
    def posted() -> list[str]:
        found = reasons(emulator, namespace, name)
        return found if reason in found else []

    return await until(posted, timeout=timeout, what=f"a {reason} Event about {namespace}/{name}")


class ReplicaRecorder:
    """Every change of a Deployment's spec.replicas, with the loop time it was seen at."""

    def __init__(self, emulator: Emulator, namespace: str, name: str) -> None:
        self.emulator, self.namespace, self.name = emulator, namespace, name
        self.changes: list[tuple[float, int]] = []
        self._queue = emulator.subscribe(DEPLOYMENTS)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ReplicaRecorder:
        loop = asyncio.get_running_loop()
        self.changes.append((loop.time(), replicas(self.emulator, self.namespace, self.name)))

        async def record() -> None:
            while (event := await self._queue.get()) is not None:
                meta = event["object"]["metadata"]
                if (meta.get("namespace"), meta["name"]) != (self.namespace, self.name):
                    continue
                value = int(event["object"]["spec"].get("replicas", 0))
                if value != self.changes[-1][1]:
                    self.changes.append((loop.time(), value))

        self._task = asyncio.create_task(record())
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Record every event already published before stopping: a wait that saw a new value
        # in the emulator's store can end before this task has read that value's watch
        # event, and cancelling the task then lost the last change.
        self.emulator.unsubscribe(self._queue)
        self._queue.put_nowait(None)
        if self._task is not None:
            await asyncio.wait_for(self._task, timeout=10)

    def at(self, when: float) -> int:
        """Replicas at loop time ``when``."""
        value = self.changes[0][1]
        for t, v in self.changes:
            if t <= when:
                value = v
        return value

    def values(self) -> list[int]:
        return [v for _, v in self.changes]


class Level:
    """A load that tests set by hand: ``level.value = 400`` changes what the exporter reports."""

    def __init__(self, value: float | None) -> None:
        self.value = value

    def __call__(self, _: float) -> float | None:
        return self.value


@dataclass
class Stack:
    """The emulator, its Deployment controller, the live exporter and a real Prometheus."""

    emulator: Emulator
    exporter: Exporter
    prometheus: PrometheusServer
    start_operator: StartOperator

    async def workload(self, name: str, namespace: str, replicas: int,
                       load: Callable[[float], float | None]) -> None:
        """A Deployment in the emulator whose load the exporter reports."""
        await create_deployment(self.emulator, name, namespace, replicas)
        self.exporter.workloads.append(Workload(
            name, namespace, load, ready_replicas(self.emulator, namespace, name)))

    async def start_prometheus(self, *ready_queries: str) -> None:
        """Start Prometheus (off the loop: its readiness wait blocks) and wait for samples."""
        await asyncio.to_thread(self.prometheus.start)
        for query in ready_queries:
            await asyncio.to_thread(self.prometheus.wait_for, query, 30.0)

    async def operator(self, namespaces: tuple[str, ...] = ()) -> RunningOperator:
        return await self.start_operator(self.prometheus.url, namespaces)

    async def apply(self, manifest: Mapping[str, Any]) -> None:
        await self.emulator.create_object(POLICIES, manifest)

    async def one_policy(self, load: Level, replicas: int, **spec: Any) -> RunningOperator:
        """The common set-up: Deployment shop/web with ``load``, Prometheus, an operator,
        and policy shop/web on that load at 100 per replica (``spec`` adds fields)."""
        await self.workload("web", "shop", replicas=replicas, load=load)
        await self.start_prometheus(load_query("web", "shop"))
        operator = await self.operator()
        await self.apply(policy("web", "shop", "web", [
            metric("load", load_query("web", "shop"), 100.0)], **spec))
        return operator


class Replica:
    """One operator replica: `foreseer run` in its own process, with ``args`` (peering or
    sharding flags)."""

    def __init__(self, prometheus_url: str, args: list[str], kubeconfig: Path,
                 log: Path) -> None:
        self.port = free_port()
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "foreseer.operator", f"--prometheus-url={prometheus_url}",
             *args, "--metrics-host=127.0.0.1", f"--metrics-port={self.port}"],
            env={**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONSAFEPATH": "1"},
            stdout=self._log, stderr=subprocess.STDOUT)

    async def ticks(self, namespace: str, name: str) -> int:
        """Control cycles this replica finished for a policy (from its /metrics)."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        try:
            async with aiohttp.ClientSession() as session, session.get(url) as response:
                text = await response.text()
        except aiohttp.ClientError:
            return -1  # not serving (yet, or any more)
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "foreseer_tick_seconds_count" and \
                        sample.labels == {"namespace": namespace, "policy": name}:
                    return int(sample.value)
        return 0

    async def stop(self) -> None:
        """SIGTERM, as Kubernetes does; Kopf then leaves the peering at once."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, 30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait, 10)
        self._log.close()


StartReplica = Callable[..., Replica]
"""``start_replica(name, *flags)``: `foreseer run` with ``flags`` in a process of its own,
logging to operator-<name>.log."""
