"""What a policy asks of the operator, from its spec alone (pure): the spec parsed or why not,
the queries it sends and their scope, the memory it makes the operator hold, the target it
claims and the phase its loop runs at."""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from foreseer.operator.deciding import MetricOutage, OutageKind
from foreseer.operator.durations import parse_duration
from foreseer.operator.forecasting import grid_points
from foreseer.operator.scoping import OutOfScope, QueryScope, Unparsable, scoped
from foreseer.operator.specs import MetricSpec, ScaleTargetRef, ScalingPolicySpec


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


def target_key(api_version: str, kind: str, name: str) -> tuple[str, str, str]:
    """What names one scalable object in a namespace, (API group, kind, name): the version
    is only a view of it."""
    return api_version.rpartition("/")[0], kind, name


# What one metric makes the operator hold: its history grid (a float64 per point) and its
# fitted model (a pickled AutoForecaster measured at 193-244 KB for 2,000-11,000 points).
HISTORY_BYTES_PER_POINT = 8
MODEL_BYTES = 256 * 1024


def footprint_bytes(spec: ScalingPolicySpec) -> float:
    """The memory a policy makes the operator hold, estimated from its spec."""
    points = grid_points(parse_duration(spec.forecast.history), parse_duration(spec.forecast.step))
    histories = sum(3 if m.utilization else 1 for m in spec.metrics)
    return histories * points * HISTORY_BYTES_PER_POINT + len(spec.metrics) * MODEL_BYTES


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


def scoped_queries(spec: ScalingPolicySpec, namespace: str,
                   scope: QueryScope) -> dict[str, str | MetricOutage]:
    """Each query as it is sent (`policy_queries`): restricted to the policy's namespace
    unless ``scope`` is CLUSTER (``--query-scope cluster``); an ERROR outage for a query
    that is not PromQL (nothing is sent for it). Raises OutOfScope, naming the metric, for a query
    that would read another namespace's series."""
    queries = policy_queries(spec, namespace)
    if scope is QueryScope.CLUSTER:
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
