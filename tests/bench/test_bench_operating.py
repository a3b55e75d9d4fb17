"""The operator benchmark's arithmetic: quantiles from scraped histograms, and its table."""

import math
import os

from foreseer.bench.operating import _buckets, _delta, _quantile, forecasting_count, markdown
from foreseer.bench.processes import pss_mb, rss_mb


def scrape(histogram: str, policies: dict[str, dict[str, float]]) -> dict:
    """Samples as `scrape` returns them: cumulative buckets per policy."""
    samples = {}
    for policy, buckets in policies.items():
        for le, count in buckets.items():
            labels = (("le", le), ("namespace", "ns"), ("policy", policy))
            samples[(f"{histogram}_bucket", labels)] = count
    return samples


def test_quantiles_interpolate_inside_the_bucket_like_histogram_quantile() -> None:
    buckets = {0.1: 50.0, 1.0: 100.0, math.inf: 100.0}
    assert _quantile(buckets, 0.5) == 0.1
    assert math.isclose(_quantile(buckets, 0.75), 0.55)
    assert math.isnan(_quantile({}, 0.5))


def test_a_rank_in_the_open_last_bucket_is_its_lower_bound() -> None:
    assert _quantile({1.0: 10.0, math.inf: 20.0}, 0.99) == 1.0


def test_the_measured_window_is_the_difference_of_two_scrapes_summed_over_policies() -> None:
    before = scrape("t", {"a": {"1.0": 5, "+Inf": 5}})
    after = scrape("t", {"a": {"1.0": 7, "+Inf": 9}, "b": {"1.0": 1, "+Inf": 1}})
    assert _buckets(after, "t") == {1.0: 8.0, math.inf: 10.0}
    assert _delta(after, before, "t") == {1.0: 3.0, math.inf: 5.0}


def test_the_table_says_how_many_ticks_completed_and_how_many_policies_forecast() -> None:
    run = {"policies": 10, "cpu_seconds_per_tick": 0.2, "fit_cpu_seconds_per_tick": 1.5,
           "tick_p50_ms": 50.0, "tick_p99_ms": 200.0, "decide_p99_ms": 0.5,
           "fit_seconds_p50": None, "fits": 0, "forecasting": 0, "rss_mb": 380.0,
           "operator_rss_mb": 190.0, "pss_mb": 300.0, "warmup_seconds": 42.0, "ticks": 15,
           "ticks_per_policy_interval": 0.5}
    table = markdown({"interval_seconds": 30.0, "intervals_measured": 3, "runs": [run],
                      "elapsed_seconds": 60.0})
    assert ("| 10 | 0.20 | 1.50 | 0.50 | 50.0 | 200.0 | 0.50 | - | 0 | 0 | 380 | 190 | 300 | 42 |"
            in table)


def test_proportional_memory_counts_shared_pages_once_so_it_is_at_most_resident_memory() -> None:
    # Both over the same processes: earlier tests may leave worker processes under this one.
    own = os.getpid()
    assert 0 < pss_mb(own) <= rss_mb(own, children=True)


def test_a_policy_forecasts_when_it_has_a_forecast_value_whatever_its_other_series() -> None:
    samples = {
        ("foreseer_forecast_value", (("metric", "load"), ("namespace", "a"), ("policy", "p"))): 1.0,
        ("foreseer_forecast_value", (("metric", "rps"), ("namespace", "a"), ("policy", "p"))): 2.0,
        ("foreseer_forecast_value", (("metric", "load"), ("namespace", "b"), ("policy", "p"))): 3.0,
        ("foreseer_replicas", (("namespace", "c"), ("policy", "q"))): 4.0,
    }
    assert forecasting_count(samples) == 2
