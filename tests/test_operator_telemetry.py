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


def test_forget_drops_series_written_straight_to_the_metrics() -> None:
    # The handler sets the lead time, the tick latency and the cycle errors itself, with no
    # Telemetry method in between; a deleted policy loses those series too.
    t = Telemetry()
    for policy in ("web", "api"):
        t.lead_time.labels("shop", policy).set(42.0)
        t.tick_seconds.labels("shop", policy).observe(0.2)
        t.cycle_errors.labels("shop", policy).inc()
        t.count_invalid_samples(("shop", policy, "load"), 3)
    t.forget("shop", "web")
    text = t.exposition().decode()
    assert 'policy="web"' not in text
    assert 'foreseer_lead_time_seconds{namespace="shop",policy="api"} 42.0' in text
    assert 'foreseer_invalid_samples_total{metric="load",namespace="shop",policy="api"} 3.0' \
        in text


def test_removing_what_was_never_recorded_changes_nothing() -> None:
    t = Telemetry()
    t.observe_decision("shop", "api", 2, {t.final: 2}, "Closed")
    before = t.exposition()
    t.observe_load("shop", "web", "load", None)  # an outage before any value
    t.observe_decision("shop", "web", 3, {t.predictive: None}, "Closed")
    t.forget("shop", "web")
    t.forget("shop", "web")  # a second delete event
    t.forget("shop", "never-seen")
    assert t.exposition() == before
