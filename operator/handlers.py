"""Thin Kopf handlers: read (Prometheus, /scale, status), decide(), write (/scale, status, Events).

One daemon per ScalingPolicy runs its loop at ``spec.interval``; Kopf hands daemons a
live view of the object, so an edited spec takes effect on the next tick. On
create/update/resume the spec is validated at once, so a bad policy gets its
condition and Event without waiting for a tick; on delete the policy's models,
history and metric series are dropped.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import math
import os
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes.config import kube_config
from pydantic import ValidationError

from foreseer.operator.capacities import DRIFT_INTERVALS, capacity_step, fit_capacity
from foreseer.operator.clusters import Cluster, ClusterError, Conflict, TargetNotFound
from foreseer.operator.deciding import (
    Decision,
    ForecastInput,
    MetricOutage,
    Observation,
    OutageKind,
    decide,
)
from foreseer.operator.durations import parse_duration
from foreseer.operator.events import EventQueue
from foreseer.operator.fitting import Fitter
from foreseer.operator.forecasting import (
    ROLLBACK_SAMPLES,
    Fitted,
    LiveError,
    Plan,
    Recipe,
    Step,
    forecast_step,
    grid_points,
    urgency,
    worse_than_before,
)
from foreseer.operator.guards import advance_breaker
from foreseer.operator.leadtimes import LeadTime
from foreseer.operator.leases import Sharder
from foreseer.operator.modelstore import ModelStore
from foreseer.operator.scoping import OutOfScope, QueryScope, Unparsable, scoped
from foreseer.operator.settings import Settings
from foreseer.operator.sources import Prometheus
from foreseer.operator.specs import (
    GROUP,
    PLURAL,
    VERSION,
    MetricSpec,
    Mode,
    ScaleTargetRef,
    ScalingPolicySpec,
)
from foreseer.operator.statuses import (
    CapacityStatus,
    Condition,
    ConditionStatus,
    ConditionType,
    ScalingPolicyStatus,
    get_condition,
    set_condition,
    to_time,
)
from foreseer.operator.telemetry import Health, Telemetry
from foreseer.predictors.series import Series

logger = logging.getLogger(__name__)

Clock = Callable[[], float]

INVALID_RECHECK_SECONDS = 5.0
"""How often the loop of an invalid policy looks again (it has no valid interval)."""

STATUS_REFRESH_SECONDS = 600.0
"""A status whose substance did not change is written again after this long, so that its
volatile parts (the newest recommendation's time, the forecast value, the reason's numbers)
are never older than this after a restart. At a 30 s interval and a steady load, that is
6 writes per policy-hour instead of 120."""

AUTOSCALERS_RECHECK_SECONDS = 30.0
"""How often the HorizontalPodAutoscalers of a namespace are listed again: at most one list
per namespace and period, however many policies it holds (the HPA controller itself syncs
every 15 s)."""


@dataclass
class PolicyMemory:
    """What the operator keeps in memory per policy, besides the fitted models.

    All of it can be lost: after a restart the history is re-read from Prometheus,
    the models are refitted, and the decision state comes back from status.
    """

    errors: dict[str, LiveError] = field(default_factory=dict)
    """Live forecast error per metric."""
    lead: LeadTime = field(default_factory=LeadTime)
    """Measured replica readiness, for ``horizon: auto``."""
    state: ScalingPolicyStatus | None = None
    """The decision state of the last cycle (written or not: a write skipped as unchanged,
    or one that failed, still holds the scale events the rate policies must count); the
    daemon's live view may lag behind our own writes."""
    written: tuple[Any, float] | None = None
    """The substance of the status written last, and when (the operator's clock)."""
    spec: tuple[dict[str, Any], ScalingPolicySpec | str] | None = None
    """The raw spec seen last and what it parsed to (validating it every tick costs more
    than comparing it)."""
    claim: tuple[tuple[str, str, str], tuple[str, str]] | None = None
    """The target this policy scales, (API group, kind, name), and its seniority,
    (creationTimestamp, name): of two policies on one target the senior one acts. None in
    Observe mode, which scales nothing."""
    capacities: dict[str, CapacityStatus] = field(default_factory=dict)
    """Per metric with utilization, its learned capacity (restored from status when empty)."""
    version: str | None = None
    """The policy's resourceVersion that ``state`` derives from: a status write carries it,
    so that it never overwrites a status that another writer (a second replica during a
    peering hand-over) changed meanwhile. None: write without a precondition."""
    restored: dict[str, Recipe] = field(default_factory=dict)
    """Per metric, the recipe the model store was last asked for (asked once per recipe)."""
    unsaved: dict[str, float] = field(default_factory=dict)
    """Per metric, the fit time of a model the store could not write (not retried)."""
    live_version: dict[str, int] = field(default_factory=dict)
    """Per metric, the stored version of the model forecasting now."""
    replaced: dict[str, tuple[int, float | None]] = field(default_factory=dict)
    """Per metric, the stored version a new fit replaced and its live MASE then: the one to
    roll back to if the new fit scores worse live."""


def target_key(api_version: str, kind: str, name: str) -> tuple[str, str, str]:
    """What names one scalable object in a namespace, (API group, kind, name): the version
    is only a view of it."""
    return api_version.rpartition("/")[0], kind, name


@dataclass
class Runtime:
    """The operator's shared parts, handed to every handler through Kopf's memo."""

    settings: Settings
    prometheus: Prometheus
    cluster: Cluster
    fitter: Fitter
    telemetry: Telemetry = field(default_factory=Telemetry)
    health: Health = field(default_factory=Health)
    events: EventQueue | None = None
    """Where Events are queued; made on first use, from the cluster adapter."""
    clock: Clock = time.time
    """Wall clock; the only clock of the operator (decide() gets ``now`` from here)."""
    memories: dict[tuple[str, str], PolicyMemory] = field(default_factory=dict)
    metrics_port: int | None = None
    """The bound port of /metrics and /healthz once serving."""
    autoscaled: dict[str, tuple[float, dict[tuple[str, str, str], str]]] = field(
        default_factory=dict)
    """Per namespace: when its HPAs were listed, and their targets (by `target_key`) with
    the HPA's name."""
    sharder: Sharder | None = None
    """This replica's shard Leases, when the policies are sharded across replicas."""
    models: ModelStore | None = None
    """Where fitted models outlive the process, when configured."""

    @classmethod
    def create(cls, settings: Settings) -> Runtime:
        telemetry = Telemetry()
        cluster = Cluster()
        return cls(
            settings=settings,
            prometheus=Prometheus(settings.prometheus,
                                  on_invalid=telemetry.count_invalid_samples),
            cluster=cluster,
            fitter=Fitter(settings.fitting, on_fitted=telemetry.fit_seconds.observe),
            telemetry=telemetry,
            sharder=(Sharder(cluster, settings.sharding, time.time)
                     if settings.sharding.shards else None),
            models=(ModelStore.from_key_file(settings.fitting.model_dir,
                                             settings.fitting.model_key_file)
                    if settings.fitting.model_dir and settings.fitting.model_key_file
                    else None),
        )

    def post_event(self, body: Mapping[str, Any], *, reason: str, message: str,
                   warning: bool = False) -> None:
        """Queue an Event about a policy; it is posted off the tick path."""
        if self.events is None:
            telemetry = self.telemetry
            self.events = EventQueue(
                self.cluster,
                on_posted=lambda w: telemetry.events.labels("Warning" if w else "Normal").inc(),
                on_dropped=telemetry.events_dropped.inc)
        self.events.post(body, reason=reason, message=message, warning=warning)

    def owns(self, namespace: str, name: str) -> bool:
        """Whether this replica acts on the policy: always without sharding, else while it
        holds the Lease of the policy's shard."""
        return self.sharder is None or self.sharder.owns(namespace, name)

    def memory(self, namespace: str, name: str) -> PolicyMemory:
        return self.memories.setdefault((namespace, name), PolicyMemory())

    def rival(self, namespace: str, name: str) -> str | None:
        """The senior policy of the namespace that claims the same target, if any."""
        claim = self.memories[(namespace, name)].claim
        if claim is None:
            return None
        rivals = [(other.claim[1], other_name)
                  for (other_ns, other_name), other in self.memories.items()
                  if other_ns == namespace and other_name != name and other.claim is not None
                  and other.claim[0] == claim[0] and other.claim[1] < claim[1]]
        return min(rivals)[1] if rivals else None

    async def autoscaler(self, namespace: str, ref: ScaleTargetRef) -> str | None:
        """The name of a HorizontalPodAutoscaler of the namespace that scales `ref`'s target,
        if any. The list is at most AUTOSCALERS_RECHECK_SECONDS old; when it cannot be read
        (an RBAC gap, an API outage), the last one read stands, logged, rather than stopping
        every policy of the namespace."""
        now = self.clock()
        listed_at, targets = self.autoscaled.get(namespace, (-math.inf, {}))
        if now - listed_at >= AUTOSCALERS_RECHECK_SECONDS:
            try:
                targets = {}
                for api_version, kind, target, hpa in await self.cluster.list_autoscaled(
                        namespace):
                    targets.setdefault(target_key(api_version, kind, target), hpa)
            except ClusterError as exc:
                logger.warning("could not list the HorizontalPodAutoscalers of %s: %s",
                               namespace, exc)
                targets = self.autoscaled.get(namespace, (now, {}))[1]
            self.autoscaled[namespace] = (now, targets)
        return targets.get(target_key(ref.api_version, ref.kind, ref.name))

    def forget(self, namespace: str, name: str) -> None:
        """Drop everything held for a deleted policy."""
        self.memories.pop((namespace, name), None)
        self.fitter.forget(namespace, name)
        self.prometheus.forget(namespace, name)
        self.telemetry.forget(namespace, name)

    async def close(self) -> None:
        if self.events is not None:
            await self.events.close()
        self.fitter.shutdown()
        await self.prometheus.close()
        await self.cluster.close()


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


def phase(uid: str) -> float:
    """A stable fraction in [0, 1) per policy."""
    return (zlib.crc32(uid.encode()) % 1000) / 1000


def parse_spec(raw: Mapping[str, Any]) -> ScalingPolicySpec | str:
    """The validated spec, or a one-line message naming every bad field."""
    try:
        return ScalingPolicySpec.model_validate(raw)
    except ValidationError as exc:
        return "; ".join(
            f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"]
            for e in exc.errors(include_url=False)
        )


async def check_spec(
    runtime: Runtime, body: Mapping[str, Any], raw: Mapping[str, Any], generation: int | None,
    status: Mapping[str, Any],
) -> None:
    """Validate a policy; an invalid one gets Ready=False with the reason, and an Event."""
    parsed = parse_spec(raw)
    if isinstance(parsed, ScalingPolicySpec):
        return
    state = read_state(runtime, body, status)
    await write_conditions(runtime, body, state, [
        (ConditionType.READY, False, "InvalidSpec", f"the policy is invalid: {parsed}"),
    ], generation)


def read_state(runtime: Runtime, body: Mapping[str, Any],
               status: Mapping[str, Any]) -> ScalingPolicyStatus:
    """The decision state: what we wrote last, else what the object's status says (and
    then its resourceVersion is the one the next status write carries)."""
    meta = body["metadata"]
    memory = runtime.memory(meta["namespace"], meta["name"])
    if memory.state is not None:
        return memory.state
    memory.version = meta.get("resourceVersion")
    try:
        return ScalingPolicyStatus.model_validate(dict(status))
    except ValidationError as exc:
        # A hand-edited or foreign status must not crash the loop; start from a clean state.
        logger.warning("ignoring an unreadable status of %s/%s: %s", meta["namespace"],
                       meta["name"], exc)
        return ScalingPolicyStatus()


async def write_conditions(
    runtime: Runtime, body: Mapping[str, Any], state: ScalingPolicyStatus,
    updates: list[tuple[str, bool, str, str]], generation: int | None,
) -> ScalingPolicyStatus:
    """Set conditions on the status, and post an Event for each one that changed."""
    now = to_time(runtime.clock())
    conditions = list(state.conditions)
    for kind, ok, reason, message in updates:
        conditions = set_condition(conditions, kind, ok, reason, message, now, generation)
    new_state = state.model_copy(update={"conditions": conditions})
    await write_status(runtime, body, state, new_state)
    return new_state


async def write_status(runtime: Runtime, body: Mapping[str, Any], old: ScalingPolicyStatus,
                       new: ScalingPolicyStatus, *, force: bool = False) -> None:
    """Patch the status when it changed in substance (or its last write is older than
    STATUS_REFRESH_SECONDS, or `force`), and queue an Event for every condition that changed
    status or reason.

    The patch carries the resourceVersion the state was read from. Raises Conflict when the
    policy changed since (``new`` derives from a stale state and is dropped), and ClusterError
    when the patch fails otherwise (``new`` is the policy's state even so).
    """
    meta = body["metadata"]
    memory = runtime.memory(meta["namespace"], meta["name"])
    dump = new.model_dump(mode="json", by_alias=True)
    now = runtime.clock()
    essence = substance(dump)
    unchanged = memory.written is not None and memory.written[0] == essence and \
        now - memory.written[1] < STATUS_REFRESH_SECONDS
    if force or not unchanged:
        try:
            written = await runtime.cluster.patch_policy_status(
                meta["namespace"], meta["name"], dump, resource_version=memory.version)
        except Conflict:
            raise
        except ClusterError:
            remember(runtime, body, old, new)
            raise
        memory.version = (written.get("metadata") or {}).get("resourceVersion")
        memory.written = (essence, now)
        runtime.telemetry.status_writes.inc()
    remember(runtime, body, old, new)


def remember(runtime: Runtime, body: Mapping[str, Any], old: ScalingPolicyStatus,
             new: ScalingPolicyStatus) -> None:
    """Make `new` the policy's state, with an Event for each condition that changed."""
    meta = body["metadata"]
    runtime.memory(meta["namespace"], meta["name"]).state = new
    for condition in changed_conditions(old.conditions, new.conditions):
        runtime.post_event(
            body, reason=condition.reason, message=f"{condition.type} is {condition.status}: "
            f"{condition.message}", warning=is_bad(condition))


def substance(status: Mapping[str, Any]) -> Any:
    """What of a status dump is worth a write as soon as it changes (the VPA recommender's
    semantic equality): everything but the numbers that move on every tick without changing
    a decision. Those are the time of each recommendation (their values count), the forecast's
    value and error, the reason text and the condition messages (their type, status and
    reason count)."""
    essence = dict(status)
    recommendation = dict(essence.get("recommendation") or {})
    recommendation.pop("reason", None)
    essence["recommendation"] = recommendation
    forecast = essence.get("forecast")
    if forecast:
        essence["forecast"] = {k: v for k, v in forecast.items() if k not in ("value", "mase")}
    history = dict(essence.get("history") or {})
    history["recommendations"] = [r.get("replicas")
                                  for r in history.get("recommendations", [])]
    essence["history"] = history
    essence["conditions"] = [(c.get("type"), c.get("status"), c.get("reason"))
                             for c in essence.get("conditions", [])]
    return essence


def changed_conditions(old: list[Condition], new: list[Condition]) -> list[Condition]:
    changed = []
    for condition in new:
        before = get_condition(old, condition.type)
        if before is None or (before.status, before.reason) != (condition.status,
                                                                condition.reason):
            changed.append(condition)
    return changed


def is_bad(condition: Condition) -> bool:
    """Whether a condition change is a Warning Event: any type turning not-True, except
    ScalingLimited, where a guard holding the replicas back is normal operation."""
    if condition.type == ConditionType.SCALING_LIMITED:
        return False
    return condition.status != ConditionStatus.TRUE


async def tick(runtime: Runtime, body: kopf.Body) -> float:
    """One control cycle of one policy; returns the seconds to wait before the next.

    Never raises for bad input: every failure ends up in a condition, an Event, the
    breaker, or the log, and the loop carries on.
    """
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    generation = meta.get("generation")
    if not runtime.owns(namespace, name):
        # Another replica's shard: nothing is read, held or written for it here.
        if (namespace, name) in runtime.memories:
            runtime.forget(namespace, name)
        return runtime.settings.sharding.renew_seconds
    memory = runtime.memory(namespace, name)
    raw = dict(body.get("spec", {}))
    edited = memory.spec is None or memory.spec[0] != raw
    if memory.spec is None or edited:
        memory.spec = (copy.deepcopy(raw), parse_spec(raw))
    parsed = memory.spec[1]
    if not isinstance(parsed, ScalingPolicySpec):
        memory.claim = None
        if edited and runtime.sharder is not None:
            # The replica that validated it at creation may not be this one (a shard moved
            # here); the write is a no-op when the condition already says so.
            await check_spec(runtime, body, raw, generation, dict(body.get("status") or {}))
        return INVALID_RECHECK_SECONDS  # check_spec reported it; wait for an edit
    spec = parsed
    # An Observe policy never scales, so it may watch a target that something else scales
    # (the way to try foreseer next to an HPA).
    memory.claim = None if spec.mode is Mode.OBSERVE else (
        target_key(spec.scale_target_ref.api_version, spec.scale_target_ref.kind,
                   spec.scale_target_ref.name),
        (str(meta.get("creationTimestamp") or ""), name))
    interval = parse_duration(spec.interval)
    started = time.perf_counter()
    try:
        try:
            await control_cycle(runtime, body, spec, generation)
        except Conflict:
            # Another writer changed the policy since our state was read (the other replica
            # of a peering hand-over, an edit): decide again on what is stored now, never
            # overwrite it. A second conflict waits for the next tick.
            logger.info("the status of %s/%s changed meanwhile; deciding again on it",
                        namespace, name)
            memory.state, memory.written = None, None
            fresh = await runtime.cluster.read_policy(namespace, name)
            await control_cycle(runtime, fresh, spec, fresh["metadata"].get("generation"))
    except Conflict:
        memory.state, memory.written = None, None
        logger.info("the status of %s/%s changed again; the next tick decides", namespace, name)
    except Exception as exc:
        # The loop must outlive any bug in one cycle, and say so: the next tick retries.
        logger.exception("the control cycle of %s/%s failed", namespace, name)
        await report_failure(runtime, body, spec, generation, exc)
    finally:
        runtime.telemetry.tick_seconds.labels(namespace, name).observe(
            time.perf_counter() - started)
        runtime.health.last_tick = runtime.clock()
    return max(0.0, interval - (time.perf_counter() - started))


async def report_failure(runtime: Runtime, body: Mapping[str, Any], spec: ScalingPolicySpec,
                         generation: int | None, exc: Exception) -> None:
    """A cycle that failed unexpectedly: Ready=False (InternalError, naming the exception's
    type), a Warning Event, and one failure for the circuit breaker."""
    meta = body["metadata"]
    runtime.telemetry.cycle_errors.labels(meta["namespace"], meta["name"]).inc()
    state = read_state(runtime, body, body.get("status") or {})
    breaker, _ = advance_breaker(state.breaker, True, spec.guards.circuit_breaker,
                                 to_time(runtime.clock()).timestamp(), meta.get("uid", ""))
    message = f"the control cycle failed: {type(exc).__name__}: {exc}"[:500]
    try:
        await write_conditions(runtime, body, state.model_copy(update={"breaker": breaker}), [
            (ConditionType.READY, False, "InternalError", message)], generation)
    except Exception:  # the status itself may be what fails; the Event still tells
        logger.exception("could not report the failed cycle of %s/%s", meta["namespace"],
                         meta["name"])


# What one metric makes the operator hold: its history grid (a float64 per point) and its
# fitted model (a pickled AutoForecaster measured at 193-244 KB for 2,000-11,000 points).
HISTORY_BYTES_PER_POINT = 8
MODEL_BYTES = 256 * 1024


def footprint_bytes(spec: ScalingPolicySpec) -> float:
    """The memory a policy makes the operator hold, estimated from its spec."""
    points = grid_points(parse_duration(spec.forecast.history), parse_duration(spec.forecast.step))
    histories = sum(3 if m.utilization else 1 for m in spec.metrics)
    return histories * points * HISTORY_BYTES_PER_POINT + len(spec.metrics) * MODEL_BYTES


async def control_cycle(runtime: Runtime, body: Mapping[str, Any], spec: ScalingPolicySpec,
                        generation: int | None) -> None:
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    memory = runtime.memory(namespace, name)
    state = read_state(runtime, body, body.get("status") or {})

    # As the HPA's AmbiguousSelector and KEDA's admission check: two scalers on one target
    # would undo each other's work. Of two policies the senior one acts; an HPA (KEDA's
    # included) always does, since it cannot see us.
    ref = spec.scale_target_ref
    rival = None
    if (senior := runtime.rival(namespace, name)) is not None:
        rival = f"ScalingPolicy {senior!r}, older than this one,"
    elif memory.claim is not None and (hpa := await runtime.autoscaler(namespace, ref)):
        rival = f"HorizontalPodAutoscaler {hpa!r}"
    if rival is not None:
        await write_conditions(runtime, body, state, [
            (ConditionType.READY, False, "AmbiguousTarget",
             f"{rival} also scales {ref.kind} {ref.name!r}; this policy does not act while "
             "it does (mode: Observe watches beside it)")], generation)
        return
    try:
        scale = await runtime.cluster.read_scale(namespace, spec.scale_target_ref)
    except TargetNotFound as exc:
        await write_conditions(runtime, body, state, [
            (ConditionType.READY, False, "TargetNotFound", str(exc))], generation)
        return
    except ClusterError as exc:
        await write_conditions(runtime, body, state, [
            (ConditionType.READY, False, "TargetUnreadable", str(exc))], generation)
        return

    try:
        queries = scoped_queries(runtime, namespace, spec)
    except OutOfScope as exc:
        await write_conditions(runtime, body, state, [
            (ConditionType.READY, False, "QueryOutOfScope", str(exc)[:500])], generation)
        return
    budget = runtime.settings.fitting.policy_memory_mib * 2**20
    if (needed := footprint_bytes(spec)) > budget:
        await write_conditions(runtime, body, state, [
            (ConditionType.READY, False, "MemoryBudgetExceeded",
             f"the policy needs about {needed / 2**20:.1f} MiB for its histories and models, "
             f"past the operator's budget of {budget / 2**20:g} MiB per policy; use fewer "
             "metrics, a shorter forecast.history or a longer forecast.step")], generation)
        return
    now = runtime.clock()
    readings, histories = await read_metrics(runtime, namespace, name, spec, queries, now)
    metrics = {m.name: readings[m.name] for m in spec.metrics}
    replicas = (scale.replicas, scale.status_replicas)
    unforecast: dict[str, str] = {}
    if spec.forecast.horizon == "auto" and memory.lead.due(replicas, now):
        try:
            memory.lead.observe(await runtime.cluster.list_pods(namespace, scale.selector),
                                replicas, now)
            runtime.telemetry.lead_time.labels(namespace, name).set(memory.lead.seconds())
        except ClusterError as exc:
            # Without the pods' readiness the horizon is unknown: no forecast this cycle,
            # the reactive floor still applies.
            logger.warning("listing the pods of %s/%s failed: %s", namespace, name, exc)
            unforecast = {m.name: f"the target's pods could not be listed for the lead time "
                          f"({exc})"[:300] for m in spec.metrics}
    forecasts: dict[str, ForecastInput] = {}
    if not unforecast:
        forecasts, unforecast = await forecast_all(runtime, namespace, name, spec, histories,
                                                   memory, now, str(meta.get("uid") or ""))

    capacities = await learn_capacities(runtime, body, spec, readings, histories, memory,
                                        state, now)
    observation = Observation(
        current_replicas=scale.replicas, metrics=metrics, generation=generation,
        unforecast=unforecast, scale_error=None, capacities=capacities,
        utilization={m.name: readings[utilization_key(m.name)] for m in spec.metrics
                     if m.utilization is not None})
    # decide() is pure computation: its CPU time is its latency on a core of its own.
    with runtime.telemetry.timed(runtime.telemetry.decide_seconds, namespace, name,
                                 clock=time.thread_time):
        decision = decide(spec, observation, forecasts, state, now, seed=meta.get("uid", ""))

    if not runtime.owns(namespace, name):
        # The shard's Lease lapsed during the cycle (it took longer than the hold's safety
        # margin): the replica that holds it now decides; nothing is written from here.
        logger.info("gave up the shard of %s/%s during its cycle; not acting", namespace, name)
        return
    if spec.mode is not Mode.OBSERVE and decision.replicas != scale.replicas:
        # The status write is the fence: it lands only on the version our state was read
        # from, so of two replicas deciding on one version (a peering hand-over) only one
        # scales; the other gets Conflict and decides again on what the first recorded.
        await record(runtime, body, state, decision.new_state, force=True)
        scaled = await apply(runtime, body, spec, scale.replicas, decision, observation,
                             state, forecasts, now)
        if scaled is not decision:  # the scale failed: record that instead
            await record(runtime, body, decision.new_state, scaled.new_state)
        decision = scaled
    else:
        await record(runtime, body, state, decision.new_state)
    publish(runtime, namespace, name, scale.replicas, decision)


async def record(runtime: Runtime, body: Mapping[str, Any], old: ScalingPolicyStatus,
                 new: ScalingPolicyStatus, *, force: bool = False) -> None:
    """`write_status`, where a failed write (but a Conflict) is a Warning Event: the decision
    stands (its scale events are in memory for the rate policies), and the next cycle writes
    again, since what was written differs from it."""
    try:
        await write_status(runtime, body, old, new, force=force)
    except Conflict:
        raise
    except ClusterError as exc:
        meta = body["metadata"]
        logger.warning("writing the status of %s/%s failed: %s", meta["namespace"],
                       meta["name"], exc)
        runtime.post_event(body, reason="StatusWriteFailed", warning=True,
                           message=f"could not write the status: {exc}")


async def apply(runtime: Runtime, body: Mapping[str, Any], spec: ScalingPolicySpec,
                current: int, decision: Decision, observation: Observation,
                state: ScalingPolicyStatus, forecasts: Mapping[str, ForecastInput],
                now: float) -> Decision:
    """Patch /scale to the decision's replicas; returns the decision.

    The adapter retries a 409 on fresh reads; if the patch still fails, decide() is
    asked again with the failure and that decision is returned, so the status does not
    keep a scale that never happened and the breaker counts it.
    """
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    try:
        await runtime.cluster.patch_scale(namespace, spec.scale_target_ref, decision.replicas)
    except ClusterError as exc:
        failed = dataclasses.replace(observation, current_replicas=current,
                                     scale_error=str(exc))
        runtime.post_event(body, reason="ScaleFailed", warning=True, message=(
            f"could not scale {spec.scale_target_ref.kind}/{spec.scale_target_ref.name} "
            f"from {current} to {decision.replicas}: {exc}"))
        return decide(spec, failed, forecasts, state, now, seed=meta.get("uid", ""))
    direction = "up" if decision.replicas > current else "down"
    runtime.telemetry.count_scale(namespace, name, direction)
    runtime.post_event(body, reason="Scaled", warning=False, message=(
        f"scaled {spec.scale_target_ref.kind}/{spec.scale_target_ref.name} {direction} from "
        f"{current} to {decision.replicas}: {decision.reason}"))
    return decision


def utilization_key(metric: str) -> str:
    return f"{metric}.utilization"


def replicas_key(metric: str) -> str:
    return f"{metric}.replicas"


def replicas_query(metric: MetricSpec, namespace: str, ref: ScaleTargetRef) -> str | None:
    """The ready replicas a metric's utilisation is the mean over: its replicasQuery, else
    kube-state-metrics' ready replicas of a Deployment or StatefulSet target."""
    if metric.utilization is None:
        return None
    if metric.utilization.replicas_query is not None:
        return metric.utilization.replicas_query
    label = {"Deployment": "deployment", "StatefulSet": "statefulset"}.get(ref.kind)
    if label is None:
        return None
    return (f'kube_{label}_status_replicas_ready{{namespace="{namespace}", '
            f'{label}="{ref.name}"}}')


def policy_queries(spec: ScalingPolicySpec, namespace: str) -> dict[str, str | MetricOutage]:
    """Every query a policy sends, by key: each metric's load (its name), and for a metric
    with utilization its utilisation (`utilization_key`) and ready replicas (`replicas_key`;
    an EMPTY outage when the target's kind has no default)."""
    queries: dict[str, str | MetricOutage] = {}
    for metric in spec.metrics:
        queries[metric.name] = metric.query
        if metric.utilization is not None:
            queries[utilization_key(metric.name)] = metric.utilization.query
            queries[replicas_key(metric.name)] = replicas_query(
                metric, namespace, spec.scale_target_ref) or MetricOutage(
                OutageKind.EMPTY, f"no default ready-replicas query for a "
                f"{spec.scale_target_ref.kind}: set utilization.replicasQuery to learn a "
                "capacity")
    return queries


def scoped_queries(runtime: Runtime, namespace: str,
                   spec: ScalingPolicySpec) -> dict[str, str | MetricOutage]:
    """Each query as it is sent (`policy_queries`): restricted to the policy's namespace
    unless the operator runs with ``--query-scope cluster``; an ERROR outage for a query that
    is not PromQL (nothing is sent for it). Raises OutOfScope, naming the metric, for a query
    that would read another namespace's series."""
    queries = policy_queries(spec, namespace)
    if runtime.settings.prometheus.query_scope is QueryScope.CLUSTER:
        return queries
    for key, query in queries.items():
        if isinstance(query, MetricOutage):
            continue
        try:
            queries[key] = scoped(query, namespace)
        except Unparsable as exc:
            queries[key] = MetricOutage(OutageKind.ERROR, str(exc)[:300])
        except OutOfScope as exc:
            raise OutOfScope(f"metric {key}: {exc}") from exc
    return queries


async def read_metrics(
    runtime: Runtime, namespace: str, name: str, spec: ScalingPolicySpec,
    queries: Mapping[str, str | MetricOutage], now: float,
) -> tuple[dict[str, float | MetricOutage], dict[str, Series]]:
    """Each query's current value (or its outage) and its history, queried concurrently."""
    step = parse_duration(spec.forecast.step)
    window = parse_duration(spec.forecast.history)
    loads = {m.name for m in spec.metrics}

    async def one(key: str) -> tuple[float | MetricOutage, Series | None]:
        query = queries[key]
        if isinstance(query, MetricOutage):
            return query, None
        reading = await runtime.prometheus.current(query, now, tenant=namespace)
        history = await runtime.prometheus.history(
            (namespace, name, key), query, step=step, window=window, now=now,
            tenant=namespace)
        return reading, history

    results = await asyncio.gather(*(one(key) for key in queries))
    readings: dict[str, float | MetricOutage] = {}
    histories: dict[str, Series] = {}
    for key, (reading, history) in zip(queries, results, strict=True):
        readings[key] = reading
        if key in loads:
            runtime.telemetry.observe_load(
                namespace, name, key, None if isinstance(reading, MetricOutage) else reading)
        if isinstance(reading, MetricOutage):
            runtime.telemetry.count_query_error(namespace, name, key, reading.kind.lower())
        if history is not None:
            histories[key] = history
    return readings, histories


async def learn_capacities(runtime: Runtime, body: Mapping[str, Any], spec: ScalingPolicySpec,
                           readings: Mapping[str, float | MetricOutage],
                           histories: Mapping[str, Series], memory: PolicyMemory,
                           state: ScalingPolicyStatus, now: float) -> dict[str, CapacityStatus]:
    """Each utilisation metric's learned capacity after this interval (`capacity_step`):
    fitted off the event loop when due, and a CapacityChanged Warning Event (and count)
    when live utilisation contradicts it."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    if not memory.capacities:
        memory.capacities = {c.metric: c for c in state.capacities}
    retrain = parse_duration(spec.forecast.retrain_interval)
    interval = parse_duration(spec.interval)
    learning = [m for m in spec.metrics if m.utilization is not None]
    for gone in set(memory.capacities) - {m.name for m in learning}:
        del memory.capacities[gone]
    for spec_metric in learning:
        metric, utilization = spec_metric.name, spec_metric.utilization
        assert utilization is not None
        keys = (metric, replicas_key(metric), utilization_key(metric))
        live = [readings.get(k) for k in keys]
        load, ready, busy = (v if isinstance(v, float) else math.nan for v in live)
        watched = capacity_step(memory.capacities.get(metric), load, ready, busy, now, retrain,
                                interval)
        capacity = watched.capacity
        if watched.refit is not None and all(k in histories for k in keys):
            logger.info("learning the capacity of %s/%s metric %s: %s", namespace, name,
                        metric, watched.refit)
            load_h, ready_h, busy_h = (histories[k] for k in keys)
            capacity = await asyncio.to_thread(
                fit_capacity, metric, load_h, ready_h, busy_h, utilization.target, now,
                watched.since)
        if watched.changed is not None:
            old, new = watched.changed
            fallback = "targetPerReplica" if spec_metric.target_per_replica else "utilization"
            runtime.post_event(body, reason="CapacityChanged", warning=True, message=(
                f"metric {metric}: the load one replica serves at {utilization.target:g} "
                f"utilisation was {old:.4g}, live utilisation says about "
                f"{'?' if new is None else f'{new:.4g}'} (off the learned band for "
                f"{DRIFT_INTERVALS} intervals); relearning from the history since the change, "
                f"sizing by {fallback} meanwhile"))
        if capacity is not None:
            memory.capacities[metric] = capacity
        runtime.telemetry.observe_capacity(
            namespace, name, metric,
            capacity.per_replica if capacity is not None and capacity.trusted else None,
            watched.changed is not None)
    return dict(memory.capacities)


async def forecast_all(runtime: Runtime, namespace: str, name: str, spec: ScalingPolicySpec,
                       histories: Mapping[str, Series], memory: PolicyMemory,
                       now: float, uid: str = ""
                       ) -> tuple[dict[str, ForecastInput], dict[str, str]]:
    """Each metric's forecast from its fitted model, and why the others have none when
    that is not a cold start; fits start in the pool as needed.

    A metric without a fitted model yet has no forecast (cold start: decide() acts
    reactively and says so). A metric whose forecast step fails has none either, and the
    others still forecast.
    """
    if spec.mode is Mode.REACTIVE:
        return {}, {}
    plan = Plan.of(spec, memory.lead.seconds())
    forecasts: dict[str, ForecastInput] = {}
    unforecast: dict[str, str] = {}
    for metric_name, history in histories.items():
        key = (namespace, name, metric_name)
        try:
            forecast = await forecast_one(runtime, key, history, plan, memory, now, uid)
        except Exception as exc:
            logger.exception("forecasting %s/%s metric %s failed", *key)
            forecast = f"the forecast failed ({type(exc).__name__}: {exc})"[:300]
        if isinstance(forecast, ForecastInput):
            forecasts[metric_name] = forecast
        elif forecast is not None:
            unforecast[metric_name] = forecast
    return forecasts, unforecast


async def forecast_one(runtime: Runtime, key: tuple[str, str, str], history: Series,
                       plan: Plan, memory: PolicyMemory, now: float,
                       uid: str = "") -> ForecastInput | str | None:
    """One metric's forecast step (`forecast_step`) and the fit it asks for; the forecast,
    else why there is none (a failed fit, no forecast from the model), or None (cold
    start)."""
    namespace, name, metric_name = key
    errors = memory.errors.setdefault(metric_name, LiveError())
    fitted = runtime.fitter.get(key)
    if runtime.models is not None and uid:
        fitted = await persist(runtime.models, runtime.fitter, key, uid, fitted, plan.recipe,
                               memory)
        fitted = await roll_back(runtime.models, runtime.fitter, key, uid, fitted, errors,
                                 memory, now) or fitted
        if fitted is not None and fitted.version is not None:
            memory.live_version[metric_name] = fitted.version
    step: Step = await runtime.fitter.forecast(
        key, fitted, history,
        lambda condition: forecast_step(history, fitted, plan, errors, now, condition=condition))
    if step.refit is not None and history.observed() > 0 and runtime.fitter.may_fit(key, now) \
            and runtime.fitter.submit(key, history, plan.recipe, runtime.clock,
                                      first=not step.usable, urgency=urgency(history)):
        logger.info("fitting %s/%s metric %s: %s", namespace, name, metric_name, step.refit)
    live = step.live_error
    shown = live if live is None or math.isfinite(live) else None
    runtime.telemetry.observe_metric(
        namespace, name, metric_name,
        None if step.forecast is None else step.forecast.value, shown)
    if not step.usable:
        failure = runtime.fitter.failure(key)
        return None if failure is None else f"fitting failed: {failure}"
    return step.forecast if step.forecast is not None else step.reason


async def persist(store: ModelStore, fitter: Fitter, key: tuple[str, str, str], uid: str,
                  fitted: Fitted | None, recipe: Recipe, memory: PolicyMemory) -> Fitted | None:
    """The model to forecast with: with none held, the newest stored one for this recipe
    (asked once per recipe: a restart or a shard takeover forecasts at once); a model fitted
    here and not stored yet is written as the next version. Disk work runs in a thread."""
    metric = key[2]
    if fitted is None:
        if memory.restored.get(metric) == recipe:
            return None
        memory.restored[metric] = recipe
        stored = await asyncio.to_thread(store.load, uid, metric, recipe)
        if stored is None:
            return None
        fitted = dataclasses.replace(stored.fitted, version=stored.version)
        logger.info("restored the model of %s/%s metric %s (version %d) from the store",
                    key[0], key[1], metric, stored.version)
    elif fitted.version is None and memory.unsaved.get(metric) != fitted.fitted_at:
        errors = memory.errors.get(metric)
        if errors is not None and errors.fitted_at is not None and \
                errors.fitted_at != fitted.fitted_at and memory.live_version.get(metric):
            # The model this fit replaces: what it scored live, in case this one does worse.
            memory.replaced[metric] = (memory.live_version[metric], errors.mase())
        try:
            version = await asyncio.to_thread(store.save, uid, metric, fitted)
        except OSError as exc:
            logger.warning("could not store the model of %s/%s metric %s: %s", *key, exc)
            memory.unsaved[metric] = fitted.fitted_at
            return fitted
        fitted = dataclasses.replace(fitted, version=version)
    else:
        return fitted
    fitter.put(key, fitted)
    return fitted


async def roll_back(store: ModelStore, fitter: Fitter, key: tuple[str, str, str], uid: str,
                    fitted: Fitted | None, errors: LiveError, memory: PolicyMemory,
                    now: float) -> Fitted | None:
    """The stored version a new fit replaced, when the new one has scored clearly worse live
    (`worse_than_before`); None to keep the model as it is. The restored model counts as
    fitted now, so it serves a whole retrain interval before the next refit."""
    metric = key[2]
    replaced = memory.replaced.get(metric)
    if fitted is None or fitted.version is None or replaced is None \
            or fitted.version <= replaced[0] or errors.fitted_at != fitted.fitted_at \
            or not worse_than_before(replaced[1], errors):
        return None
    del memory.replaced[metric]
    stored = await asyncio.to_thread(store.load_version, uid, metric, fitted.recipe,
                                     replaced[0])
    if stored is None:
        return None
    logger.warning("the model of %s/%s metric %s, version %d, scores live MASE %.2f against "
                   "%.2f for version %d before it; rolling back to version %d", *key,
                   fitted.version, errors.mase(minimum=ROLLBACK_SAMPLES) or math.nan,
                   replaced[1] or math.nan, replaced[0], replaced[0])
    back = dataclasses.replace(stored.fitted, version=stored.version, fitted_at=now)
    fitter.put(key, back)
    return back


def publish(runtime: Runtime, namespace: str, name: str, current: int,
            decision: Decision) -> None:
    """The decision's numbers on /metrics."""
    t = runtime.telemetry
    t.observe_decision(namespace, name, current, {
        t.reactive: decision.reactive, t.predictive: decision.predictive,
        t.final: decision.final}, decision.new_state.breaker.state.value)
