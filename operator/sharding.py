"""Which operator replica acts on which policy: shards by hash, held on Leases. Pure.

A policy belongs to shard ``hash(namespace/name) mod shards``, in the manner of
kube-state-metrics' sharding. Each shard is a coordination.k8s.io Lease; a replica acts on
a policy only while it holds the policy's shard's Lease. Each replica also holds a member
Lease of its own, so the others know how many share the work: every replica aims at
``ceil(shards / live members)`` shards, keeps the ones it ranks highest (rendezvous
hashing of shard and identity, so a shard stays where it is when others come and go),
releases the rest, and takes free or expired shards up to its share.

Expiry follows client-go's leader election: a Lease is expired when its record (holder,
renew time, resourceVersion) has not changed for its duration *as seen on this replica's
clock*, so replicas need no synchronised clocks, only clocks that run at the same rate.
The holder itself counts its hold from the moment it sent the renewal, and stops acting
`SAFETY` before the others could take the Lease over.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

SAFETY = 0.2
"""Fraction of the lease duration a holder gives up early: it stops acting on a shard
this long before any other replica could see the Lease as expired (clock rates differ a
little, and a write's answer can come late)."""


def shard_of(namespace: str, name: str, shards: int) -> int:
    """The shard of the policy ``namespace/name`` among ``shards`` (stable across
    processes and versions: a fixed hash, not Python's salted one)."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    digest = hashlib.blake2b(f"{namespace}/{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def rank(identity: str, shard: int) -> int:
    """Rendezvous weight of ``shard`` for ``identity``: each replica prefers the shards it
    weighs highest, so a shard's owner does not change when an unrelated replica joins."""
    digest = hashlib.blake2b(f"{identity}#{shard}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass(frozen=True)
class LeaseRecord:
    """The part of a Lease that sharding reads."""

    name: str
    holder: str | None
    """spec.holderIdentity; None when released."""
    duration: float
    """spec.leaseDurationSeconds."""
    version: str
    """metadata.resourceVersion: every renewal changes it."""


@dataclass(frozen=True)
class Sighting:
    """When this replica first saw a Lease's current record (on its own clock)."""

    version: str
    since: float


def sight(previous: Mapping[str, Sighting], leases: Iterable[LeaseRecord],
          now: float) -> dict[str, Sighting]:
    """The sightings after reading ``leases`` at ``now``: a record seen before keeps the
    time it was first seen; a changed or new one is seen now. Leases gone are dropped."""
    return {
        lease.name: (previous[lease.name] if lease.name in previous
                     and previous[lease.name].version == lease.version
                     else Sighting(lease.version, now))
        for lease in leases
    }


def expired(lease: LeaseRecord, sightings: Mapping[str, Sighting], now: float) -> bool:
    """Free to take: released, or unchanged for its whole duration on this replica's clock."""
    if lease.holder is None:
        return True
    seen = sightings.get(lease.name)
    return seen is None or now >= seen.since + lease.duration


@dataclass(frozen=True)
class Plan:
    """What one replica does with the shard Leases this round."""

    renew: tuple[int, ...]
    """Shards it holds and keeps."""
    acquire: tuple[int, ...]
    """Free or expired shards it takes."""
    release: tuple[int, ...]
    """Shards it holds beyond its share: given up for a replica that has fewer."""
    share: int
    """How many shards it aims at."""


def plan(identity: str, shards: Sequence[LeaseRecord | None], members: Iterable[str],
         sightings: Mapping[str, Sighting], now: float) -> Plan:
    """The round for ``identity``, from every shard's Lease (None: not created yet), the
    identities of the live members (this one included or not) and the sightings."""
    alive = set(members) | {identity}
    share = math.ceil(len(shards) / len(alive))
    by_rank = sorted(range(len(shards)), key=lambda s: rank(identity, s), reverse=True)
    mine = [s for s in by_rank if (lease := shards[s]) is not None and lease.holder == identity]
    keep = mine[:share]
    free = [s for s in by_rank if s not in mine
            and ((lease := shards[s]) is None or expired(lease, sightings, now))]
    return Plan(renew=tuple(keep), acquire=tuple(free[:max(0, share - len(keep))]),
                release=tuple(mine[share:]), share=share)


def hold_until(sent_at: float, duration: float) -> float:
    """Until when a replica that sent a successful renewal at ``sent_at`` may act."""
    return sent_at + duration * (1.0 - SAFETY)
