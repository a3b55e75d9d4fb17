from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from foreseer.bench.frontiers import (
    AT_LEAST,
    AT_MOST,
    BOTH,
    EXACT,
    HOURS_ONLY,
    Setting,
    envelope,
    frontier_point,
    summarize_frontier,
)

FRACTIONS = (0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8, 0.9)


@st.composite
def monotone_curves(draw: st.DrawFn) -> list[Setting]:
    """An HPA sweep as theory has it: dearer and safer as the fraction falls."""
    hours = sorted(draw(st.lists(st.floats(100, 10_000), min_size=len(FRACTIONS),
                                 max_size=len(FRACTIONS), unique=True)), reverse=True)
    short = sorted(draw(st.lists(st.floats(1e-4, 0.5), min_size=len(FRACTIONS),
                                 max_size=len(FRACTIONS), unique=True)))
    # Settings a float's last bit apart are one setting measured twice, not a curve; the
    # point-on-a-segment arithmetic below cannot tell them apart either.
    assume(all(b - a > 1e-9 for a, b in pairwise(short)))
    assume(all(a - b > 1e-6 for a, b in pairwise(hours)))
    return [Setting(f, h, u) for f, h, u in zip(FRACTIONS, hours, short, strict=True)]


def _on_segment(curve: list[Setting], index: int, t: float) -> tuple[float, float]:
    a, b = curve[index], curve[index + 1]
    return (a.replica_hours + t * (b.replica_hours - a.replica_hours),
            a.underprov_time + t * (b.underprov_time - a.underprov_time))


@given(monotone_curves(), st.integers(0, len(FRACTIONS) - 2), st.floats(0.01, 0.99))
def test_a_point_on_the_hpa_curve_has_ratio_one_and_saves_nothing(
        curve: list[Setting], index: int, t: float) -> None:
    hours, short = _on_segment(curve, index, t)
    point = frontier_point(curve, hours, short)
    assert point["underprov_ratio_at_equal_cost"] == pytest.approx(1.0, rel=1e-6)
    assert point["replica_hours_saved_at_equal_underprov"] == pytest.approx(0.0, abs=1e-6)
    assert point["underprov_ratio_is"] == point["replica_hours_saved_is"] == EXACT


@given(monotone_curves(), st.integers(0, len(FRACTIONS) - 2), st.floats(0.01, 0.99),
       st.floats(0.05, 0.95))
def test_a_point_below_the_curve_has_ratio_below_one_and_saves_replica_hours(
        curve: list[Setting], index: int, t: float, shrink: float) -> None:
    hours, short = _on_segment(curve, index, t)
    point = frontier_point(curve, hours, short * shrink)
    assert point["underprov_ratio_at_equal_cost"] == pytest.approx(shrink, rel=1e-6)
    assert point["replica_hours_saved_at_equal_underprov"] > 0


@given(monotone_curves(), st.integers(0, len(FRACTIONS) - 2), st.floats(0.01, 0.99),
       st.floats(1.05, 1.5))
def test_a_point_above_the_curve_has_ratio_above_one_and_costs_more(
        curve: list[Setting], index: int, t: float, grow: float) -> None:
    hours, short = _on_segment(curve, index, t)
    point = frontier_point(curve, hours * grow, short)
    assert point["underprov_ratio_at_equal_cost"] > 1 or point["underprov_ratio_is"] != EXACT
    assert point["replica_hours_saved_at_equal_underprov"] == pytest.approx(1 - grow, rel=1e-6)


@given(monotone_curves(), st.floats(0.0, 1.0), st.floats(0.01, 0.99))  # inside a segment
def test_the_envelope_never_lies_above_the_piecewise_path(
        curve: list[Setting], t: float, s: float) -> None:
    path = [(c.replica_hours, c.underprov_time) for c in curve]
    index = min(int(t * (len(path) - 1)), len(path) - 2)
    hours, short = _on_segment(curve, index, s)
    found = envelope(path, hours)
    assert found is not None
    assert found <= short + 1e-12


def test_a_noisy_setting_beaten_by_a_cheaper_one_does_not_count_for_the_hpa() -> None:
    # 0.55 is dearer and less safe than 0.6: the envelope reads 0.6's 1 %, not 3 %.
    curve = [Setting(0.5, 300, 0.005), Setting(0.55, 260, 0.03), Setting(0.6, 250, 0.01),
             Setting(0.7, 200, 0.05)]
    point = frontier_point(curve, 260, 0.005)
    assert point["hpa_underprov_at_equal_cost"] == pytest.approx(0.01)
    assert point["underprov_ratio_at_equal_cost"] == pytest.approx(0.5)


def test_spending_beyond_the_dearest_setting_gives_a_ratio_that_is_only_a_lower_bound() -> None:
    curve = [Setting(0.5, 300, 0.01), Setting(0.7, 200, 0.05)]
    point = frontier_point(curve, 400, 0.02)
    assert point["underprov_ratio_at_equal_cost"] == pytest.approx(2.0)
    assert point["underprov_ratio_is"] == AT_LEAST
    assert point["dominated_by_hpa_fractions"] == [0.5]
    assert any("at least" in note for note in point["notes"])


def test_spending_below_the_cheapest_setting_gives_a_ratio_that_is_only_an_upper_bound() -> None:
    curve = [Setting(0.5, 300, 0.01), Setting(0.7, 200, 0.05)]
    point = frontier_point(curve, 150, 0.04)
    assert point["underprov_ratio_at_equal_cost"] == pytest.approx(0.8)
    assert point["underprov_ratio_is"] == AT_MOST


def test_being_safer_than_every_setting_gives_a_saving_that_is_only_a_lower_bound() -> None:
    curve = [Setting(0.5, 300, 0.01), Setting(0.7, 200, 0.05)]
    point = frontier_point(curve, 330, 0.005)
    assert point["hpa_replica_hours_at_equal_underprov"] == 300
    assert point["replica_hours_saved_at_equal_underprov"] == pytest.approx(-0.1)
    assert point["replica_hours_saved_is"] == AT_LEAST


def test_a_series_where_no_policy_is_short_compares_replica_hours_only() -> None:
    curve = [Setting(0.5, 300, 0.0), Setting(0.9, 180, 0.0)]
    point = frontier_point(curve, 150, 0.0)
    assert point["compares"] == HOURS_ONLY
    assert point["underprov_ratio_at_equal_cost"] is None
    # The HPA above 0.9 might be cheaper still and never short: the saving is a ceiling.
    assert point["replica_hours_saved_at_equal_underprov"] == pytest.approx(1 - 150 / 180)
    assert point["replica_hours_saved_is"] == AT_MOST


def test_a_shortfall_where_the_hpa_curve_has_none_is_an_infinite_ratio_counted_worst() -> None:
    curve = [Setting(0.5, 300, 0.0), Setting(0.7, 200, 0.02)]
    short = frontier_point(curve, 320, 0.01)
    assert short["compares"] == BOTH
    assert short["underprov_ratio_at_equal_cost"] is None
    assert short["underprov_ratio_is"] is None
    fine = frontier_point(curve, 250, 0.005)
    summary = summarize_frontier({"short": short, "fine": fine})
    assert summary["worst_underprov_ratio_at_equal_cost"]["series"] == "short"
    assert summary["worst_underprov_ratio_at_equal_cost"]["value"] is None
    assert summary["worst_underprov_ratio_at_equal_cost"]["met"] is False
    assert summary["median_underprov_ratio_at_equal_cost"]["value"] is None


def test_the_summary_takes_medians_and_the_worst_against_the_issue_targets() -> None:
    curve = [Setting(0.5, 300, 0.01), Setting(0.7, 200, 0.05)]
    points = {name: frontier_point(curve, 250, short)
              for name, short in (("a", 0.003), ("b", 0.006), ("c", 0.03))}
    summary = summarize_frontier(points)
    assert summary["median_underprov_ratio_at_equal_cost"] == {
        "value": pytest.approx(0.2), "target": "<= 0.5", "met": True}
    worst = summary["worst_underprov_ratio_at_equal_cost"]
    assert (worst["series"], worst["value"], worst["met"]) == ("c", pytest.approx(1.0), True)
    saved = summary["median_replica_hours_saved_at_equal_underprov"]
    assert saved["target"] == ">= 0.25"
    assert saved["met"] is False
    assert summary["series_with_bounds"] == ["a", "b"]
