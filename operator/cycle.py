"""One policy tick: read (Prometheus, /scale, status), decide(), write (/scale, status, Events).

`tick` parses the spec (cached until it changes), and runs `control_cycle`: the rival
check, the target's /scale, the scoped queries, the lead time, each metric's forecast step
and fit (`forecast_all`), the learned capacities, `decide()`, then the fenced status write
and the scale. Every failure ends in a condition, an Event, the breaker or the log.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import math
import time
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from foreseer.operator.capacities import DRIFT_INTERVALS, capacity_step, fit_capacity
from foreseer.operator.clusters import ClusterError, Conflict, TargetNotFound
from foreseer.operator.deciding import Decision, ForecastInput, MetricOutage, Observation, decide
from foreseer.operator.durations import parse_duration
from foreseer.operator.fitting import Fitter
from foreseer.operator.forecasting import (
    ROLLBACK_SAMPLES,
    Fitted,
    LiveError,
    Plan,
    Recipe,
    Step,
    forecast_step,
    urgency,
    worse_than_before,
)
from foreseer.operator.guards import advance_breaker
from foreseer.operator.modelstore import ModelStore
from foreseer.operator.policies import (
    footprint_bytes,
    parse_spec,
    replicas_key,
    scoped_queries,
    target_key,
    utilization_key,
)
from foreseer.operator.runtime import PolicyMemory, Runtime
from foreseer.operator.scoping import OutOfScope
from foreseer.operator.specs import Mode, ScalingPolicySpec
from foreseer.operator.statuses import (
    CapacityStatus,
    ConditionType,
    ScalingPolicyStatus,
    changed_conditions,
    is_bad,
    set_condition,
    substance,
    to_time,
)
from foreseer.predictors.series import Series

logger = logging.getLogger(__name__)


INVALID_RECHECK_SECONDS = 5.0
"""How often the loop of an invalid policy looks again (it has no valid interval)."""

STATUS_REFRESH_SECONDS = 600.0
"""A status whose substance did not change is written again after this long, so that its
volatile parts (the newest recommendation's time, the forecast value, the reason's numbers)
are never older than this after a restart. At a 30 s interval and a steady load, that is
6 writes per policy-hour instead of 120."""


async def tick(runtime: Runtime, body: Mapping[str, Any]) -> float:
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
        queries = scoped_queries(spec, namespace, runtime.settings.prometheus.query_scope)
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
