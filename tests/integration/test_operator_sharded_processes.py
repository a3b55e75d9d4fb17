"""Scale-out: two `foreseer run` processes sharding the policies on Leases each act on their
own share only (with Kopf running in both), and one takes the other's share over when it is
stopped."""

from __future__ import annotations

import pytest
from operator_stack import Level, Stack, StartReplica, load_query, metric, policy, replicas

from foreseer.lab.waiting import until
from foreseer.operator.sharding import shard_of

pytestmark = pytest.mark.integration

SHARDS = 2
NAMES = ["web-0", "web-2", "web-1", "web-3"]  # shards 1, 0, 1, 1: both shards in use


def sharded(identity: str) -> list[str]:
    """The flags of one of two sharded replicas, on short Leases."""
    return [f"--shards={SHARDS}", f"--shard-identity={identity}", "--lease-namespace=ops",
            "--lease-seconds=4", "--lease-renew-seconds=1"]


async def test_two_sharded_replicas_each_act_on_their_own_policies_and_one_takes_over(
    stack: Stack, start_replica: StartReplica,
) -> None:
    assert {shard_of("shop", n, SHARDS) for n in NAMES} == {0, 1}
    loads = {name: Level(250.0) for name in NAMES}
    for name in NAMES:
        await stack.workload(name, "shop", replicas=1, load=loads[name])
    await stack.start_prometheus(*(load_query(n, "shop") for n in NAMES))
    a, b = start_replica("a", *sharded("a")), start_replica("b", *sharded("b"))

    def holders() -> dict[str, str]:
        """The held Leases and their holders (a released one holds None: not listed)."""
        return {x["metadata"]["name"]: x["spec"]["holderIdentity"]
                for x in stack.emulator.list_objects("coordination.k8s.io/v1/leases")
                if x["spec"].get("holderIdentity")}

    await until(lambda: sorted(h for n, h in holders().items() if "-shard-" in n) == ["a", "b"],
                timeout=60, what="the two replicas holding one shard each")
    for name in NAMES:
        await stack.apply(policy(name, "shop", name, [metric("load", load_query(name, "shop"),
                                                              100.0)]))
    for name in NAMES:
        await until(lambda name=name: replicas(stack.emulator, "shop", name) == 3, timeout=60,
                    what=f"{name} scaled to 3")
    owner = {f"foreseer-shard-{s}": h for s, h in
             ((int(n.rsplit("-", 1)[1]), h) for n, h in holders().items() if "-shard-" in n)}
    for name in NAMES:
        mine = owner[f"foreseer-shard-{shard_of('shop', name, SHARDS)}"]
        acting, idle = (a, b) if mine == "a" else (b, a)
        assert await acting.ticks("shop", name) > 0
        assert await idle.ticks("shop", name) == 0, f"{name} was ticked by both replicas"

    await a.stop()
    for level in loads.values():
        level.value = 450.0
    for name in NAMES:
        await until(lambda name=name: replicas(stack.emulator, "shop", name) == 5, timeout=90,
                    what=f"{name} scaled to 5 by the replica left")
    assert {n: h for n, h in holders().items() if "-shard-" in n} == {
        f"foreseer-shard-{s}": "b" for s in range(SHARDS)}  # every shard held, all by b
