"""`Trace`: a recorded load of `timestamp,value` points, read from CSV with errors that say why."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from foreseer.predictors.series import FloatArray


class TraceError(ValueError):
    """A trace that cannot be replayed; the message names the file and the line."""


@dataclass(frozen=True)
class Trace:
    """Load samples at strictly increasing unix times; ``load(t)`` interpolates between them."""

    name: str
    """Where it came from (the file's stem, or the metric's name)."""
    times: FloatArray
    """Unix seconds, strictly increasing."""
    values: FloatArray
    """The load at each time; finite and non-negative."""

    def __post_init__(self) -> None:
        if self.times.shape != self.values.shape or self.times.ndim != 1:
            raise TraceError(f"{self.name}: times and values must be 1-D arrays of the same length")
        if self.times.size < 2:
            raise TraceError(f"{self.name}: need at least two points, got {self.times.size}")
        bad = np.flatnonzero(np.diff(self.times) <= 0)
        if bad.size:
            raise TraceError(
                f"{self.name}: timestamps must increase; point {bad[0] + 1} is not after "
                f"point {bad[0]}"
            )
        if not np.all(np.isfinite(self.values)) or np.any(self.values < 0):
            raise TraceError(f"{self.name}: values must be finite and non-negative")

    @property
    def step(self) -> float:
        """The median spacing of the points, in seconds."""
        return float(np.median(np.diff(self.times)))

    @property
    def start(self) -> float:
        return float(self.times[0])

    @property
    def end(self) -> float:
        return float(self.times[-1])

    def load(self, t: FloatArray | float) -> FloatArray:
        """The load at ``t``, linearly interpolated (held flat outside the trace)."""
        return np.interp(np.asarray(t, dtype=np.float64), self.times, self.values)

    def scaled(self, factor: float) -> Trace:
        """The same shape with every value multiplied by ``factor``."""
        return Trace(self.name, self.times, self.values * factor)


def _parse_time(text: str) -> float:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone; use ISO-8601 with Z or an offset")
    return stamp.timestamp()


def read_trace(path: str | Path) -> Trace:
    """Read a `timestamp,value` CSV: ISO-8601 or unix-second timestamps, a header row."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"cannot read trace {path}: {exc}") from exc
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["timestamp", "value"]:
        raise TraceError(f"{path}: the first line must be the header 'timestamp,value'")
    times: list[float] = []
    values: list[float] = []
    where: list[tuple[int, str]] = []
    for number, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            raise TraceError(f"{path}:{number}: expected 'timestamp,value', got {','.join(row)!r}")
        try:
            stamp = _parse_time(row[0])
            value = float(row[1]) if row[1].strip() else float("nan")
        except ValueError as exc:
            raise TraceError(f"{path}:{number}: {exc}") from exc
        # A missing value is a gap to interpolate across, never a zero load.
        if not np.isnan(value):
            times.append(stamp)
            values.append(value)
            where.append((number, row[0].strip()))
    ts = np.asarray(times, dtype=np.float64)
    back = np.flatnonzero(np.diff(ts) <= 0)
    if back.size:
        (line, stamp), (_, before) = where[back[0] + 1], where[back[0]]
        raise TraceError(
            f"{path}:{line}: timestamp {stamp} is not after the previous one ({before});"
            " timestamps must increase"
        )
    return Trace(path.stem, ts, np.asarray(values, dtype=np.float64))
