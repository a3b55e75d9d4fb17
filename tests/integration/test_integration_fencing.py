"""Fencing: two operator replicas that act on one policy at once (the overlap of a peering
hand-over) scale it once and lose no history, because every status write carries the
resourceVersion its state was read from, against the emulator's real 409s.

Each replica is a Runtime with its own Kubernetes adapter talking HTTP to the emulator, on a
frozen clock; only Prometheus is scripted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from foreseer.lab.emulator import DEPLOYMENTS, EVENTS, Emulator, Fault, deployment
from foreseer.operator.clusters import Cluster
from foreseer.operator.cycle import tick
from foreseer.operator.fitting import Fitter
from foreseer.operator.runtime import Runtime
from foreseer.operator.settings import FittingSettings, Settings
from foreseer.operator.specs import GROUP, PLURAL, VERSION
from foreseer.operator.statuses import to_time
from harness.fakes import FakeSource, FrozenClock

pytestmark = pytest.mark.integration
POLICIES = f"{GROUP}/{VERSION}/{PLURAL}"
# At most one pod more per minute, so a second scale-up within the minute would show.
ONE_POD_A_MINUTE = {"scaleUp": {"stabilizationWindowSeconds": 0, "policies": [
    {"type": "Pods", "value": 1, "periodSeconds": 60}]}}


def inline_pool(settings: FittingSettings) -> Executor:
    return ThreadPoolExecutor(1)


@pytest.fixture
async def replicas(kubeconfig: Path, clock: FrozenClock) -> AsyncIterator[list[Runtime]]:
    """Two operator replicas, each with its own API connection; the load asks for 20 pods."""
    runtimes = [Runtime(settings=Settings(), prometheus=FakeSource(2000.0),  # type: ignore[arg-type]
                        cluster=Cluster(), fitter=Fitter(FittingSettings(), pool=inline_pool),
                        clock=clock) for _ in range(2)]
    yield runtimes
    for runtime in runtimes:
        await runtime.close()


@pytest.fixture
async def stale_view(emulator: Emulator) -> dict[str, Any]:
    """The policy as both replicas' Kopf daemons hold it when the hand-over starts."""
    await emulator.create_object(DEPLOYMENTS, deployment("web", "shop", 2))
    await emulator.patch_object(DEPLOYMENTS, "shop", "web", {"status": {"replicas": 2}},
                                "status")
    await emulator.create_object(POLICIES, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ScalingPolicy",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                    "name": "web"},
                 "minReplicas": 1, "maxReplicas": 20, "interval": "10s", "mode": "Reactive",
                 "behavior": ONE_POD_A_MINUTE,
                 "metrics": [{"name": "rps", "query": 'sum(rate(x{namespace="shop"}[1m]))',
                              "targetPerReplica": 100}]}})
    return emulator.read_object(POLICIES, "shop", "web")


def counting_scale_patches(emulator: Emulator) -> Fault:
    """A no-op hook on every /scale patch: its ``hits`` count them."""
    return emulator.before_next("PATCH", DEPLOYMENTS, lambda: asyncio.sleep(0),
                                subresource="scale", times=1_000)


def scaled_events(emulator: Emulator) -> list[dict[str, Any]]:
    return [e for e in emulator.list_objects(EVENTS) if e.get("reason") == "Scaled"]


async def test_two_replicas_deciding_on_one_version_scale_once_and_keep_the_history(
        emulator: Emulator, replicas: list[Runtime], stale_view: dict[str, Any],
        clock: FrozenClock) -> None:
    first, second = replicas
    scale_patches = counting_scale_patches(emulator)
    # The second replica has read /scale and decided (2 -> 3); just before its status write
    # lands, the first one runs a whole cycle on the same version of the policy.
    emulator.before_next("PATCH", POLICIES, lambda: tick(first, stale_view),
                         subresource="status")
    await tick(second, stale_view)
    for runtime in replicas:
        if runtime.events is not None:
            await runtime.events.flush()

    assert emulator.read_object(DEPLOYMENTS, "shop", "web")["spec"]["replicas"] == 3
    assert scale_patches.hits == 1 and len(scaled_events(emulator)) == 1
    status = emulator.read_object(POLICIES, "shop", "web")["status"]
    assert [e["change"] for e in status["history"]["scaleEvents"]] == [1]

    # Ten seconds on, the second replica (now the only one) still counts the first one's
    # scale-up against the one-pod-a-minute policy, from the history it re-read.
    clock.now += 10
    await tick(second, stale_view)
    assert emulator.read_object(DEPLOYMENTS, "shop", "web")["spec"]["replicas"] == 3
    clock.now += 60
    await tick(second, stale_view)
    assert emulator.read_object(DEPLOYMENTS, "shop", "web")["spec"]["replicas"] == 4
    status = emulator.read_object(POLICIES, "shop", "web")["status"]
    # The first replica's event is past the 60 s period, so pruned; the new one is kept.
    assert [e["change"] for e in status["history"]["scaleEvents"]] == [1]
    assert status["history"]["scaleEvents"][0]["time"] == to_time(clock.now).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


async def test_a_status_changed_by_another_writer_is_re_read_not_overwritten(
        emulator: Emulator, replicas: list[Runtime], stale_view: dict[str, Any],
        clock: FrozenClock) -> None:
    first, second = replicas
    await tick(first, stale_view)  # scales 2 -> 3 and records it
    clock.now += 10
    # The second replica's view is the version before the first one's write.
    await tick(second, stale_view)
    status = emulator.read_object(POLICIES, "shop", "web")["status"]
    assert [e["change"] for e in status["history"]["scaleEvents"]] == [1]
    assert emulator.read_object(DEPLOYMENTS, "shop", "web")["spec"]["replicas"] == 3
