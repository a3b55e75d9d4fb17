"""Kopf's handlers for ScalingPolicy: thin wiring from Kopf's events to the cycle.

One daemon per ScalingPolicy runs `cycle.tick` at ``spec.interval``; Kopf hands daemons a
live view of the object, so an edited spec takes effect on the next tick. On
create/update/resume the spec is validated at once (`cycle.check_spec`), so a bad policy
gets its condition and Event without waiting for a tick; on delete the policy's models,
history and metric series are dropped.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import kopf
from kubernetes.config import kube_config

from foreseer.operator.cycle import check_spec, tick
from foreseer.operator.policies import phase
from foreseer.operator.runtime import Runtime
from foreseer.operator.specs import GROUP, PLURAL, VERSION

logger = logging.getLogger(__name__)


def build_registry() -> kopf.OperatorRegistry:
    """A registry with foreseer's handlers (one per operator, so tests can run several)."""
    registry = kopf.OperatorRegistry()
    resource = (GROUP, VERSION, PLURAL)

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        # With peering on, a missing peering object must stop us, not silently fall back to
        # standalone: two replicas acting at once would fight over /scale.
        settings.peering.mandatory = memo.runtime.settings.peered
        settings.posting.level = logging.WARNING  # our own Events say what happened
        settings.persistence.finalizer = f"{GROUP}/cleanup"
        memo.runtime.fitter.warm_up()
        memo.runtime.health.ready = True

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # Kopf's login through the kubernetes client (service account, kubeconfig with exec
        # plugins); the client reads KUBECONFIG once, at import, so point it at the current one.
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = os.environ.get("KUBECONFIG", "~/.kube/config")
        return kopf.login_via_client(**kwargs)

    @kopf.on.create(*resource, registry=registry)
    @kopf.on.update(*resource, field="spec", registry=registry)
    @kopf.on.resume(*resource, registry=registry)
    async def validate(
        body: kopf.Body, spec: kopf.Spec, meta: kopf.Meta, status: kopf.Status, memo: kopf.Memo,
        **_: Any,
    ) -> None:
        runtime: Runtime = memo.runtime
        if runtime.owns(meta["namespace"], meta["name"]):
            await check_spec(runtime, body, dict(spec), meta.get("generation"), dict(status))

    @kopf.on.delete(*resource, registry=registry)
    async def cleanup(meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> None:
        runtime: Runtime = memo.runtime
        runtime.forget(meta["namespace"], meta["name"])
        if runtime.models is not None and meta.get("uid"):
            await asyncio.to_thread(runtime.models.forget, meta["uid"])

    @kopf.daemon(*resource, registry=registry, cancellation_timeout=10.0)
    async def control(
        body: kopf.Body, meta: kopf.Meta, memo: kopf.Memo, stopped: kopf.DaemonStopped,
        **_: Any,
    ) -> None:
        runtime: Runtime = memo.runtime
        # A daemon (re)starts after a restart, a peering hand-over or a pause: another
        # replica may have acted meanwhile, so the state comes from status, not from memory.
        memory = runtime.memory(meta["namespace"], meta["name"])
        memory.state, memory.written, memory.capacities = None, None, {}
        runtime.health.policies += 1
        try:
            wait = await tick(runtime, body)
            # Policies created together, or resumed together after a restart, would tick in
            # lockstep, in bursts of queries and writes; a per-policy phase (from its uid,
            # so stable) spreads them over the interval.
            await stopped.wait(wait * (1 + phase(meta.get("uid", ""))))
            while not stopped:
                wait = await tick(runtime, body)
                await stopped.wait(wait)
        finally:
            runtime.health.policies -= 1

    return registry
