"""The fault matrix: every way Prometheus can fail, under both outage policies, at once.

One real Prometheus, one operator (through a fault-injecting proxy, on the strict emulator)
and one policy per cell. Each cell's workload runs at 4 replicas on a load of 400 (100 per
replica). Then the faults start and every load drops to 100, which would ask for 1 replica
if a fault were read as a value: no cell may scale down while its fault lasts, and each
names the cause in a condition and an Event. In the one-of-two cells the healthy metric
rises to 800 instead: FreezeScaleDown scales up on it, Hold keeps the replicas. When the
faults stop, every cell recovers (its condition clears, and it scales down to 1).

The table in docs/operator.md is this matrix; a test checks that the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from operator_stack import (
    Level,
    ReplicaRecorder,
    Stack,
    condition,
    load_query,
    metric,
    policy,
    reasons,
    replicas,
)

from foreseer.lab.waiting import until
from harness.faults import Fault, FaultProxy

pytestmark = pytest.mark.integration

NS = "faults"
ONE_OF_TWO = "one-of-two"
POLICIES = ("FreezeScaleDown", "Hold")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "operator.md"


@dataclass(frozen=True)
class Cell:
    fault: str
    does: str
    """What the proxy does, for the table."""
    condition: str
    """What MetricsAvailable (or, without an outage, the status) says during the fault."""
    says: str
    """A fragment of that condition's message."""


CELLS = (
    Cell(Fault.DOWN, "drops the connection", "MetricsMissing", "cannot connect"),
    Cell(Fault.SLOW, "answers after the timeout", "MetricsMissing", "(timeout)"),
    Cell(Fault.SERVER_ERROR, "503", "MetricsMissing", "HTTP 503"),
    Cell(Fault.GARBAGE, "200, an HTML page", "MetricsMissing", "not JSON"),
    Cell(Fault.WRONG_SHAPE, "200, `result: [1, 2]`", "MetricsMissing",
         "not a list of series"),
    Cell(Fault.EMPTY, "no series", "MetricsMissing", "Empty"),
    Cell(Fault.NAN, "the value NaN", "MetricsMissing", "NaN"),
    Cell(Fault.STALE, "the newest sample an hour old", "MetricsMissing", "Stale"),
    Cell(ONE_OF_TWO, "no series for the second metric", "MetricsMissing", "b: Empty"),
    Cell(Fault.INF_IN_HISTORY, "a `+Inf` sample in the range data", "AllMetricsAvailable",
         "every metric has a current value"),
)


def app(cell: Cell, outage: str) -> str:
    return f"{cell.fault}-{outage.lower()}"


def table() -> str:
    rows = ["| fault | what Prometheus answers | MetricsAvailable during the fault "
            "| message names | FreezeScaleDown | Hold |",
            "|---|---|---|---|---|---|"]
    for cell in CELLS:
        if cell.fault == ONE_OF_TWO:
            freeze, hold = "scales up on the healthy metric, never down", "holds"
        elif cell.fault == Fault.INF_IN_HISTORY:
            freeze = hold = "no outage: the sample is a counted gap, decisions go on"
        else:
            freeze = hold = "holds"
        rows.append(f"| {cell.fault} | {cell.does} | {cell.condition} | `{cell.says}` "
                    f"| {freeze} | {hold} |")
    return "\n".join(rows) + "\n"


def test_the_docs_show_this_fault_matrix() -> None:
    assert table() in DOCS.read_text(), "regenerate the table in docs/operator.md from table()"


async def test_every_fault_under_both_outage_policies_never_scales_down_and_recovers(
        stack: Stack) -> None:
    loads: dict[str, Level] = {}
    second: dict[str, Level] = {}
    for cell in CELLS:
        for outage in POLICIES:
            name = app(cell, outage)
            loads[name] = Level(400.0)
            await stack.workload(name, NS, replicas=4, load=loads[name])
            if cell.fault == ONE_OF_TWO:
                second[name] = Level(400.0)
                await stack.workload(f"{name}-b", NS, replicas=1, load=second[name])
    await stack.start_prometheus(*(load_query(name, NS) for name in loads))

    async with FaultProxy(stack.prometheus.url, slow_seconds=3.0) as proxy:
        for cell in CELLS:
            for outage in POLICIES:
                name = app(cell, outage)
                if cell.fault == ONE_OF_TWO:
                    proxy.faults[f"{name}-b"] = Fault.EMPTY
                else:
                    proxy.faults[name] = Fault(cell.fault)
        operator = await stack.start_operator(proxy.url, ())
        for cell in CELLS:
            for outage in POLICIES:
                name = app(cell, outage)
                metrics = [metric("a", load_query(name, NS), 100.0)]
                # The data is seconds old: a 1s step gives the range reads samples to spoil.
                fine = ({"forecast": {"step": "1s", "history": "10m"}}
                        if cell.fault == Fault.INF_IN_HISTORY else {})
                if cell.fault == ONE_OF_TWO:
                    metrics.append(metric("b", load_query(f"{name}-b", NS), 100.0))
                await stack.apply(policy(
                    name, NS, name, metrics, guards={
                        "metricsOutage": outage,
                        "circuitBreaker": {"failureThreshold": 2, "minBackoff": "1s",
                                           "maxBackoff": "2s"}},
                    behavior={"scaleDown": {"stabilizationWindowSeconds": 0}}, **fine))
        names = list(loads)

        def all_ready() -> bool:
            return all(condition(stack.emulator, NS, n, "Ready").get("status") == "True"
                       for n in names)

        await until(all_ready, timeout=60, what="every cell Ready before the faults")
        assert all(replicas(stack.emulator, NS, n) == 4 for n in names)

        recorders = {n: ReplicaRecorder(stack.emulator, NS, n) for n in names}
        for recorder in recorders.values():
            await recorder.__aenter__()
        try:
            proxy.active = True
            for level in loads.values():
                level.value = 100.0
            for level in second.values():
                level.value = 800.0
            for name in second:  # the healthy metric of a one-of-two cell now asks for 8
                loads[name].value = 800.0

            def showing(cell: Cell, name: str) -> bool:
                available = condition(stack.emulator, NS, name, "MetricsAvailable")
                return (available.get("reason") == cell.condition
                        and cell.says in available.get("message", ""))

            for cell in CELLS:
                for outage in POLICIES:
                    name = app(cell, outage)
                    await until(lambda c=cell, n=name: showing(c, n), timeout=45,
                                what=f"{name}: {cell.condition} naming {cell.says!r}")
            # The faults go on for three more ticks of every cell: none may scale down.
            ticked = {n: operator.ticks(NS, n) for n in names}
            await until(lambda: all(operator.ticks(NS, n) >= ticked[n] + 3 for n in names),
                        timeout=60, what="three more ticks of every cell under its fault")

            for cell in CELLS:
                for outage in POLICIES:
                    name = app(cell, outage)
                    seen = recorders[name].values()
                    if cell.fault == Fault.INF_IN_HISTORY:
                        assert condition(stack.emulator, NS, name, "Ready")["status"] == "True"
                        continue
                    assert min(seen) >= 4, f"{name} scaled down during its fault: {seen}"
                    if cell.fault == ONE_OF_TWO and outage == "FreezeScaleDown":
                        await until(lambda n=name: replicas(stack.emulator, NS, n) == 8,
                                    timeout=30, what=f"{name} scaled up on metric a")
                    elif cell.fault == ONE_OF_TWO:
                        assert seen == [4], f"{name} moved under Hold: {seen}"
                    await until(lambda n=name: "MetricsMissing" in reasons(
                        stack.emulator, NS, n), timeout=10, what=f"{name}: a MetricsMissing Event")
            invalid = operator.runtime.telemetry.registry.get_sample_value(
                "foreseer_invalid_samples_total",
                {"namespace": NS, "policy": app(CELLS[-1], "Hold"), "metric": "a"})
            assert invalid and invalid >= 1

            proxy.active = False
            for level in second.values():
                level.value = 100.0
            for name in second:
                loads[name].value = 100.0
            for name in names:
                await until(lambda n=name: replicas(stack.emulator, NS, n) == 1
                            and condition(stack.emulator, NS, n, "MetricsAvailable")
                            .get("status") == "True", timeout=60,
                            what=f"{name} recovered and scaled down to 1")
        finally:
            for recorder in recorders.values():
                await recorder.__aexit__()
