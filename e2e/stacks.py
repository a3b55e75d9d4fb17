"""One test's stack: its own namespace, Deployments, loads, Prometheus, release and operator.

Nothing here is shared between tests: every test that needs an operator launches a stack of
its own (`conftest.launch`), with fresh `Scenario` objects, and tears it down afterwards."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from clusters import Cluster
from metering import BackgroundLoop, Level, Metering, ReplicaReader, Wave
from releases import Operator, Release, release_values, start_operator

from foreseer.lab.exporter import Workload

WAVE = Wave()
"""The periodic load of the scale-up scenario (immutable, so tests may share it)."""
HIGH, LOW = 200.0, 40.0
"""Loads of the hand-set workloads: with a target of 20 per replica, 10 and 2 replicas."""


@dataclass(frozen=True)
class Scenario:
    """One Deployment of a stack (and its policy, by convention), with its load. A `Level`
    is mutable: create it in the test that sets it, never at module level."""

    name: str
    replicas: int
    load: Level | Wave


@dataclass
class Stack:
    """Everything one test's operator works with; `close` undoes it all (idempotent)."""

    cluster: Cluster
    namespace: str
    metering: Metering
    release: Release
    operator: Operator
    scenarios: dict[str, Scenario]
    release_cleanup: contextlib.ExitStack = field(default_factory=contextlib.ExitStack,
                                                  repr=False)
    """Deletes the policies (while the operator still runs to let go of them), stops the
    operator and uninstalls the release."""
    cleanup: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, repr=False)
    """The release's cleanup, then the metering's."""

    def load(self, name: str) -> Level:
        load = self.scenarios[name].load
        assert isinstance(load, Level)
        return load

    def uninstall(self) -> None:
        """Delete the policies, stop the operator, uninstall the release (once)."""
        self.release_cleanup.close()

    def close(self) -> None:
        self.cleanup.close()


Launch = Callable[..., Stack]
"""The `launch` fixture: ``launch(*scenarios)`` starts the test's stack in the test's
namespace."""


def launch_stack(cluster: Cluster, namespace: str, scenarios: tuple[Scenario, ...], *,
                 mode: str, image: str, host_address: str | None, loop: BackgroundLoop,
                 workdir: Path) -> Stack:
    """Create the scenarios' Deployments in `namespace`, start Prometheus on their loads,
    install a release serving only `namespace` and start its operator. On any failure,
    whatever was started is undone before the error propagates."""
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise ValueError(f"scenario names must be unique: {names}")
    with contextlib.ExitStack() as undo:
        metering = Metering(workdir, loop, relay_host=host_address if mode == "image" else None)
        undo.callback(metering.close)
        for scenario in scenarios:
            cluster.create_deployment(namespace, scenario.name, scenario.replicas)
        replicas = ReplicaReader(cluster, namespace)
        metering.start([Workload(s.name, namespace, s.load, replicas.of(s.name))
                        for s in scenarios], now=time.time())
        release = Release(release_name(namespace), namespace,
                          release_values(namespace, metering.url_for_operator, mode, image))
        release_cleanup = contextlib.ExitStack()
        undo.callback(release_cleanup.close)
        release_cleanup.callback(release.uninstall, missing_ok=True)
        operator = start_operator(cluster, release, mode, workdir)
        release_cleanup.callback(operator.stop)
        release_cleanup.callback(cluster.delete_policies, namespace)
        stack = Stack(cluster, namespace, metering, release, operator,
                      {s.name: s for s in scenarios}, release_cleanup=release_cleanup)
        stack.cleanup.push(undo.pop_all())
        return stack


def release_name(namespace: str) -> str:
    """The release of a test namespace `foreseer-e2e-<test>-1a2b3c`: `foreseer-e2e-1a2b3c`,
    within Helm's 53 characters, and the chart's fullname is the release name itself."""
    return f"foreseer-e2e-{namespace.rsplit('-', 1)[-1]}"
