"""Compare every policy on one trace: the simulation behind `foreseer backtest` and `bench loop`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from foreseer.operator.specs import ScalingPolicySpec
from foreseer.simulator.policies import (
    FORESEER_AUTO,
    bounds_of,
    simulation_spec,
    standard_policies,
    utilization_policies,
)
from foreseer.simulator.scenarios import Scenario, resolve
from foreseer.simulator.simulating import ORACLE, Run, simulate
from foreseer.simulator.traces import Trace

COLUMNS = (
    ("underprov_time", "under-prov time", "{:.2%}"),
    ("unserved_load", "unserved load", "{:.3%}"),
    ("replica_hours", "replica-hours", "{:.0f}"),
    ("replica_hours_vs_oracle", "vs oracle", "{:.2f}"),
    ("actions", "actions", "{:d}"),
    ("recovery_seconds", "recovery", "{:.0f}s"),
)


@dataclass(frozen=True)
class Comparison:
    """What to simulate besides the trace."""

    scenario: Scenario
    """How the trace becomes a cluster."""
    policy: ScalingPolicySpec | None = None
    """The user's policy (its metric target is replaced by the scenario's); None = defaults."""
    retrain: float | None = None
    """Seconds of sim time between forecaster refits; None = the policy's retrainInterval."""
    only: tuple[str, ...] | None = None
    """Labels of the policies to simulate (the oracle is always scored), the utilisation-target
    ones (`utilization_policies`) included; None = the standard ones."""


def compare(trace: Trace, comparison: Comparison,
            progress: Callable[[int], None] | None = None) -> Run:
    """Simulate the policies of ``comparison.only`` (default: every one) on ``trace``."""
    workload = resolve(trace, comparison.scenario)
    spec = simulation_spec(workload, comparison.policy)
    policies = standard_policies(spec, workload, comparison.retrain)
    if comparison.only is not None:
        # The utilisation-target runs are opt-in, by label: one more foreseer run a trace.
        policies = [p for p in policies + utilization_policies(spec, workload, comparison.retrain)
                    if p.label in comparison.only]
    return simulate(workload, policies, bounds_of(spec), progress)


def tick_count(trace: Trace, scenario: Scenario) -> int:
    """How many decisions a comparison on ``trace`` makes (for a progress bar)."""
    return len(resolve(trace, scenario).ticks())


def table(run: Run) -> str:
    """A fixed-width comparison table, one row per policy, the oracle last."""
    labels = [label for label in run.scores if label != ORACLE] + [ORACLE]
    header = ["policy", *(title for _, title, _ in COLUMNS)]
    rows = [header]
    for label in labels:
        values = run.scores[label].to_dict()
        cells = [label]
        for key, _, fmt in COLUMNS:
            value = values[key]
            cells.append("-" if value is None else fmt.format(value))
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                       enumerate(zip(r, widths, strict=True))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


__all__ = ["FORESEER_AUTO", "Comparison", "compare", "table", "tick_count"]
