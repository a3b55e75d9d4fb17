"""Hypothesis strategies for the engine tests: random policies the schema accepts."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from foreseer.operator.specs import ScalingPolicySpec

NAMES = ("rps", "queue", "cpu")

MAX_INT32 = 2**31 - 1
# Mostly everyday values, sometimes the extremes the schema still accepts.
positive = st.one_of(st.floats(1e-3, 1e6),
                     st.floats(min_value=0, exclude_min=True, allow_infinity=False))
policies = st.lists(st.fixed_dictionaries({
    "type": st.sampled_from(["Pods", "Percent"]),
    "value": st.one_of(st.integers(1, 500), st.integers(1, MAX_INT32)),
    "periodSeconds": st.one_of(st.integers(1, 300), st.integers(1, 1800)),
}), min_size=1, max_size=3)
rules = st.fixed_dictionaries({}, optional={
    "stabilizationWindowSeconds": st.one_of(st.integers(0, 600), st.integers(0, 3600)),
    "selectPolicy": st.sampled_from(["Max", "Min", "Disabled"]),
    "policies": policies,
})


@st.composite
def specs(draw: st.DrawFn) -> ScalingPolicySpec:
    low = draw(st.one_of(st.integers(0, 20), st.integers(0, MAX_INT32)))
    high = draw(st.one_of(st.integers(max(low, 1), low + 60),
                          st.integers(max(low, 1), MAX_INT32)).filter(lambda n: n <= MAX_INT32))
    count = draw(st.integers(1, 3))
    backoff = draw(st.integers(1, 120))
    body: dict[str, Any] = {
        "scaleTargetRef": {"name": "web"},
        "minReplicas": low,
        "maxReplicas": high,
        "mode": draw(st.sampled_from(["Auto", "Reactive", "Observe"])),
        "metrics": [{"name": n, "query": f"sum({n})",
                     "targetPerReplica": draw(positive)} for n in NAMES[:count]],
        "behavior": draw(st.fixed_dictionaries(
            {"tolerance": st.floats(0, 1, exclude_max=True)},
            optional={"scaleUp": rules, "scaleDown": rules})),
        "guards": {
            "metricsOutage": draw(st.sampled_from(["FreezeScaleDown", "Hold"])),
            "circuitBreaker": {"failureThreshold": draw(st.integers(1, 1000)),
                               "minBackoff": f"{backoff}s",
                               "maxBackoff": f"{backoff * draw(st.integers(1, 20))}s"},
            "forecastTrust": {"maxErrorRatio": draw(positive)},
        },
    }
    return ScalingPolicySpec.model_validate(body)
