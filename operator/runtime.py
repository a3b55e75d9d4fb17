"""The operator's shared parts (`Runtime`: settings, adapters, telemetry) and what it holds in
memory per policy (`PolicyMemory`), handed to every handler through Kopf's memo."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from foreseer.operator.clusters import Cluster, ClusterError
from foreseer.operator.events import EventQueue
from foreseer.operator.fitting import Fitter
from foreseer.operator.forecasting import LiveError, Recipe
from foreseer.operator.leadtimes import LeadTime
from foreseer.operator.leases import Sharder
from foreseer.operator.modelstore import ModelStore
from foreseer.operator.policies import target_key
from foreseer.operator.settings import Settings
from foreseer.operator.sources import Prometheus
from foreseer.operator.specs import ScaleTargetRef, ScalingPolicySpec
from foreseer.operator.statuses import CapacityStatus, ScalingPolicyStatus
from foreseer.operator.telemetry import Health, Telemetry

logger = logging.getLogger(__name__)


Clock = Callable[[], float]

AUTOSCALERS_RECHECK_SECONDS = 30.0
"""How often the HorizontalPodAutoscalers of a namespace are listed again: at most one list
per namespace and period, however many policies it holds (the HPA controller itself syncs
every 15 s)."""


@dataclass
class PolicyMemory:
    """What the operator keeps in memory per policy, besides the fitted models.

    All of it can be lost: after a restart the history is re-read from Prometheus,
    the models are refitted, and the decision state comes back from status.
    """

    errors: dict[str, LiveError] = field(default_factory=dict)
    """Live forecast error per metric."""
    lead: LeadTime = field(default_factory=LeadTime)
    """Measured replica readiness, for ``horizon: auto``."""
    state: ScalingPolicyStatus | None = None
    """The decision state of the last cycle (written or not: a write skipped as unchanged,
    or one that failed, still holds the scale events the rate policies must count); the
    daemon's live view may lag behind our own writes."""
    written: tuple[Any, float] | None = None
    """The substance of the status written last, and when (the operator's clock)."""
    spec: tuple[dict[str, Any], ScalingPolicySpec | str] | None = None
    """The raw spec seen last and what it parsed to (validating it every tick costs more
    than comparing it)."""
    claim: tuple[tuple[str, str, str], tuple[str, str]] | None = None
    """The target this policy scales, (API group, kind, name), and its seniority,
    (creationTimestamp, name): of two policies on one target the senior one acts. None in
    Observe mode, which scales nothing."""
    capacities: dict[str, CapacityStatus] = field(default_factory=dict)
    """Per metric with utilization, its learned capacity (restored from status when empty)."""
    version: str | None = None
    """The policy's resourceVersion that ``state`` derives from: a status write carries it,
    so that it never overwrites a status that another writer (a second replica during a
    peering hand-over) changed meanwhile. None: write without a precondition."""
    restored: dict[str, Recipe] = field(default_factory=dict)
    """Per metric, the recipe the model store was last asked for (asked once per recipe)."""
    unsaved: dict[str, float] = field(default_factory=dict)
    """Per metric, the fit time of a model the store could not write (not retried)."""
    live_version: dict[str, int] = field(default_factory=dict)
    """Per metric, the stored version of the model forecasting now."""
    replaced: dict[str, tuple[int, float | None]] = field(default_factory=dict)
    """Per metric, the stored version a new fit replaced and its live MASE then: the one to
    roll back to if the new fit scores worse live."""


@dataclass
class Runtime:
    """The operator's shared parts, handed to every handler through Kopf's memo."""

    settings: Settings
    prometheus: Prometheus
    cluster: Cluster
    fitter: Fitter
    telemetry: Telemetry = field(default_factory=Telemetry)
    health: Health = field(default_factory=Health)
    events: EventQueue | None = None
    """Where Events are queued; made on first use, from the cluster adapter."""
    clock: Clock = time.time
    """Wall clock; the only clock of the operator (decide() gets ``now`` from here)."""
    memories: dict[tuple[str, str], PolicyMemory] = field(default_factory=dict)
    metrics_port: int | None = None
    """The bound port of /metrics and /healthz once serving."""
    autoscaled: dict[str, tuple[float, dict[tuple[str, str, str], str]]] = field(
        default_factory=dict)
    """Per namespace: when its HPAs were listed, and their targets (by `target_key`) with
    the HPA's name."""
    sharder: Sharder | None = None
    """This replica's shard Leases, when the policies are sharded across replicas."""
    models: ModelStore | None = None
    """Where fitted models outlive the process, when configured."""

    @classmethod
    def create(cls, settings: Settings) -> Runtime:
        telemetry = Telemetry()
        cluster = Cluster()
        return cls(
            settings=settings,
            prometheus=Prometheus(settings.prometheus,
                                  on_invalid=telemetry.count_invalid_samples),
            cluster=cluster,
            fitter=Fitter(settings.fitting, on_fitted=telemetry.fit_seconds.observe),
            telemetry=telemetry,
            sharder=(Sharder(cluster, settings.sharding, time.time)
                     if settings.sharding.shards else None),
            models=(ModelStore.from_key_file(settings.fitting.model_dir,
                                             settings.fitting.model_key_file)
                    if settings.fitting.model_dir and settings.fitting.model_key_file
                    else None),
        )

    def post_event(self, body: Mapping[str, Any], *, reason: str, message: str,
                   warning: bool = False) -> None:
        """Queue an Event about a policy; it is posted off the tick path."""
        if self.events is None:
            telemetry = self.telemetry
            self.events = EventQueue(
                self.cluster,
                on_posted=lambda w: telemetry.events.labels("Warning" if w else "Normal").inc(),
                on_dropped=telemetry.events_dropped.inc)
        self.events.post(body, reason=reason, message=message, warning=warning)

    def owns(self, namespace: str, name: str) -> bool:
        """Whether this replica acts on the policy: always without sharding, else while it
        holds the Lease of the policy's shard."""
        return self.sharder is None or self.sharder.owns(namespace, name)

    def memory(self, namespace: str, name: str) -> PolicyMemory:
        return self.memories.setdefault((namespace, name), PolicyMemory())

    def rival(self, namespace: str, name: str) -> str | None:
        """The senior policy of the namespace that claims the same target, if any."""
        claim = self.memories[(namespace, name)].claim
        if claim is None:
            return None
        rivals = [(other.claim[1], other_name)
                  for (other_ns, other_name), other in self.memories.items()
                  if other_ns == namespace and other_name != name and other.claim is not None
                  and other.claim[0] == claim[0] and other.claim[1] < claim[1]]
        return min(rivals)[1] if rivals else None

    async def autoscaler(self, namespace: str, ref: ScaleTargetRef) -> str | None:
        """The name of a HorizontalPodAutoscaler of the namespace that scales `ref`'s target,
        if any. The list is at most AUTOSCALERS_RECHECK_SECONDS old; when it cannot be read
        (an RBAC gap, an API outage), the last one read stands, logged, rather than stopping
        every policy of the namespace."""
        now = self.clock()
        listed_at, targets = self.autoscaled.get(namespace, (-math.inf, {}))
        if now - listed_at >= AUTOSCALERS_RECHECK_SECONDS:
            try:
                targets = {}
                for api_version, kind, target, hpa in await self.cluster.list_autoscaled(
                        namespace):
                    targets.setdefault(target_key(api_version, kind, target), hpa)
            except ClusterError as exc:
                logger.warning("could not list the HorizontalPodAutoscalers of %s: %s",
                               namespace, exc)
                targets = self.autoscaled.get(namespace, (now, {}))[1]
            self.autoscaled[namespace] = (now, targets)
        return targets.get(target_key(ref.api_version, ref.kind, ref.name))

    def forget(self, namespace: str, name: str) -> None:
        """Drop everything held for a deleted policy."""
        self.memories.pop((namespace, name), None)
        self.fitter.forget(namespace, name)
        self.prometheus.forget(namespace, name)
        self.telemetry.forget(namespace, name)

    async def close(self) -> None:
        if self.events is not None:
            await self.events.close()
        self.fitter.shutdown()
        await self.prometheus.close()
        await self.cluster.close()
