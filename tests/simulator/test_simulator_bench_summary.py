from __future__ import annotations

import pytest

from foreseer.bench.looping import summarize


def _series(name: str, **underprov: float) -> dict[str, object]:
    policies = {}
    for label, value in underprov.items():
        policies[label.replace("_", " ")] = {
            "underprov_time": value, "unserved_load": value, "replica_hours": 10.0,
            "replica_hours_vs_oracle": 1.0, "actions": 4}
    return {"name": name, "policies": policies}


def _named(auto: float, hpa: float, phpa: float, crane: float) -> dict[str, float]:
    return {"foreseer_Auto": auto, "HPA_v2": hpa, "PHPA-style": phpa, "Crane-style": crane,
            "oracle": 0.0}


def test_summary_ratios_are_ratios_of_means_so_an_all_zero_series_divides_nothing() -> None:
    series = [_series("a", **_named(0.1, 0.4, 0.3, 0.2)), _series("b", **_named(0, 0, 0, 0))]
    summary = summarize(series)
    assert summary["underprov_ratio_vs_hpa"] == pytest.approx(0.05 / 0.2)
    assert summary["underprov_ratio_vs_best_peer"] == pytest.approx(0.05 / 0.1)
    assert summary["replica_hours_ratio_vs_oracle"] == pytest.approx(1.0)
    assert summary["actions_ratio_vs_hpa"] == pytest.approx(1.0)
    assert summary["underprov_foreseer_median"] == pytest.approx(0.05)


def test_a_ratio_over_a_zero_mean_is_null_not_a_crash() -> None:
    summary = summarize([_series("a", **_named(0.1, 0.0, 0.0, 0.0))])
    assert summary["underprov_ratio_vs_hpa"] is None
