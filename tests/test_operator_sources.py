"""How the Prometheus adapter reads an instant result (pure part; the I/O is integration-tested)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from foreseer.operator.deciding import MetricOutage, OutageKind
from foreseer.operator.sources import read_value

NOW = 1_700_000_000.0


def vector(*values: str) -> list[dict[str, object]]:
    return [{"metric": {"i": str(i)}, "value": [NOW, v]} for i, v in enumerate(values)]


@given(st.floats(min_value=0, max_value=1e12, allow_nan=False))
def test_a_fresh_non_negative_value_is_read_as_it_is(value: float) -> None:
    assert read_value(vector(repr(value)), NOW, NOW - 5, stale_after=60) == value


@given(st.integers(min_value=2, max_value=20))
def test_several_series_are_an_error_never_a_value(count: int) -> None:
    reading = read_value(vector(*["1"] * count), NOW, None, stale_after=60)
    assert isinstance(reading, MetricOutage) and reading.kind is OutageKind.ERROR


@given(st.floats(min_value=61, max_value=1e6))
def test_a_sample_older_than_the_limit_is_stale_however_plausible_its_value(age: float) -> None:
    reading = read_value(vector("42"), NOW, NOW - age, stale_after=60)
    assert isinstance(reading, MetricOutage) and reading.kind is OutageKind.STALE


def test_missing_nan_and_impossible_values_are_distinct_outages_never_zero() -> None:
    kinds = [read_value(result, NOW, None, stale_after=60) for result in (
        [], vector("NaN"), vector("+Inf"), vector("-3"), [NOW, "7"])]
    assert [getattr(k, "kind", k) for k in kinds] == [
        OutageKind.EMPTY, OutageKind.NAN, OutageKind.INVALID, OutageKind.INVALID, 7.0]
    assert not any(k == 0 or (isinstance(k, float) and math.isnan(k)) for k in kinds)
