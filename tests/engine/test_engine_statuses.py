"""The status models: conditions, the wire format and a lossless round trip."""

from __future__ import annotations

import json

from engine_builders import T0

from foreseer.operator.statuses import (
    BreakerState,
    BreakerStatus,
    ConditionStatus,
    History,
    ScaleEvent,
    ScalingPolicyStatus,
    TimedRecommendation,
    get_condition,
    set_condition,
    to_time,
)


def test_setting_a_condition_keeps_its_transition_time_while_the_status_holds() -> None:
    first = set_condition([], "Ready", True, "Decided", "ok", to_time(T0), 1)
    again = set_condition(first, "Ready", True, "Decided", "still ok", to_time(T0 + 60), 2)
    ready = get_condition(again, "Ready")
    assert ready is not None
    assert ready.last_transition_time == to_time(T0)
    assert (ready.message, ready.observed_generation) == ("still ok", 2)


def test_a_flipped_condition_gets_a_new_transition_time_and_keeps_its_place() -> None:
    conditions = set_condition([], "Ready", True, "Decided", "", to_time(T0))
    conditions = set_condition(conditions, "MetricsAvailable", True, "All", "", to_time(T0))
    conditions = set_condition(conditions, "Ready", False, "NoMetrics", "", to_time(T0 + 5))
    assert [c.type for c in conditions] == ["Ready", "MetricsAvailable"]
    assert conditions[0].status is ConditionStatus.FALSE
    assert conditions[0].last_transition_time == to_time(T0 + 5)


def test_the_status_is_camel_case_rfc3339_on_the_wire_and_round_trips_exactly() -> None:
    status = ScalingPolicyStatus(
        desired_replicas=4, last_scale_time=to_time(T0 + 0.123456),
        breaker=BreakerStatus(state=BreakerState.OPEN, failures=3,
                              open_until=to_time(T0 + 30)),
        history=History(recommendations=[TimedRecommendation(time=to_time(T0), replicas=4)],
                        scale_events=[ScaleEvent(time=to_time(T0 + 0.5), change=-2)]))
    wire = json.loads(status.model_dump_json(by_alias=True))
    assert wire["desiredReplicas"] == 4
    assert wire["lastScaleTime"] == "2027-01-15T08:00:00.123456Z"
    assert wire["breaker"] == {"state": "Open", "failures": 3,
                               "openUntil": "2027-01-15T08:00:30Z"}
    assert wire["history"]["scaleEvents"] == [{"time": "2027-01-15T08:00:00.500000Z",
                                               "change": -2}]
    assert ScalingPolicyStatus.model_validate(wire) == status


def test_fields_written_by_others_into_the_status_are_tolerated() -> None:
    status = ScalingPolicyStatus.model_validate({"kopf": {"progress": {}}, "currentReplicas": 3})
    assert status.current_replicas == 3
