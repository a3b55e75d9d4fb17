"""Specs shared by the model and CRD tests: a valid base and tables of invalid variations."""

from __future__ import annotations

import copy
from typing import Any

BASE: dict[str, Any] = {
    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
    "maxReplicas": 10,
    "metrics": [{"name": "rps", "query": "sum(rate(http_requests_total[2m]))",
                 "targetPerReplica": 50}],
}

DELETE = object()
"""Passed as the value to `with_`, removes the key."""


def with_(path: str, value: Any, base: dict[str, Any] = BASE) -> dict[str, Any]:
    """A copy of ``base`` with the dotted ``path`` set to ``value`` (missing dicts created;
    numbers index lists); the sentinel DELETE removes the key instead."""
    spec = copy.deepcopy(base)
    *parents, last = path.split(".")
    node: Any = spec
    for key in parents:
        node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
    if value is DELETE:
        node.pop(last, None)
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return spec


RPS = BASE["metrics"][0]

# (spec, the field the error must name): each breaks exactly one rule of the API.
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("min above max", with_("minReplicas", 11), "minReplicas"),
    ("negative min", with_("minReplicas", -1), "minReplicas"),
    ("zero max", with_("maxReplicas", 0), "maxReplicas"),
    ("max beyond int32", with_("maxReplicas", 2**31), "maxReplicas"),
    ("no max", with_("maxReplicas", DELETE), "maxReplicas"),
    ("no target", with_("scaleTargetRef", DELETE), "scaleTargetRef"),
    ("target without name", with_("scaleTargetRef.name", DELETE), "name"),
    ("target name not a DNS name", with_("scaleTargetRef.name", "Web_App"), "name"),
    ("target kind lower case", with_("scaleTargetRef.kind", "deployment"), "kind"),
    ("target apiVersion without version", with_("scaleTargetRef.apiVersion", "apps/"),
     "apiVersion"),
    ("unknown mode", with_("mode", "Predictive"), "mode"),
    ("no metrics", with_("metrics", DELETE), "metrics"),
    ("empty metrics", with_("metrics", []), "metrics"),
    ("too many metrics",
     with_("metrics", [{**RPS, "name": f"m{i}"} for i in range(17)]), "metrics"),
    ("duplicate metric names", with_("metrics", [RPS, {**RPS, "query": "sum(up)"}]), "metrics"),
    ("zero target", with_("metrics.0.targetPerReplica", 0), "targetPerReplica"),
    ("negative target", with_("metrics.0.targetPerReplica", -5), "targetPerReplica"),
    ("target as text", with_("metrics.0.targetPerReplica", "lots"), "targetPerReplica"),
    ("a metric with neither sizing", with_("metrics.0.targetPerReplica", DELETE),
     "targetPerReplica"),
    ("a utilisation target above 1",
     with_("metrics.0.utilization", {"query": "avg(cpu)", "target": 1.5}), "target"),
    ("a utilisation target of 0",
     with_("metrics.0.utilization", {"query": "avg(cpu)", "target": 0}), "target"),
    ("a utilisation without a query",
     with_("metrics.0.utilization", {"target": 0.7}), "query"),
    ("metric name upper case", with_("metrics.0.name", "RPS"), "name"),
    ("empty query", with_("metrics.0.query", ""), "query"),
    ("blank query", with_("metrics.0.query", "   "), "query"),
    ("metric without query", with_("metrics.0.query", DELETE), "query"),
    ("unknown metric field", with_("metrics.0.target", 5), "target"),
    ("zero interval", with_("interval", "0s"), "interval"),
    ("interval without unit", with_("interval", "30"), "interval"),
    ("interval in words", with_("interval", "soon"), "interval"),
    ("interval as a number", with_("interval", 30), "interval"),
    ("negative interval", with_("interval", "-30s"), "interval"),
    ("history not a duration", with_("forecast.history", "7days"), "history"),
    ("zero step", with_("forecast.step", "0m"), "step"),
    ("zero horizon", with_("forecast.horizon", "0s"), "horizon"),
    ("horizon in words", with_("forecast.horizon", "later"), "horizon"),
    ("zero retrain interval", with_("forecast.retrainInterval", "0h"), "retrainInterval"),
    ("quantile of 1", with_("forecast.quantile", 1.0), "quantile"),
    ("quantile of 0", with_("forecast.quantile", 0), "quantile"),
    ("quantile as percent", with_("forecast.quantile", 90), "quantile"),
    ("no models", with_("forecast.models", []), "models"),
    ("auto with a model", with_("forecast.models", ["auto", "holt_winters"]), "models"),
    ("model name upper case", with_("forecast.models", ["Holt"]), "models"),
    ("models as a string", with_("forecast.models", "holt_winters"), "models"),
    ("repeated model names", with_("forecast.models", ["naive", "naive"]), "models"),
    ("unknown model", with_("forecast.models", ["prophet"]), "models"),
    ("tolerance of 1", with_("behavior.tolerance", 1.0), "tolerance"),
    ("negative tolerance", with_("behavior.tolerance", -0.1), "tolerance"),
    ("stabilization beyond an hour",
     with_("behavior.scaleDown.stabilizationWindowSeconds", 3601), "stabilizationWindowSeconds"),
    ("negative stabilization",
     with_("behavior.scaleUp.stabilizationWindowSeconds", -1), "stabilizationWindowSeconds"),
    ("unknown select policy", with_("behavior.scaleUp.selectPolicy", "Maximum"), "selectPolicy"),
    ("empty policies", with_("behavior.scaleDown.policies", []), "policies"),
    ("unknown policy type",
     with_("behavior.scaleUp.policies", [{"type": "Replicas", "value": 1, "periodSeconds": 15}]),
     "type"),
    ("zero policy value",
     with_("behavior.scaleUp.policies", [{"type": "Pods", "value": 0, "periodSeconds": 15}]),
     "value"),
    ("zero policy period",
     with_("behavior.scaleUp.policies", [{"type": "Pods", "value": 1, "periodSeconds": 0}]),
     "periodSeconds"),
    ("policy period beyond 30 minutes",
     with_("behavior.scaleDown.policies",
           [{"type": "Percent", "value": 10, "periodSeconds": 1801}]), "periodSeconds"),
    ("unknown outage policy", with_("guards.metricsOutage", "Zero"), "metricsOutage"),
    ("zero failure threshold", with_("guards.circuitBreaker.failureThreshold", 0),
     "failureThreshold"),
    ("zero backoff", with_("guards.circuitBreaker.minBackoff", "0s"), "minBackoff"),
    ("zero error ratio", with_("guards.forecastTrust.maxErrorRatio", 0), "maxErrorRatio"),
    ("misspelt field", {**BASE, "minReplica": 2}, "minReplica"),
    ("misspelt nested field", with_("guards.metricOutage", "Hold"), "metricOutage"),
]

# Rejected by the models only: JSON cannot carry inf or NaN to the API server, and comparing
# two durations would need Kubernetes-only CEL extensions.
INVALID_MODEL_ONLY: list[tuple[str, dict[str, Any], str]] = [
    ("infinite target", with_("metrics.0.targetPerReplica", float("inf")), "targetPerReplica"),
    ("NaN target", with_("metrics.0.targetPerReplica", float("nan")), "targetPerReplica"),
    ("history no longer than the step",
     with_("forecast", {"history": "1h", "step": "60m"}), "forecast.history"),
    ("min backoff above max backoff",
     with_("guards.circuitBreaker", {"minBackoff": "1h", "maxBackoff": "10m"}),
     "circuitBreaker.minBackoff"),
]
