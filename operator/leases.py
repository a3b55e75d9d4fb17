"""The shard Leases on the API server (imperative shell around `sharding`).

`Sharder.step` is one round: read the group's Leases, renew this replica's member Lease,
and renew, take and give up shard Leases as `sharding.plan` says. Every write carries the
resourceVersion it read, so of two replicas reaching for one shard the API server lets
exactly one through (409 Conflict for the other). `Sharder.owns` answers, from memory and
the clock alone, whether this replica may act on a policy now.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from foreseer.operator.clusters import ClusterError, Conflict
from foreseer.operator.settings import ShardingSettings
from foreseer.operator.sharding import (
    LeaseRecord,
    Sighting,
    expired,
    hold_until,
    plan,
    shard_of,
    sight,
)

logger = logging.getLogger(__name__)

Body = dict[str, Any]
GROUP_LABEL = "foreseer.dev/sharding"
ROLE_LABEL = "foreseer.dev/lease"
STALE_MEMBER_SECONDS = 3600.0
"""A member Lease unrenewed this long belongs to a replica that is gone for good (a
Deployment's pods get new names); the next round deletes it."""


class LeaseApi(Protocol):
    """The Lease calls of `clusters.Cluster`."""

    async def list_leases(self, namespace: str, selector: str) -> list[Body]: ...
    async def create_lease(self, namespace: str, body: Mapping[str, Any]) -> Body: ...
    async def replace_lease(self, namespace: str, body: Mapping[str, Any]) -> Body: ...
    async def delete_lease(self, namespace: str, name: str) -> None: ...


def _micro_time(now: float) -> str:
    """A Kubernetes MicroTime."""
    return datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _dns_label(text: str) -> str:
    """``text`` as a lower-case DNS label (a Lease name part)."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63] or "replica"


def _record(body: Mapping[str, Any]) -> LeaseRecord:
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    return LeaseRecord(name=str(meta.get("name", "")),
                       holder=spec.get("holderIdentity") or None,
                       duration=float(spec.get("leaseDurationSeconds") or 0),
                       version=str(meta.get("resourceVersion", "")))


@dataclass
class Sharder:
    """This replica's hold on the shards of one group (``settings.name``)."""

    api: LeaseApi
    settings: ShardingSettings
    clock: Callable[[], float]
    sightings_: dict[str, Sighting] = field(default_factory=dict, init=False)
    held_: dict[int, float] = field(default_factory=dict, init=False)
    """Shard -> until when this replica may act on it (its own clock)."""

    @property
    def selector(self) -> str:
        return f"{GROUP_LABEL}={self.settings.name}"

    def shard_name(self, shard: int) -> str:
        return f"{self.settings.name}-shard-{shard}"

    @property
    def member_name(self) -> str:
        return f"{self.settings.name}-member-{_dns_label(self.settings.identity)}"

    def owns_shard(self, shard: int) -> bool:
        return self.clock() < self.held_.get(shard, -math.inf)

    def owns(self, namespace: str, name: str) -> bool:
        """Whether this replica may act on the policy ``namespace/name`` now."""
        return self.owns_shard(shard_of(namespace, name, self.settings.shards))

    def shards(self) -> set[int]:
        """The shards this replica may act on now."""
        return {s for s in self.held_ if self.owns_shard(s)}

    async def step(self) -> None:
        """One round: read, renew the member Lease, then renew, release and acquire."""
        s = self.settings
        now = self.clock()
        bodies = {str((b.get("metadata") or {}).get("name", "")): b
                  for b in await self.api.list_leases(s.namespace, self.selector)}
        records = {name: _record(body) for name, body in bodies.items()}
        self.sightings_ = sight(self.sightings_, records.values(), now)
        await self._hold(self.member_name, bodies.get(self.member_name), "member", now)
        members = []
        for name, record in records.items():
            if bodies[name]["metadata"].get("labels", {}).get(ROLE_LABEL) != "member":
                continue
            if not expired(record, self.sightings_, now) and record.holder is not None:
                members.append(record.holder)
            elif now - self.sightings_[name].since >= STALE_MEMBER_SECONDS:
                await self._quietly(self.api.delete_lease(s.namespace, name), name)
        leases = [records.get(self.shard_name(i)) for i in range(s.shards)]
        # A shard the record gives to someone else is not ours, whatever we last wrote.
        for shard in list(self.held_):
            lease = leases[shard] if shard < s.shards else None
            if lease is None or lease.holder != s.identity:
                self.held_.pop(shard)
        rounds = plan(s.identity, leases, members, self.sightings_, now)
        for shard in rounds.release:
            # Stop acting first, then let the others see it free.
            self.held_.pop(shard, None)
            body = bodies[self.shard_name(shard)]
            released = {**body, "spec": {**body["spec"], "holderIdentity": None}}
            await self._quietly(self.api.replace_lease(s.namespace, released),
                                self.shard_name(shard))
        for shard in (*rounds.renew, *rounds.acquire):
            name = self.shard_name(shard)
            sent = self.clock()
            if await self._hold(name, bodies.get(name), "shard", sent):
                self.held_[shard] = hold_until(sent, s.lease_seconds)

    async def release_all(self) -> None:
        """Give every shard back and leave the group (a graceful stop: the others take the
        shards at their next round instead of waiting for the Leases to expire)."""
        s = self.settings
        held, self.held_ = list(self.held_), {}
        try:
            bodies = {str(b["metadata"]["name"]): b
                      for b in await self.api.list_leases(s.namespace, self.selector)}
        except ClusterError as exc:
            logger.warning("could not release the shard Leases: %s", exc)
            return
        for shard in held:
            body = bodies.get(self.shard_name(shard))
            if body is not None and (body.get("spec") or {}).get("holderIdentity") == s.identity:
                released = {**body, "spec": {**body["spec"], "holderIdentity": None}}
                await self._quietly(self.api.replace_lease(s.namespace, released),
                                    self.shard_name(shard))
        await self._quietly(self.api.delete_lease(s.namespace, self.member_name),
                            self.member_name)

    async def run(self, stopped: asyncio.Event) -> None:
        """Rounds every ``renew_seconds`` until ``stopped``; a failed round is logged, and
        the hold lapses on its own if the API server stays out of reach."""
        while not stopped.is_set():
            try:
                await self.step()
            except ClusterError as exc:
                logger.warning("the shard Leases could not be read: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopped.wait(), self.settings.renew_seconds)

    async def _hold(self, name: str, body: Body | None, role: str, now: float) -> bool:
        """Write this replica as the holder of Lease ``name`` (creating it if missing);
        False when another writer came first or the write failed."""
        s = self.settings
        spec = {"holderIdentity": s.identity, "leaseDurationSeconds": math.ceil(s.lease_seconds),
                "renewTime": _micro_time(now)}
        if body is None:
            new = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                   "metadata": {"name": name, "namespace": s.namespace,
                                "labels": {GROUP_LABEL: s.name, ROLE_LABEL: role}},
                   "spec": {**spec, "acquireTime": _micro_time(now), "leaseTransitions": 0}}
            return await self._quietly(self.api.create_lease(s.namespace, new), name)
        old = body.get("spec") or {}
        taken = old.get("holderIdentity") != s.identity
        updated = {**body, "spec": {
            **old, **spec,
            **({"acquireTime": _micro_time(now),
                "leaseTransitions": int(old.get("leaseTransitions") or 0) + 1} if taken else {}),
        }}
        return await self._quietly(self.api.replace_lease(s.namespace, updated), name)

    async def _quietly(self, call: Awaitable[object], name: str) -> bool:
        try:
            await call
        except Conflict:
            logger.debug("Lease %s changed meanwhile; another replica wrote it first", name)
            return False
        except ClusterError as exc:
            logger.warning("Lease %s could not be written: %s", name, exc)
            return False
        return True
