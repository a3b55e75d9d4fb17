"""The guards: an ordered chain of small post-processors over the raw recommendation.

Like the VPA's recommendation post-processors, each guard takes the value the previous
one produced and returns a possibly changed value with a note; `apply_guards` records
the name of every guard that changed the value, in order, for status.limitedBy.

The stabilization windows and rate policies follow the HPA v2 controller
(k8s.io/kubernetes pkg/controller/podautoscaler/horizontal.go) line by line,
including its float arithmetic, so that with forecasts disabled foreseer scales
exactly as the HPA would.

Pure: no clock (``now`` is in the context), no I/O.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from foreseer.operator.durations import parse_duration
from foreseer.operator.specs import (
    CircuitBreakerSpec,
    MetricsOutagePolicy,
    PolicyType,
    ScalingPolicyRule,
    ScalingPolicySpec,
    ScalingRules,
    SelectPolicy,
)
from foreseer.operator.statuses import BreakerState, BreakerStatus, to_time

Timed = tuple[float, int]
"""(Unix seconds, replicas): a recommendation, or a scale event's signed change."""


@dataclass(frozen=True)
class GuardContext:
    """Everything the guards read, built once per decision by `deciding.decide`."""

    spec: ScalingPolicySpec
    """The policy."""
    now: float
    """Unix seconds of this decision."""
    current: int
    """Replicas the target has now."""
    floor: int | None
    """The reactive recommendation (HPA formula), None when no metric is available."""
    lowering_horizon: float | None
    """Seconds of forecast lead time when a trusted forecast pulls the value below the
    reactive floor; None when the forecast does not lower it."""
    missing: tuple[str, ...]
    """Names of the metrics in an outage this cycle."""
    breaker_holds: bool
    """Whether the circuit breaker is open for this cycle."""
    recommendations: tuple[Timed, ...]
    """Earlier unstabilized recommendations (without this cycle's)."""
    events: tuple[Timed, ...]
    """Earlier replica changes the operator made: positive up, negative down."""
    up: ScalingRules
    """Scale-up rules with the HPA defaults filled in."""
    down: ScalingRules
    """Scale-down rules with the HPA defaults filled in."""


Guard = Callable[[int, GuardContext], tuple[int, str]]
"""A post-processor: (value, context) -> (new value, why it changed)."""


def circuit_breaker(value: int, ctx: GuardContext) -> tuple[int, str]:
    """While the breaker is open, nothing moves."""
    if ctx.breaker_holds and value != ctx.current:
        return ctx.current, f"circuit breaker is open; holding {ctx.current}"
    return value, ""


def _window_bound(ctx: GuardContext, seconds: int | None, pick: Callable[..., int],
                  value: int) -> int:
    # HPA: recommendations strictly after now - window count, plus the current one.
    cutoff = ctx.now - (seconds or 0)
    return pick([value, *(r for t, r in ctx.recommendations if t > cutoff)])


def stabilization(value: int, ctx: GuardContext) -> tuple[int, str]:
    """HPA stabilizeRecommendationWithBehaviors: scale up no further than the lowest,
    and down no further than the highest, recommendation within each window."""
    up = _window_bound(ctx, ctx.up.stabilization_window_seconds, min, value)
    down = _window_bound(ctx, ctx.down.stabilization_window_seconds, max, value)
    stabilized = min(max(ctx.current, up), down)
    if stabilized == value:
        return value, ""
    if value > ctx.current:
        return stabilized, (f"lowest recommendation in the last "
                            f"{ctx.up.stabilization_window_seconds}s scale-up window is {up}")
    return stabilized, (f"highest recommendation in the last "
                        f"{ctx.down.stabilization_window_seconds}s scale-down window is {down}")


def cooldown(value: int, ctx: GuardContext) -> tuple[int, str]:
    """A forecast may pull capacity below the reactive floor only once the last scale-up
    is older than the forecast horizon: capacity added for a predicted peak stays until
    the peak is due, so predictive scaling does not flap."""
    if ctx.lowering_horizon is None or ctx.floor is None:
        return value, ""
    hold = min(ctx.current, ctx.floor)
    if value >= hold:
        return value, ""
    recent_up = [t for t, change in ctx.events
                 if change > 0 and t > ctx.now - ctx.lowering_horizon]
    if not recent_up:
        return value, ""
    return hold, (f"last scale-up {ctx.now - max(recent_up):.0f}s ago is within the "
                  f"{ctx.lowering_horizon:.0f}s forecast horizon")


def metrics_outage(value: int, ctx: GuardContext) -> tuple[int, str]:
    """A missing metric is never zero: FreezeScaleDown blocks scale-down (scale-up on the
    healthy metrics still works, as the HPA does); Hold blocks every change."""
    if not ctx.missing:
        return value, ""
    missing = ", ".join(ctx.missing)
    if ctx.spec.guards.metrics_outage is MetricsOutagePolicy.HOLD:
        if value != ctx.current:
            return ctx.current, f"metrics missing ({missing}); Hold keeps {ctx.current}"
    elif value < ctx.current:
        return ctx.current, f"metrics missing ({missing}); no scale-down until they return"
    return value, ""


def _period_start(current: int, events: Sequence[Timed], period: int, now: float) -> int:
    """HPA getReplicasChangePerPeriod, both directions: the replicas when the period began."""
    cutoff = now - period
    return current - sum(change for t, change in events if t > cutoff)


def _proposal(start: int, policy: ScalingPolicyRule, up: bool) -> int:
    if policy.type is PolicyType.PODS:
        return start + policy.value if up else start - policy.value
    if up:
        # Rounded up, or a small deployment could never grow (HPA comment).
        return math.ceil(float(start) * (1 + float(policy.value) / 100))
    # Go's int32() truncates toward zero, as Python's int() does.
    return int(float(start) * (1 - float(policy.value) / 100))


def rate_limit(current: int, events: Sequence[Timed], rules: ScalingRules, now: float,
               up: bool) -> int:
    """The furthest the policies let replicas move from ``current`` in one direction: HPA
    calculateScaleUpLimitWithScalingRules (``up``) and calculateScaleDownLimitWithBehaviors.
    """
    if rules.select_policy is SelectPolicy.DISABLED:
        return current
    proposals = [_proposal(_period_start(current, events, policy.period_seconds, now),
                           policy, up) for policy in rules.policies or ()]
    # Max picks the policy that allows the biggest change: the most replicas going up,
    # the fewest going down; Min the smallest change.
    biggest = rules.select_policy is SelectPolicy.MAX
    return (max if biggest == up else min)(proposals, default=current)


def rate_policy(value: int, ctx: GuardContext) -> tuple[int, str]:
    """HPA convertDesiredReplicasWithBehaviorRate without the bounds (the next guard)."""
    if value > ctx.current:
        limit = max(rate_limit(ctx.current, ctx.events, ctx.up, ctx.now, up=True), ctx.current)
        if ctx.current == 0 and ctx.up.select_policy is not SelectPolicy.DISABLED:
            # Activation (as KEDA does): a percentage of zero is zero, so with Percent
            # policies alone a target at zero replicas could never come back.
            limit = max(limit, 1)
        if value > limit:
            return limit, f"scale-up policies allow at most {limit} replicas now"
    elif value < ctx.current:
        limit = min(rate_limit(ctx.current, ctx.events, ctx.down, ctx.now, up=False),
                    ctx.current)
        if value < limit:
            return limit, f"scale-down policies allow no fewer than {limit} replicas now"
    return value, ""


def bounds(value: int, ctx: GuardContext) -> tuple[int, str]:
    """minReplicas <= replicas <= maxReplicas, always."""
    low, high = ctx.spec.min_replicas, ctx.spec.max_replicas
    if value > high:
        return high, f"maxReplicas is {high}"
    if value < low:
        return low, f"minReplicas is {low}"
    return value, ""


CHAIN: tuple[tuple[str, Guard], ...] = (
    ("circuitBreaker", circuit_breaker),
    ("stabilization", stabilization),
    ("cooldown", cooldown),
    ("metricsOutage", metrics_outage),
    ("ratePolicy", rate_policy),
    ("bounds", bounds),
)
"""The guards in the order they run; bounds come last so they always hold."""


@dataclass(frozen=True)
class Guarded:
    """The outcome of the chain."""

    value: int
    """The final replica count."""
    limited_by: tuple[str, ...]
    """Names of the guards that changed the value, in order."""
    notes: tuple[str, ...]
    """Why each of them did, aligned with limited_by."""


def apply_guards(value: int, ctx: GuardContext,
                 chain: Sequence[tuple[str, Guard]] = CHAIN) -> Guarded:
    """Run ``value`` through ``chain``, recording each guard that changed it."""
    limited_by: list[str] = []
    notes: list[str] = []
    for name, guard in chain:
        guarded, note = guard(value, ctx)
        if guarded != value:
            limited_by.append(name)
            notes.append(note)
            value = guarded
    return Guarded(value, tuple(limited_by), tuple(notes))


# ---- the circuit breaker's state machine -------------------------------------------

_MAX_DOUBLINGS = 62  # 2**62 times any backoff is far beyond maxBackoff; avoids overflow
_LONGEST_BACKOFF = 366 * 86400.0  # a longer maxBackoff is accepted but a year is plenty


def backoff(spec: CircuitBreakerSpec, failures: int, seed: str) -> float:
    """Seconds to stay open after ``failures`` consecutive failures.

    Exponential from minBackoff, capped at maxBackoff, with "equal jitter" (the upper
    half of the interval, never below minBackoff) drawn from a hash of ``seed`` and
    ``failures``: policies that fail together spread their retries, yet the same
    inputs always give the same backoff.
    """
    low, high = parse_duration(spec.min_backoff), parse_duration(spec.max_backoff)
    doublings = min(max(failures - spec.failure_threshold, 0), _MAX_DOUBLINGS)
    low, high = min(low, _LONGEST_BACKOFF), min(high, _LONGEST_BACKOFF)
    ceiling = min(high, low * 2.0**doublings)
    digest = hashlib.sha256(f"{seed}:{failures}".encode()).digest()
    unit = int.from_bytes(digest[:8], "big") / 2.0**64
    return max(low, ceiling * (0.5 + 0.5 * unit))


def advance_breaker(breaker: BreakerStatus, failed: bool, spec: CircuitBreakerSpec,
                    now: float, seed: str) -> tuple[BreakerStatus, bool]:
    """The breaker after this cycle, and whether it holds the replicas this cycle.

    Closed counts consecutive failed cycles and opens at failureThreshold. Open holds
    until openUntil; failures seen meanwhile are not counted, so the backoff does not
    depend on how often the operator calls. After openUntil one cycle goes through as
    the probe (HalfOpen); the next cycle closes the breaker if it went well, and
    re-opens it with a longer backoff if not.
    """
    if breaker.state is BreakerState.OPEN:
        until = breaker.open_until.timestamp() if breaker.open_until else now
        if now < until:
            return breaker, True
        if not failed:
            return BreakerStatus(state=BreakerState.HALF_OPEN, failures=breaker.failures,
                                 open_until=None), False
    if not failed:
        return BreakerStatus(), False
    failures = breaker.failures + 1
    if breaker.state is BreakerState.CLOSED and failures < spec.failure_threshold:
        return BreakerStatus(failures=failures), False
    reopen = to_time(now) + timedelta(seconds=backoff(spec, failures, seed))
    return BreakerStatus(state=BreakerState.OPEN, failures=failures, open_until=reopen), True
