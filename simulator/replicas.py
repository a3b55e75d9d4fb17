"""`ReplicaPool`: replicas that take a startup delay to become ready and go at once when removed."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

from foreseer.predictors.series import FloatArray


@dataclass
class ReplicaPool:
    """The target Deployment: its replica count, and which of those replicas are ready.

    Scale-down removes starting replicas first, newest first, as the ReplicaSet
    controller prefers deleting pods that are not ready.
    """

    startup: float
    """Seconds from creation to ready."""
    ready: int = 0
    """Replicas serving now."""
    pending: list[float] = field(default_factory=list)
    """Ready times of replicas still starting, ascending."""
    ready_changes: list[tuple[float, int]] = field(default_factory=list)
    """(time, ready count from then on), in time order."""
    total_changes: list[tuple[float, int]] = field(default_factory=list)
    """(time, replica count from then on): what is paid for, starting or not."""
    actions: int = 0
    """How many times the replica count was changed."""

    @property
    def replicas(self) -> int:
        return self.ready + len(self.pending)

    def start(self, now: float, replicas: int) -> ReplicaPool:
        """Begin with ``replicas`` already ready (the state the trace is entered in)."""
        self.ready = replicas
        self.ready_changes.append((now, replicas))
        self.total_changes.append((now, replicas))
        return self

    def advance(self, now: float) -> None:
        """Make every replica whose startup has elapsed by ``now`` ready, at its own time."""
        while self.pending and self.pending[0] <= now:
            at = self.pending.pop(0)
            self.ready += 1
            self._record(self.ready_changes, at, self.ready)

    def scale(self, now: float, replicas: int) -> None:
        """Set the replica count at ``now``."""
        self.advance(now)
        replicas = max(0, int(replicas))
        if replicas == self.replicas:
            return
        self.actions += 1
        if replicas > self.replicas:
            for _ in range(replicas - self.replicas):
                bisect.insort(self.pending, now + self.startup)
        else:
            drop = self.replicas - replicas
            from_pending = min(drop, len(self.pending))
            del self.pending[len(self.pending) - from_pending :]
            if drop > from_pending:
                self.ready -= drop - from_pending
                self._record(self.ready_changes, now, self.ready)
        self._record(self.total_changes, now, self.replicas)

    @staticmethod
    def _record(changes: list[tuple[float, int]], at: float, count: int) -> None:
        if changes and changes[-1][0] == at:
            changes[-1] = (at, count)
        else:
            changes.append((at, count))

    def ready_at(self, times: FloatArray) -> FloatArray:
        """Ready replicas at each of ``times``."""
        return _step_function(self.ready_changes, times)

    def replicas_at(self, times: FloatArray) -> FloatArray:
        """Replicas (ready or starting) at each of ``times``."""
        return _step_function(self.total_changes, times)


def _step_function(changes: list[tuple[float, int]], times: FloatArray) -> FloatArray:
    at = np.array([c[0] for c in changes], dtype=np.float64)
    counts = np.array([c[1] for c in changes], dtype=np.float64)
    index = np.searchsorted(at, times, side="right") - 1
    return np.where(index >= 0, counts[np.clip(index, 0, None)], 0.0)
