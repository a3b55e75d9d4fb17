"""Synthetic traces for the simulator tests: small, so a whole closed loop runs in seconds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

START = 1_700_000_000.0


def write_csv(path: Path, times: np.ndarray, values: np.ndarray) -> Path:
    """A timestamp,value CSV with ISO-8601 UTC timestamps."""
    from datetime import UTC, datetime

    lines = ["timestamp,value"]
    for t, v in zip(times, values, strict=True):
        stamp = datetime.fromtimestamp(float(t), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"{stamp},{v}")
    path.write_text("\n".join(lines) + "\n")
    return path


def daily(days: float, step: float = 300.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A daily cycle with noise: the shape predictive scaling is for."""
    times = START + step * np.arange(int(days * 86400 / step))
    phase = 2 * np.pi * (times - START) / 86400
    noise = np.random.default_rng(seed).normal(0, 2, times.size)
    return times, np.clip(100 + 80 * np.sin(phase) + noise, 1, None)


@pytest.fixture
def trace_csv(tmp_path: Path) -> Callable[..., Path]:
    """Write a synthetic trace CSV: ``trace_csv("name", times, values)``."""

    def make(name: str, times: np.ndarray, values: np.ndarray) -> Path:
        return write_csv(tmp_path / f"{name}.csv", times, values)

    return make
