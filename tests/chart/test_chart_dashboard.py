"""The Grafana dashboard: every query is valid PromQL (checked by the real promtool) over
metrics the operator really exports, and the panels the issue asks for are there."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart.rendering import CHART
from prometheus_client.metrics_core import Metric

from foreseer.operator.telemetry import Telemetry

DASHBOARD = CHART / "dashboards" / "foreseer.json"
# The sample names each metric type exposes (prometheus-client's exposition format).
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
            "gauge": ("",), "stateset": ("",)}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def queries() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]


def exported_sample_names() -> set[str]:
    families: list[Metric] = list(Telemetry().registry.collect())
    return {family.name + suffix for family in families for suffix in SUFFIXES[family.type]}


def test_every_query_reads_only_metrics_the_operator_exports() -> None:
    exported = exported_sample_names()
    referenced = {name for expr in queries() for name in re.findall(r"\bforeseer_\w+", expr)}
    assert referenced
    assert referenced <= exported


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is missing: `make prometheus` installs Debian's prometheus")
    # Grafana substitutes the template variables before Prometheus sees a query.
    rules = [{"record": f"dashboard:query_{i}", "expr": expr.replace("$namespace", ".*")
              .replace("$policy", ".*")} for i, expr in enumerate(queries())]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(("topic", "metrics"), [
    ("forecast against actual load", {"foreseer_forecast_value", "foreseer_observed_value"}),
    ("reactive, predictive and final replicas", {"foreseer_reactive_replicas",
                                                 "foreseer_predictive_replicas",
                                                 "foreseer_final_replicas"}),
    ("breaker state", {"foreseer_breaker_state"}),
    ("forecast error", {"foreseer_forecast_error_mase"}),
])
def test_one_panel_shows(topic: str, metrics: set[str]) -> None:
    shown = [{name for t in panel["targets"] for name in re.findall(r"\bforeseer_\w+", t["expr"])}
             for panel in dashboard()["panels"]]
    assert any(metrics <= names for names in shown), topic


def test_panels_filter_by_the_namespace_and_policy_variables() -> None:
    variables = {v["name"] for v in dashboard()["templating"]["list"]}
    assert {"datasource", "namespace", "policy"} <= variables
    for expr in queries():
        assert 'namespace=~"$namespace"' in expr and 'policy=~"$policy"' in expr


def test_panels_do_not_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for panel in dashboard()["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        mine = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}
        assert cells.isdisjoint(mine), panel["title"]
        cells |= mine


def test_the_actual_load_series_goes_away_in_an_outage_instead_of_reading_zero() -> None:
    telemetry = Telemetry()
    sample = 'foreseer_observed_value{metric="rps",namespace="shop",policy="web"}'
    telemetry.observe_load("shop", "web", "rps", 120.0)
    assert f"{sample} 120.0" in telemetry.exposition().decode()
    telemetry.observe_load("shop", "web", "rps", None)
    assert sample not in telemetry.exposition().decode()
    telemetry.observe_load("shop", "web", "rps", 80.0)
    telemetry.forget("shop", "web")
    assert sample not in telemetry.exposition().decode()
