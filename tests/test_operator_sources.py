"""How the Prometheus adapter reads an instant result (pure part; the I/O is integration-tested)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from foreseer.operator.deciding import MetricOutage, OutageKind
from foreseer.operator.sources import QueryError, range_samples, read_value, sample_time

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


# Any JSON a broken Prometheus, proxy or mock may answer with, as the decoded `data.result`.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["metric", "value", "values", "x"]), children, max_size=3),
    max_leaves=12)


@given(json_values)
def test_any_json_answer_is_a_value_or_a_typed_outage_never_an_exception(result: object) -> None:
    reading = read_value(result, NOW, None, stale_after=60)
    assert isinstance(reading, MetricOutage) or (math.isfinite(reading) and reading >= 0)


def test_wrong_shapes_are_errors_that_say_what_came() -> None:
    for result, words in (([1, 2], "not a list of series"), ({}, "dict where a list"),
                          ([{"metric": {}, "value": "x"}], "not a [time"),
                          ([{"metric": {}, "value": [NOW, "x"]}], "not a number")):
        reading = read_value(result, NOW, None, stale_after=60)
        assert isinstance(reading, MetricOutage) and reading.kind is OutageKind.ERROR
        assert words in reading.detail


@given(json_values)
def test_a_range_answer_of_any_shape_is_samples_or_a_query_error(result: object) -> None:
    try:
        samples = range_samples(result)
    except QueryError:
        return
    assert all(isinstance(t, float) and isinstance(v, float) for t, v in samples)


def test_range_samples_that_are_not_numbers_are_gaps_not_errors() -> None:
    result = [{"metric": {}, "values": [[NOW, "1.5"], [NOW + 60, "x"], [NOW + 120, "+Inf"]]}]
    samples = range_samples(result)
    assert samples[0] == (NOW, 1.5)
    assert math.isnan(samples[1][1]) and samples[2][1] == math.inf


def test_the_sample_time_of_an_odd_answer_is_unknown_not_an_exception() -> None:
    assert sample_time(vector(str(NOW - 5))) == NOW - 5
    assert sample_time([{"metric": {}, "value": "x"}]) is None
    assert sample_time({}) is None
