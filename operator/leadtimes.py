"""The lead time of ``horizon: auto``: how long a new replica of the target takes to become
ready, measured from its pods (Pod objects as dicts; the caller lists them)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

# Before any replica was seen becoming ready, assume this lead time for `horizon: auto`.
DEFAULT_LEAD_SECONDS = 60.0
# While a target's replicas stay put and all its pods are ready, its pods are listed again
# only this often: no new readiness to measure, and 1000 policies would otherwise list pods
# 33 times a second.
LEAD_RELIST_SECONDS = 300.0


def _timestamp(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def readiness_seconds(pods: Iterable[Mapping[str, Any]]) -> list[float]:
    """Seconds from creation to Ready for each ready pod (a Pod object as a dict).

    Only a pod's first Ready transition after creation counts: a pod that restarted
    later would otherwise inflate the lead time.
    """
    samples = []
    for pod in pods:
        created = _timestamp(pod.get("metadata", {}).get("creationTimestamp"))
        ready = _ready_condition(pod)
        if created is None or not ready or ready.get("status") != "True":
            continue
        became_ready = _timestamp(ready.get("lastTransitionTime"))
        if became_ready is not None and became_ready >= created:
            samples.append(became_ready - created)
    return samples


def _ready_condition(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    conditions = pod.get("status", {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), None)


def _is_ready(pod: Mapping[str, Any]) -> bool:
    ready = _ready_condition(pod)
    return ready is not None and ready.get("status") == "True"


@dataclass
class LeadTime:
    """The measured time a new replica takes to become ready, for ``horizon: auto``."""

    samples: deque[float] = field(default_factory=lambda: deque(maxlen=50))
    """Recent readiness durations, in seconds."""
    seen: set[str] = field(default_factory=set)
    """Pods already sampled (by uid), so one pod counts once."""
    listed: tuple[tuple[int, int], float, bool] | None = None
    """At the last listing: the target's (asked, created) replicas, when, and whether
    a pod was still becoming ready."""

    def due(self, replicas: tuple[int, int], now: float) -> bool:
        """Whether the pods are worth listing: never listed, the target's replicas moved,
        a pod was still becoming ready, or the last look is `LEAD_RELIST_SECONDS` old."""
        if self.listed is None:
            return True
        before, at, waiting = self.listed
        return waiting or before != replicas or now - at >= LEAD_RELIST_SECONDS

    def observe(self, pods: Sequence[Mapping[str, Any]], replicas: tuple[int, int],
                now: float) -> None:
        """Sample the pods that became ready; ``replicas`` and ``now`` are the target's
        (asked, created) replicas and the time of the listing, for `due`."""
        waiting = False
        for pod in pods:
            uid = pod.get("metadata", {}).get("uid") or pod.get("metadata", {}).get("name")
            if not uid or uid in self.seen:
                continue
            sample = readiness_seconds([pod])
            if sample:
                self.seen.add(uid)
                self.samples.append(sample[0])
            elif not _is_ready(pod):
                waiting = True
        self.listed = (replicas, now, waiting)
        # Bound the uid set too: only pods still around can be seen again.
        if len(self.seen) > 1000:
            self.seen = {
                p.get("metadata", {}).get("uid") or p.get("metadata", {}).get("name", "")
                for p in pods
            }

    def seconds(self) -> float:
        """A high percentile, not the mean: provisioning late costs more than early."""
        if not self.samples:
            return DEFAULT_LEAD_SECONDS
        return float(np.percentile(np.asarray(self.samples), 90))
