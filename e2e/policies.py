"""ScalingPolicy manifests for the scenarios: each scales its own Deployment on its own load."""

from __future__ import annotations

from typing import Any

from foreseer.operator.specs import GROUP, KIND, VERSION

TARGET_PER_REPLICA = 20.0
"""Load one replica carries in every scenario: 200 needs 10 replicas, 40 needs 2."""


def policy(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    """A policy scaling Deployment `name` on the exporter's `workload_load` for it; ``spec``
    adds or overrides camelCase spec fields."""
    query = f'workload_load{{app="{name}",namespace="{namespace}"}}'
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 2, "maxReplicas": 12, "interval": "5s",
            "metrics": [{"name": "load", "query": query,
                         "targetPerReplica": TARGET_PER_REPLICA}],
            **spec,
        },
    }
