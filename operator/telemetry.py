"""The operator's own metrics on /metrics, and /healthz, served from the operator's event loop.

Every series is labelled with the policy's namespace and name, and removed when
the policy is deleted, so a long-running operator does not leak series.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from foreseer.operator.authn import MetricsGuard

POLICY = ("namespace", "policy")
BREAKER_STATES = ["Closed", "HalfOpen", "Open"]
# Every bucket is a series per policy (at 1000 policies, /metrics is tens of thousands of
# lines), so each histogram has buckets only where its values fall: decide() should take
# well under 5 ms; a tick includes queries and API calls, within its interval.
DECIDE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
TICK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# The *_created series (a start time per histogram and counter child) would add a series per
# policy and metric that no dashboard or rule uses.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus-client


class Telemetry:
    """The operator's metrics in their own registry (so tests can run several operators)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.forecast = Gauge("foreseer_forecast_value", "Forecast load at the horizon and "
                              "quantile, per metric.", [*POLICY, "metric"], registry=r)
        self.observed = Gauge("foreseer_observed_value", "Latest load the metric's query "
                              "returned, per metric (forecast against actual on dashboards).",
                              [*POLICY, "metric"], registry=r)
        self.forecast_error = Gauge("foreseer_forecast_error_mase", "Live forecast error (MASE "
                                    "against actuals), per metric.", [*POLICY, "metric"],
                                    registry=r)
        self.reactive = Gauge("foreseer_reactive_replicas", "Replicas the current load needs.",
                              POLICY, registry=r)
        self.predictive = Gauge("foreseer_predictive_replicas", "Replicas the forecast needs.",
                                POLICY, registry=r)
        self.final = Gauge("foreseer_final_replicas", "Replicas after the guards.", POLICY,
                           registry=r)
        self.current = Gauge("foreseer_current_replicas", "Replicas of the target.", POLICY,
                             registry=r)
        self.lead_time = Gauge("foreseer_lead_time_seconds", "Measured time for a new replica to "
                               "become ready.", POLICY, registry=r)
        self.breaker = Enum("foreseer_breaker_state", "Circuit breaker state.", POLICY,
                            states=BREAKER_STATES, registry=r)
        self.decide_seconds = Histogram("foreseer_decision_seconds", "CPU time of decide() (the "
                                        "thread's: GIL waits and busy neighbours excluded).",
                                        POLICY, buckets=DECIDE_BUCKETS, registry=r)
        self.tick_seconds = Histogram("foreseer_tick_seconds", "Latency of a whole tick: "
                                      "queries, decision and writes.", POLICY,
                                      buckets=TICK_BUCKETS, registry=r)
        self.query_errors = Counter("foreseer_prometheus_query_errors", "Failed or unusable "
                                    "Prometheus queries, by kind (error, empty, nan, stale).",
                                    [*POLICY, "metric", "kind"], registry=r)
        self.scales = Counter("foreseer_scale_actions", "Patches of a target's /scale.",
                              [*POLICY, "direction"], registry=r)
        self.fit_seconds = Histogram("foreseer_fit_seconds", "Wall time to fit one metric's "
                                     "model.", buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
                                     registry=r)
        self.invalid_samples = Counter(
            "foreseer_invalid_samples", "History samples that were not a load (NaN, infinite or "
            "negative) and were read as gaps.", (*POLICY, "metric"), registry=self.registry)
        self.status_writes = Counter("foreseer_status_writes", "Status patches sent to the API "
                                     "server (change-only, with a periodic refresh).",
                                     registry=self.registry)
        self.events = Counter("foreseer_events", "Events posted, by type (Normal, Warning).",
                              ("type",), registry=self.registry)
        self.events_dropped = Counter("foreseer_events_dropped", "Events dropped because the "
                                      "posting queue was full (the API server is too slow).",
                                      registry=self.registry)
        self.cycle_errors = Counter("foreseer_cycle_errors", "Control cycles that failed with "
                                    "an unexpected error (reported as Ready=False InternalError).",
                                    POLICY, registry=self.registry)
        self.capacity = Gauge("foreseer_capacity_per_replica", "Learned load one replica "
                              "serves at the utilisation target, per metric (while trusted).",
                              [*POLICY, "metric"], registry=r)
        self.capacity_changes = Counter(
            "foreseer_capacity_changes", "Learned capacities that live utilisation "
            "contradicted (CapacityChanged), per metric.", [*POLICY, "metric"], registry=r)
        self._per_policy = (self.reactive, self.predictive, self.final, self.current,
                            self.lead_time, self.breaker, self.decide_seconds, self.tick_seconds,
                            self.cycle_errors)
        self._per_metric = (self.forecast, self.forecast_error, self.observed,
                            self.invalid_samples, self.capacity, self.capacity_changes)
        self._metric_names: dict[tuple[str, str], set[str]] = {}
        self._errors: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self._directions: dict[tuple[str, str], set[str]] = {}

    def observe_metric(self, namespace: str, policy: str, metric: str,
                       forecast: float | None, error: float | None) -> None:
        """Record one metric's forecast and live error; None leaves the last value out."""
        self._metric_names.setdefault((namespace, policy), set()).add(metric)
        self._set_or_remove(((self.forecast, forecast), (self.forecast_error, error)),
                            namespace, policy, metric)

    def observe_capacity(self, namespace: str, policy: str, metric: str,
                         per_replica: float | None, changed: bool) -> None:
        """A metric's trusted capacity (None removes it), and a counted drift if ``changed``."""
        self._metric_names.setdefault((namespace, policy), set()).add(metric)
        self._set_or_remove(((self.capacity, per_replica),), namespace, policy, metric)
        if changed:
            self.capacity_changes.labels(namespace, policy, metric).inc()

    def observe_load(self, namespace: str, policy: str, metric: str,
                     value: float | None) -> None:
        """Record one metric's current value; None (an outage) removes it, so a missing
        metric is never exported as zero or as a stale number."""
        self._metric_names.setdefault((namespace, policy), set()).add(metric)
        self._set_or_remove(((self.observed, value),), namespace, policy, metric)

    def _set_or_remove(self, pairs: tuple[tuple[Gauge, float | None], ...], namespace: str,
                       policy: str, metric: str) -> None:
        for gauge, value in pairs:
            if value is not None:
                gauge.labels(namespace, policy, metric).set(value)
            else:
                _remove(gauge, namespace, policy, metric)

    def observe_decision(self, namespace: str, policy: str, current: int,
                         replicas: dict[Gauge, int | None], breaker: str) -> None:
        """Record a decision's replica counts (a None count is removed, not left stale) and
        the breaker state."""
        self.current.labels(namespace, policy).set(current)
        for gauge, value in replicas.items():
            if value is not None:
                gauge.labels(namespace, policy).set(value)
            else:
                _remove(gauge, namespace, policy)
        self.breaker.labels(namespace, policy).state(breaker)

    def count_query_error(self, namespace: str, policy: str, metric: str, kind: str) -> None:
        self._errors.setdefault((namespace, policy), set()).add((metric, kind))
        self.query_errors.labels(namespace, policy, metric, kind).inc()

    def count_invalid_samples(self, key: tuple[str, str, str], count: int) -> None:
        namespace, policy, metric = key
        self._metric_names.setdefault((namespace, policy), set()).add(metric)
        self.invalid_samples.labels(namespace, policy, metric).inc(count)

    def count_scale(self, namespace: str, policy: str, direction: str) -> None:
        self._directions.setdefault((namespace, policy), set()).add(direction)
        self.scales.labels(namespace, policy, direction).inc()

    @contextmanager
    def timed(self, histogram: Histogram, namespace: str, policy: str,
              clock: Callable[[], float] = time.perf_counter) -> Iterator[None]:
        """Observe how long the block took on ``clock`` (``time.thread_time`` for CPU time)."""
        started = clock()
        try:
            yield
        finally:
            histogram.labels(namespace, policy).observe(clock() - started)

    def forget(self, namespace: str, policy: str) -> None:
        """Drop every series of a deleted policy (of a policy never seen: nothing)."""
        key = (namespace, policy)
        for metric in self._per_policy:
            _remove(metric, namespace, policy)
        for metric_name in self._metric_names.pop(key, set()):
            for gauge in self._per_metric:
                _remove(gauge, namespace, policy, metric_name)
        for metric_name, kind in self._errors.pop(key, set()):
            _remove(self.query_errors, namespace, policy, metric_name, kind)
        for direction in self._directions.pop(key, set()):
            _remove(self.scales, namespace, policy, direction)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _remove(metric: Gauge | Histogram | Enum | Counter, *labels: str) -> None:
    """Remove the series with these label values, if the metric has it."""
    # remove() of a child that was never created is a no-op in current prometheus-client and a
    # KeyError in older releases (the lower bound is 0.20); either way there is nothing to drop.
    with contextlib.suppress(KeyError):
        metric.remove(*labels)


@dataclass
class Health:
    """What /healthz reports: ready once the operator started, and the last tick it finished."""

    ready: bool = False
    """Kopf has started and the handlers are registered."""
    last_tick: float | None = field(default=None)
    """Wall time of the last completed tick of any policy."""
    policies: int = 0
    """Policies with a running loop."""


async def serve(telemetry: Telemetry, health: Health, host: str, port: int,
                guard: MetricsGuard | None = None) -> web.AppRunner:
    """Start /metrics and /healthz; returns the runner (``await runner.cleanup()`` stops it).

    With a `guard`, /metrics answers only requests it lets through (401, 403 or 503
    otherwise); /healthz is always open. /healthz answers from the operator's own event
    loop, so an answer also proves the loop is not blocked.
    """

    async def metrics(request: web.Request) -> web.Response:
        if guard is not None:
            verdict = await guard.check(request.headers.get("Authorization"))
            if not verdict.allowed:
                # RFC 6750: a 401 names the scheme the client should use.
                headers = {"WWW-Authenticate": "Bearer"} if verdict.status == 401 else {}
                return web.Response(status=verdict.status, text=verdict.message + "\n",
                                    headers=headers)
        # Rendering takes about 2 s of CPU at 1000 policies: in a thread, not on the loop.
        body = await asyncio.get_running_loop().run_in_executor(None, telemetry.exposition)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        body = {"ready": health.ready, "policies": health.policies, "lastTick": health.last_tick}
        return web.json_response(body, status=200 if health.ready else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port actually bound (when 0 was asked for)."""
    for address in runner.addresses:
        return int(address[1])
    raise RuntimeError("the metrics server is not listening")
