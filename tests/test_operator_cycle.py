"""The control cycle (`tick`) on a frozen clock with fake adapters, as Kopf tests its daemons.

The fakes stand in for the API server and Prometheus only; everything of the operator's own
(the tick, the forecast step, decide(), the status writes, the Event queue) is real.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from foreseer.operator import cycle
from foreseer.operator import runtime as runtimes
from foreseer.operator.clusters import ClusterError, Scale
from foreseer.operator.cycle import tick
from foreseer.operator.deciding import MetricOutage, OutageKind
from foreseer.operator.fitting import Fitter
from foreseer.operator.forecasting import Recipe, history_grid
from foreseer.operator.runtime import Runtime
from foreseer.operator.scoping import QueryScope
from foreseer.operator.settings import FittingSettings, PrometheusSettings, Settings
from foreseer.operator.specs import ScaleTargetRef
from foreseer.predictors.forecasts import Forecast
from foreseer.predictors.series import Series
from harness.fakes import T0, FakeSource, FrozenClock, settled


class FakeCluster:
    """An API server that records writes and can be told to fail."""

    def __init__(self, replicas: int = 2) -> None:
        self.replicas = replicas
        self.status_writes: list[dict[str, Any]] = []
        self.events: list[tuple[str, str, bool]] = []
        self.fail_pods: Exception | None = None
        self.fail_status: Exception | None = None
        self.hpas: list[tuple[str, str, str, str]] = []
        self.hpa_lists = 0
        self.fail_hpas: Exception | None = None
        self.fail_scale: Exception | None = None

    async def read_scale(self, namespace: str, ref: ScaleTargetRef) -> Scale:
        return Scale(self.replicas, self.replicas, "app=web", "1")

    async def patch_scale(self, namespace: str, ref: ScaleTargetRef, replicas: int) -> Scale:
        if self.fail_scale is not None:
            raise self.fail_scale
        self.replicas = replicas
        return await self.read_scale(namespace, ref)

    async def patch_policy_status(self, namespace: str, name: str, status: Mapping[str, Any],
                                  resource_version: str | None = None) -> dict[str, Any]:
        json.dumps(status, allow_nan=False)  # as a real API server: strict JSON only
        if self.fail_status is not None:
            raise self.fail_status
        self.status_writes.append(dict(status))
        return {}

    async def post_event(self, body: Mapping[str, Any], *, reason: str, message: str,
                         warning: bool = False) -> None:
        self.events.append((reason, message, warning))

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        if self.fail_pods is not None:
            raise self.fail_pods
        return []

    async def list_autoscaled(self, namespace: str) -> list[tuple[str, str, str, str]]:
        self.hpa_lists += 1
        if self.fail_hpas is not None:
            raise self.fail_hpas
        return self.hpas

    async def close(self) -> None:
        pass


def inline_pool(settings: FittingSettings) -> Executor:
    return ThreadPoolExecutor(1)


def failing_fit(series: Series, recipe: Recipe) -> Any:
    raise ValueError("the history holds no usable sample")


def body(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "foreseer.dev/v1alpha1", "kind": "ScalingPolicy",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u1", "generation": 1},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                    "name": "web"},
                 "minReplicas": 1, "maxReplicas": 20, "interval": "30s",
                 "metrics": [{"name": "rps", "query": "sum(rate(x[1m]))",
                              "targetPerReplica": 100}], **spec},
        "status": {},
    }


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()


@pytest.fixture
def source() -> FakeSource:
    return FakeSource()


@pytest.fixture
def runtime(clock: FrozenClock, cluster: FakeCluster, source: FakeSource) -> Iterator[Runtime]:
    fitter = Fitter(FittingSettings(), pool=inline_pool, fit=failing_fit)
    runtime = Runtime(settings=Settings(), prometheus=source,  # type: ignore[arg-type]
                      cluster=cluster, fitter=fitter, clock=clock)  # type: ignore[arg-type]
    yield runtime
    fitter.shutdown()


async def run_ticks(runtime: Runtime, clock: FrozenClock, policy: dict[str, Any],
                    count: int, every: float = 30.0) -> None:
    for _ in range(count):
        await tick(runtime, policy)
        clock.now += every
    assert runtime.events is not None
    await runtime.events.flush()


def ready(cluster: FakeCluster) -> dict[str, Any]:
    conditions = cluster.status_writes[-1]["conditions"]
    return next(c for c in conditions if c["type"] == "Ready")


async def test_an_unexpected_error_sets_internal_error_posts_a_warning_and_counts_a_failure(
        runtime: Runtime, clock: FrozenClock, cluster: FakeCluster, source: FakeSource) -> None:
    source.value = KeyError("result")  # a bug in an adapter, not a typed outage
    await run_ticks(runtime, clock, body(), 1)
    condition = ready(cluster)
    assert condition["status"] == "False" and condition["reason"] == "InternalError"
    assert "KeyError" in condition["message"]
    assert cluster.status_writes[-1]["breaker"]["failures"] == 1
    assert [(r, w) for r, _, w in cluster.events] == [("InternalError", True)]


async def test_repeated_internal_errors_open_the_circuit_breaker(
        runtime: Runtime, clock: FrozenClock, cluster: FakeCluster, source: FakeSource) -> None:
    source.value = TypeError("bad")
    policy = body(guards={"circuitBreaker": {"failureThreshold": 3}})
    await run_ticks(runtime, clock, policy, 3)
    assert cluster.status_writes[-1]["breaker"]["state"] == "Open"


async def test_a_failed_pod_listing_still_scales_on_the_reactive_floor_and_says_why(
        runtime: Runtime, clock: FrozenClock, cluster: FakeCluster, source: FakeSource) -> None:
    cluster.fail_pods = ClusterError("GET pods failed with 403: forbidden", 403)
    source.value = 550.0  # asks for 6 replicas (the default rate limit allows 2 -> 6)
    source.history_values = np.full(100, 700.0)
    await run_ticks(runtime, clock, body(), 1)
    assert cluster.replicas == 6
    trust = next(c for c in cluster.status_writes[-1]["conditions"]
                 if c["type"] == "ForecastTrusted")
    assert trust["reason"] == "ForecastUnavailable" and "pods could not be listed" in \
        trust["message"]
    assert ready(cluster)["reason"] == "Decided"


async def test_a_failed_fit_is_named_in_the_condition_not_called_a_cold_start_and_not_retried(
        runtime: Runtime, clock: FrozenClock, cluster: FakeCluster, source: FakeSource) -> None:
    source.history_values = np.full(100, 300.0)
    await run_ticks(runtime, clock, body(), 1)
    await settled(runtime.fitter, ("shop", "web", "rps"))
    await run_ticks(runtime, clock, body(), 3)
    trust = next(c for c in cluster.status_writes[-1]["conditions"]
                 if c["type"] == "ForecastTrusted")
    assert trust["reason"] == "ForecastUnavailable"
    assert "fitting failed: ValueError: the history holds no usable sample" in trust["message"]
    assert not runtime.fitter.may_fit(("shop", "web", "rps"), clock.now)  # backs off
    assert runtime.fitter.may_fit(("shop", "web", "rps"), clock.now + 301)


async def test_a_failed_scale_is_a_warning_the_status_keeps_the_old_count_and_the_breaker_counts_it(
        runtime: Runtime, clock: FrozenClock, cluster: FakeCluster, source: FakeSource) -> None:
    cluster.fail_scale = ClusterError("PATCH scale failed with 422: invalid", 422)
    source.value = 550.0  # asks for 6 replicas
    await run_ticks(runtime, clock, body(mode="Reactive"), 1)
    assert cluster.replicas == 2
    failed = [(m, w) for r, m, w in cluster.events if r == "ScaleFailed"]
    assert failed == [("could not scale Deployment/web from 2 to 6: PATCH scale failed with "
                       "422: invalid", True)]
    status = cluster.status_writes[-1]
    assert status["breaker"]["failures"] == 1
    assert not status["history"].get("scaleEvents")  # no scale that never happened
    cluster.fail_scale = None
    await run_ticks(runtime, clock, body(mode="Reactive"), 1)
    assert cluster.replicas == 6
    assert cluster.status_writes[-1]["breaker"]["failures"] == 0


def ramp(t: float) -> float:
    """A load rising by 60 per minute: one replica's worth every 100 s."""
    return 100.0 + (t - T0)


class Ramp(FakeSource):
    """Prometheus, as the ramp goes: its value now and its history up to now, on the grid
    the real source reads it on."""

    async def current(self, query: str, now: float, *,
                      tenant: str | None = None) -> float | MetricOutage:
        return ramp(now)

    async def history(self, key: tuple[str, str, str], query: str, *, step: float,
                      window: float, now: float, tenant: str | None = None) -> Series | None:
        first, points = history_grid(now, step, window)
        return Series(first, step, np.array([ramp(first + i * step) for i in range(points)]))


class Oracle:
    """A fitted forecaster that knows the ramp: its forecasts are exact."""

    def fit(self, series: Series) -> Oracle:
        return self

    def update(self, series: Series) -> Oracle:
        self.history_ = series
        return self

    def predict(self, horizon_steps: int, quantiles: Any = (0.5, 0.9)) -> Forecast:
        h = self.history_
        values = np.array([ramp(h.end + k * h.step) for k in range(horizon_steps)])
        return Forecast(h.end, h.step, values, {q: values for q in quantiles},
                        model="oracle")


async def test_a_trusted_forecast_scales_up_ahead_of_a_rising_load_and_says_so(
        clock: FrozenClock, cluster: FakeCluster) -> None:
    fitter = Fitter(FittingSettings(), pool=inline_pool, fit=lambda s, r: (Oracle(), 0.1))
    runtime = Runtime(settings=Settings(), prometheus=Ramp(),  # type: ignore[arg-type]
                      cluster=cluster, fitter=fitter, clock=clock)  # type: ignore[arg-type]
    policy = body(maxReplicas=50, forecast={"horizon": "3m"})
    try:
        await run_ticks(runtime, clock, policy, 1)
        first = cluster.status_writes[-1]["recommendation"]
        assert "forecast" not in first.get("limitedBy", []) and first["raw"] == first["reactive"]
        await settled(fitter, ("shop", "web", "rps"))
        await run_ticks(runtime, clock, policy, 20)  # ten minutes: forecasts scored live
    finally:
        fitter.shutdown()
    status = cluster.status_writes[-1]
    recommendation = status["recommendation"]
    assert status["forecast"]["trusted"] and status["forecast"]["model"] == "oracle"
    # three minutes ahead the ramp needs about 180 more load: two replicas more than now
    assert recommendation["predictive"] >= recommendation["reactive"] + 1
    assert recommendation["raw"] == recommendation["predictive"]
    assert recommendation["reason"].startswith("predictive: trusted forecasts (rps)")


async def test_a_steady_policy_writes_its_status_only_when_it_changes_or_every_ten_minutes(
        runtime: Runtime, clock: FrozenClock, cluster: FakeCluster) -> None:
    await run_ticks(runtime, clock, body(mode="Reactive"), 120)  # one hour at 30 s
    assert len(cluster.status_writes) == 1 + 3600 // cycle.STATUS_REFRESH_SECONDS


async def test_a_change_in_substance_is_written_at_once(
        runtime: Runtime, clock: FrozenClock, cluster: FakeCluster, source: FakeSource) -> None:
    await run_ticks(runtime, clock, body(mode="Reactive"), 2)
    writes = len(cluster.status_writes)
    source.value = MetricOutage(OutageKind.EMPTY, "no series")
    await run_ticks(runtime, clock, body(mode="Reactive"), 1)
    assert len(cluster.status_writes) == writes + 1
    available = next(c for c in cluster.status_writes[-1]["conditions"]
                     if c["type"] == "MetricsAvailable")
    assert available["status"] == "False"


async def test_a_failed_status_write_keeps_the_scale_events_for_the_rate_policies(
        runtime: Runtime, clock: FrozenClock, cluster: FakeCluster, source: FakeSource) -> None:
    # At most 1 pod up per minute: with the status unwritable the limit must still hold.
    policy = body(mode="Reactive", behavior={"scaleUp": {
        "stabilizationWindowSeconds": 0, "policies": [
            {"type": "Pods", "value": 1, "periodSeconds": 60}]}})
    cluster.fail_status = ClusterError("PATCH status failed with 400", 400)
    source.value = 2000.0  # asks for 20
    await run_ticks(runtime, clock, policy, 4, every=10)
    assert cluster.replicas == 3
    assert ("StatusWriteFailed", True) in [(r, w) for r, _, w in cluster.events]


async def test_a_slow_api_server_delays_events_not_the_tick(
        runtime: Runtime, clock: FrozenClock, cluster: FakeCluster, source: FakeSource) -> None:
    release = asyncio.Event()
    posted: list[str] = []

    async def slow_post(body: Mapping[str, Any], *, reason: str, message: str,
                        warning: bool = False) -> None:
        await release.wait()
        posted.append(reason)

    cluster.post_event = slow_post  # type: ignore[method-assign]
    source.value = 550.0
    await asyncio.wait_for(tick(runtime, body()), timeout=5)
    assert cluster.replicas == 6 and posted == []
    release.set()
    assert runtime.events is not None
    await runtime.events.flush()
    assert "Scaled" in posted


class RecordingSource(FakeSource):
    def __init__(self) -> None:
        super().__init__(40.0)
        self.asked: list[tuple[str, str | None]] = []

    async def current(self, query: str, now: float, *,
                      tenant: str | None = None) -> float | MetricOutage:
        self.asked.append((query, tenant))
        return await super().current(query, now)


async def test_a_query_naming_another_namespace_is_refused_and_never_sent(
        runtime: Runtime, clock: FrozenClock, cluster: FakeCluster) -> None:
    source = RecordingSource()
    runtime.prometheus = source  # type: ignore[assignment]
    spy = body(mode="Observe", metrics=[{"name": "spy", "targetPerReplica": 0.001,
                                          "query": 'sum(workload_load{namespace="bank"})'}])
    await run_ticks(runtime, clock, spy, 1)
    assert source.asked == []
    condition = ready(cluster)
    assert condition["reason"] == "QueryOutOfScope" and "'bank'" in condition["message"]
    assert [(r, w) for r, _, w in cluster.events] == [("QueryOutOfScope", True)]


async def test_the_namespace_matcher_is_added_and_sent_as_the_tenant(
        runtime: Runtime, clock: FrozenClock, cluster: FakeCluster) -> None:
    source = RecordingSource()
    runtime.prometheus = source  # type: ignore[assignment]
    await run_ticks(runtime, clock, body(), 1)
    assert source.asked == [('sum(rate(x{namespace="shop"}[1m]))', "shop")]


async def test_cluster_scope_sends_the_query_as_written(
        clock: FrozenClock, cluster: FakeCluster) -> None:
    source = RecordingSource()
    settings = Settings(prometheus=PrometheusSettings(query_scope=QueryScope.CLUSTER))
    fitter = Fitter(FittingSettings(), pool=inline_pool, fit=failing_fit)
    runtime = Runtime(settings=settings, prometheus=source,  # type: ignore[arg-type]
                      cluster=cluster, fitter=fitter, clock=clock)  # type: ignore[arg-type]
    try:
        await run_ticks(runtime, clock, body(), 1)
    finally:
        fitter.shutdown()
    assert source.asked == [("sum(rate(x[1m]))", "shop")]


@pytest.mark.parametrize("hostile", [
    {"forecast": {"history": "1d", "step": "1ms"}},
    {"interval": "1ms"},
    {"forecast": {"retrainInterval": "9999999999999999999999999w"}},
], ids=["a day at 1ms steps", "a 1ms interval", "an absurd duration"])
async def test_a_hostile_spec_past_the_crd_is_refused_and_nothing_is_read(
        runtime: Runtime, clock: FrozenClock, cluster: FakeCluster,
        hostile: dict[str, Any]) -> None:
    # An operator may meet a policy stored under an older CRD without today's rules.
    source = RecordingSource()
    runtime.prometheus = source  # type: ignore[assignment]
    policy = body(**hostile)
    await cycle.check_spec(runtime, policy, policy["spec"], 1, {})
    wait = await tick(runtime, policy)
    assert source.asked == [] and wait == cycle.INVALID_RECHECK_SECONDS
    assert ready(cluster)["reason"] == "InvalidSpec"


async def test_a_policy_past_the_memory_budget_is_refused_and_nothing_is_read(
        clock: FrozenClock, cluster: FakeCluster) -> None:
    source = RecordingSource()
    settings = Settings(fitting=FittingSettings(policy_memory_mib=0.5))
    fitter = Fitter(FittingSettings(), pool=inline_pool, fit=failing_fit)
    runtime = Runtime(settings=settings, prometheus=source,  # type: ignore[arg-type]
                      cluster=cluster, fitter=fitter, clock=clock)  # type: ignore[arg-type]
    two = [{"name": n, "query": "sum(rate(x[1m]))", "targetPerReplica": 1} for n in "ab"]
    try:
        await run_ticks(runtime, clock, body(metrics=two), 1)  # 2 x (10,080 points + a model)
        assert source.asked == []
        condition = ready(cluster)
        assert condition["reason"] == "MemoryBudgetExceeded" and "0.7 MiB" in \
            condition["message"]
        await run_ticks(runtime, clock, body(metrics=two[:1]), 1)  # one metric fits
        assert source.asked
    finally:
        fitter.shutdown()


def named(name: str, created: str, **spec: Any) -> dict[str, Any]:
    policy = body(**spec)
    policy["metadata"].update(name=name, uid=name, creationTimestamp=created)
    return policy


async def test_of_two_policies_on_one_target_only_the_older_acts_and_the_other_says_why(
        runtime: Runtime, clock: FrozenClock, cluster: FakeCluster, source: FakeSource) -> None:
    source.value = 550.0  # asks for 6 replicas
    older = named("first", "2026-01-01T00:00:00Z")
    newer = named("second", "2026-02-01T00:00:00Z", minReplicas=15)
    await tick(runtime, newer)  # the newer one alone: nothing to be ambiguous with yet
    await tick(runtime, older)
    cluster.status_writes.clear()
    cluster.replicas = 2
    await run_ticks(runtime, clock, newer, 1)
    condition = ready(cluster)
    assert condition["reason"] == "AmbiguousTarget" and "'first'" in condition["message"]
    assert cluster.replicas == 2  # the newer one (minReplicas 15) did not act
    assert ("AmbiguousTarget", True) in [(r, w) for r, _, w in cluster.events]
    await run_ticks(runtime, clock, older, 1)
    assert ready(cluster)["reason"] == "Decided" and cluster.replicas == 6
    runtime.forget("shop", "first")
    await run_ticks(runtime, clock, newer, 1)
    assert cluster.replicas == 15


async def test_policies_on_other_targets_versions_of_one_target_and_observers_are_told_apart(
        runtime: Runtime) -> None:
    apps = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    await tick(runtime, named("a", "2026-01-01T00:00:00Z", scaleTargetRef=apps))
    await tick(runtime, named("b", "2026-01-02T00:00:00Z",
                              scaleTargetRef={**apps, "name": "api"}))
    await tick(runtime, named("c", "2026-01-03T00:00:00Z",
                              scaleTargetRef={**apps, "apiVersion": "apps/v1beta2"}))
    await tick(runtime, named("d", "2025-01-01T00:00:00Z", scaleTargetRef=apps, mode="Observe"))
    assert runtime.rival("shop", "a") is None and runtime.rival("shop", "b") is None
    assert runtime.rival("shop", "c") == "a"
    assert runtime.rival("shop", "d") is None  # Observe scales nothing: no claim either way


WEB_HPA = ("apps/v1", "Deployment", "web", "web-hpa")


async def test_an_hpa_on_the_target_keeps_the_policy_from_acting_until_it_is_gone(
        runtime: Runtime, clock: FrozenClock, cluster: FakeCluster, source: FakeSource) -> None:
    source.value = 550.0  # asks for 6 replicas
    cluster.hpas = [WEB_HPA]
    await run_ticks(runtime, clock, body(), 1)
    condition = ready(cluster)
    assert condition["reason"] == "AmbiguousTarget" and "HorizontalPodAutoscaler 'web-hpa'" \
        in condition["message"]
    assert cluster.replicas == 2
    assert ("AmbiguousTarget", True) in [(r, w) for r, _, w in cluster.events]
    cluster.hpas = []
    await run_ticks(runtime, clock, body(), 1)  # 30 s later: listed again, the HPA is gone
    assert ready(cluster)["reason"] == "Decided" and cluster.replicas == 6


async def test_an_hpa_on_another_target_or_beside_an_observe_policy_stops_nothing(
        runtime: Runtime, clock: FrozenClock, cluster: FakeCluster, source: FakeSource) -> None:
    source.value = 550.0
    cluster.hpas = [("apps/v1", "Deployment", "api", "api-hpa"),
                    ("apps/v1", "StatefulSet", "web", "db-hpa")]
    await run_ticks(runtime, clock, body(), 1)
    assert ready(cluster)["reason"] == "Decided" and cluster.replicas == 6
    cluster.hpas = [WEB_HPA]
    observer = named("observer", "2026-01-01T00:00:00Z", mode="Observe")
    await run_ticks(runtime, clock, observer, 1)
    assert ready(cluster)["reason"] == "Decided"


async def test_the_hpas_of_a_namespace_are_listed_once_per_period_for_all_its_policies(
        runtime: Runtime, clock: FrozenClock, cluster: FakeCluster) -> None:
    policies = [named(f"p{i}", "2026-01-01T00:00:00Z",
                      scaleTargetRef={"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": f"web{i}"}) for i in range(5)]
    for policy in policies:
        await tick(runtime, policy)
    assert cluster.hpa_lists == 1
    clock.now += runtimes.AUTOSCALERS_RECHECK_SECONDS
    for policy in policies:
        await tick(runtime, policy)
    assert cluster.hpa_lists == 2


async def test_hpas_that_cannot_be_listed_do_not_stop_the_policy(
        runtime: Runtime, clock: FrozenClock, cluster: FakeCluster, source: FakeSource,
        caplog: pytest.LogCaptureFixture) -> None:
    source.value = 550.0
    cluster.fail_hpas = ClusterError("GET horizontalpodautoscalers failed with 403: forbidden",
                                     403)
    await run_ticks(runtime, clock, body(), 1)
    assert ready(cluster)["reason"] == "Decided" and cluster.replicas == 6
    assert "could not list the HorizontalPodAutoscalers of shop" in caplog.text
