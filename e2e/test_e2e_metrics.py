"""The operator's own metrics, read the way Prometheus would (through the chart's Service when
the operator runs in the cluster): the series the Grafana dashboard draws, per policy."""

from __future__ import annotations

import math

import pytest
from clusters import eventually
from metering import Level
from policies import TARGET_PER_REPLICA, policy
from prometheus_client.parser import text_string_to_metric_families
from stacks import HIGH, Launch, Scenario

pytestmark = pytest.mark.e2e


def samples(text: str, namespace: str, name: str) -> dict[str, float]:
    """Sample name (with the metric or state label) -> value, for one policy."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if (labels.get("namespace"), labels.get("policy")) != (namespace, name):
                continue
            detail = labels.get("metric") or labels.get("foreseer_breaker_state") or ""
            out[f"{sample.name}{{{detail}}}" if detail else sample.name] = sample.value
    return out


def test_the_operator_exports_what_the_dashboard_draws(launch: Launch) -> None:
    stack = launch(Scenario("observe", 2, Level(HIGH)))
    namespace, name = stack.namespace, "observe"
    stack.cluster.apply(policy(namespace, name, mode="Observe"))

    def exported() -> dict[str, float]:
        found = samples(stack.operator.metrics(stack.cluster), namespace, name)
        return found if "foreseer_final_replicas" in found else {}

    found = eventually(exported, 120, f"the metrics of policy {name}")
    assert found["foreseer_observed_value{load}"] == HIGH
    assert found["foreseer_reactive_replicas"] == math.ceil(HIGH / TARGET_PER_REPLICA)
    assert found["foreseer_current_replicas"] == stack.cluster.replicas(namespace, name)
    assert found["foreseer_breaker_state{Closed}"] == 1
