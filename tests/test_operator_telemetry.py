"""The operator's metrics: per-policy series, never a stale or made-up value, gone on delete."""

from __future__ import annotations

from foreseer.operator.telemetry import Telemetry


def test_a_deleted_policy_leaves_no_series_and_others_keep_theirs() -> None:
    t = Telemetry()
    for policy in ("web", "api"):
        t.observe_metric("shop", policy, "load", forecast=420.0, error=0.4)
        t.observe_load("shop", policy, "load", 400.0)
        t.observe_decision("shop", policy, 3, {t.reactive: 4, t.predictive: 5, t.final: 5},
                           "Closed")
        t.count_query_error("shop", policy, "load", "empty")
        t.count_scale("shop", policy, "up")
        with t.timed(t.decide_seconds, "shop", policy):
            pass
    t.forget("shop", "web")
    text = t.exposition().decode()
    assert 'policy="web"' not in text
    assert 'foreseer_final_replicas{namespace="shop",policy="api"} 5.0' in text
    assert 'foreseer_prometheus_query_errors_total{kind="empty",metric="load",' in text


def test_a_missing_value_is_removed_not_kept_stale_or_zeroed() -> None:
    t = Telemetry()
    t.observe_load("shop", "web", "load", 400.0)
    t.observe_decision("shop", "web", 3, {t.predictive: 5}, "Closed")
    t.observe_load("shop", "web", "load", None)  # an outage
    t.observe_decision("shop", "web", 3, {t.predictive: None}, "Open")  # no forecast
    text = t.exposition().decode()
    assert "foreseer_observed_value{" not in text
    assert "foreseer_predictive_replicas{" not in text
    assert 'foreseer_breaker_state{foreseer_breaker_state="Open",namespace="shop",' \
           'policy="web"} 1.0' in text
