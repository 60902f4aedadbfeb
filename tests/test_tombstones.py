"""Tombstones pruned after the horizon, and a node that comes back after a prune
(in-memory cluster, fake clock)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import pydds
from pydds.crdt.directory import Entry, encode_update

from .helpers import Served, stop_process, until_member
from .memcluster import Cluster, names, until

HORIZON = 120.0
LIMITS = pydds.Limits(tombstone_horizon=HORIZON)


async def three(
    cluster: Cluster, limits: pydds.Limits = LIMITS
) -> tuple[pydds.Node, pydds.Node, pydds.Node]:
    a = cluster.node("a", limits=limits)
    await a.start()
    b = cluster.node("b", ["mem://a"], limits=limits)
    await b.start()
    c = cluster.node("c", ["mem://a"], limits=limits)
    await c.start()
    await until(lambda: all(len(names(n)) == 3 for n in (a, b, c)))
    return a, b, c


def entries(node: pydds.Node, database: str = "db") -> dict[str, object]:
    return dict(node.database(database)._keyspace.directory.entries())


async def test_deleted_keys_leave_every_directory_after_the_horizon(cluster: Cluster) -> None:
    a, b, c = await three(cluster)
    db = a.database("db")
    for i in range(200):
        await db.set(f"session:{i}", {"user": i})
    await db.set("live", 1)
    for i in range(200):
        await db.delete(f"session:{i}")
    await until(lambda: all(len(entries(n)) == 201 for n in (a, b, c)))  # tombstones
    await cluster.clock.advance(HORIZON / 2, step=1.0)
    assert all(len(entries(n)) == 201 for n in (a, b, c))  # younger than the horizon
    await cluster.clock.advance(HORIZON / 2 + 61, step=1.0)  # a prune walk at most a minute on
    assert [sorted(entries(n)) for n in (a, b, c)] == [["live"]] * 3
    # A node joining now receives the live key only.
    d = cluster.node("d", ["mem://a"], limits=LIMITS)
    await d.start()
    await until(lambda: "live" in d.database("db"))
    assert sorted(entries(d)) == ["live"]


async def test_an_expired_key_is_pruned_too(cluster: Cluster) -> None:
    a, b, _ = await three(cluster)
    await a.database("db").set("k", 1, ttl=5)
    await until(lambda: "k" in b.database("db"))
    await cluster.clock.advance(5 + HORIZON + 61, step=1.0)
    assert entries(a) == entries(b) == {}


async def test_a_node_back_after_a_prune_drops_the_deleted_key_and_keeps_its_own_writes(
    cluster: Cluster,
) -> None:
    a, b, c = await three(cluster)
    await a.database("db").set("k", "old")
    await a.database("db").set("kept", 1)
    await until(lambda: "k" in c.database("db"))
    assert await c.database("db").get("k") == "old"  # c holds a copy
    assert await c.database("db").get("kept") == 1  # its set of it will win (rule 1)
    await cluster.network.partition(["mem://c"], ["mem://a", "mem://b"])
    await until(lambda: names(c) == ["c"])
    await a.database("db").delete("k")
    await c.database("db").set("mine", "written while cut off")
    await c.database("db").set("kept", 2)  # a write to a key that lives on
    await cluster.clock.advance(HORIZON + 61, step=1.0)
    assert "k" not in entries(a)  # pruned by a and b, who are a majority
    assert "k" in entries(c)  # c, cut off, prunes nothing
    async with c.events(kinds={"deleted"}) as deleted:
        cluster.network.heal()
        await cluster.clock.advance(10, step=0.5)  # redial with backoff
        await until(lambda: len(names(c)) == 3)
        await until(lambda: "k" not in c.database("db"))
        event = await deleted.get(timeout=1)
    assert (event.key, event.kind) == ("k", "deleted")
    assert "k" not in entries(c)
    await until(lambda: "mine" in a.database("db") and "mine" in b.database("db"))
    assert await a.database("db").get("mine") == "written while cut off"
    # A write to a key that lives on merges as any write (c's set had seen a's),
    # once the values are compared (after the directory is reconciled).
    await until(lambda: a.database("db")._keyspace.read("kept") == 2)
    await cluster.clock.advance(31, step=1.0)  # anti-entropy: nothing brings k back
    assert all("k" not in entries(n) for n in (a, b, c))


async def test_a_node_in_sync_never_reconciles_with_one_back_from_a_partition(
    cluster: Cluster,
) -> None:
    # A horizon shorter than the anti-entropy period (30 s): a and b, linked all
    # along, must not count as last in touch at their last sync step, else c, back
    # from a partition with an older prune, makes them drop a key c never saw.
    a, b, c = await three(cluster, pydds.Limits(tombstone_horizon=10.0))
    await a.database("db").set("old", 1)
    await a.database("db").delete("old")
    await cluster.clock.advance(14, step=0.5)  # everyone pruned it
    assert all("old" not in entries(n) for n in (a, b, c))
    await cluster.network.partition(["mem://c"], ["mem://a", "mem://b"])
    await until(lambda: names(c) == ["c"])
    await b.database("db").set("new", {"made": "while c was away"}, ack="majority")
    cluster.network.heal()
    await cluster.clock.advance(3, step=0.5)  # redial with backoff; before any period
    await until(lambda: len(names(c)) == 3)
    await until(lambda: "new" in c.database("db"))
    await cluster.clock.advance(31, step=1.0)
    for node in (a, b, c):
        assert await node.database("db").get("new") == {"made": "while c was away"}


async def test_a_node_process_stopped_across_a_prune_does_not_bring_the_key_back(
    served: Callable[..., Awaitable[Served]], tmp_path: Path
) -> None:
    # Real pydds serve processes with persistence: p2 is stopped while p1 deletes a
    # key and forgets its tombstone. p2 starts again from its store, which still
    # holds the key; its time last in touch, kept on disk, says it is behind p1, so
    # it drops the key rather than bringing it back to p1.
    env = {"PYDDS_MEMORY": "", "PYDDS_TOMBSTONE_HORIZON": "2"}

    def args(name: str, *join: str) -> tuple[str, ...]:
        out = ("--port", "0", "--name", name, "--data-dir", str(tmp_path / name))
        return out + tuple(a for address in join for a in ("--join", address))

    p1 = await served(*args("p1"), env=env)
    p2 = await served(*args("p2", p1.node), env=env)
    await until_member(p2, "p1")
    async with aiohttp.ClientSession() as session:

        async def database(node: Served) -> dict[str, Any]:
            async with session.get(f"{node.http}/v1/databases/db") as response:
                found: dict[str, Any] = await response.json() if response.ok else {"keys": 0}
                return found

        async def keys(node: Served) -> list[str]:
            async with session.get(f"{node.http}/v1/databases/db/keys") as response:
                return list(await response.json()) if response.ok else []

        for key in ("gone", "kept"):
            async with session.put(f"{p1.http}/v1/databases/db/keys/{key}?ack=all", json=1):
                pass
        assert await keys(p2) == ["gone", "kept"]
        assert await stop_process(p2.proc) == 0  # it leaves; p1 is the whole cluster
        async with session.delete(f"{p1.http}/v1/databases/db/keys/gone") as response:
            assert response.status == 200
        async with asyncio.timeout(20):
            while True:
                if not (await database(p1)).get("tombstones", 1):
                    break
                await asyncio.sleep(0.1)  # another process: nothing to await here
        p2 = await served(*args("p2", p1.node), env=env)  # its store holds "gone"
        await until_member(p1, "p2")
        async with asyncio.timeout(20):
            while True:
                if await keys(p2) == ["kept"]:
                    break
                await asyncio.sleep(0.1)  # another process: nothing to await here
        assert await keys(p1) == ["kept"]


async def test_while_reconciling_only_the_node_reconciled_with_vouches_for_keys() -> None:
    # A node reconciling with p gets, meanwhile, the directory of q, as far behind
    # as itself (a key deleted and pruned elsewhere), and a write of a new key from
    # r: the new key stays, q's stale one goes with what p lacks.
    node = pydds.Node("x")
    await node.database("db").set("live", 1)
    ks = node.database("db")._keyspace
    ks.fresh_from = "p"
    ks.apply_directory(encode_update([("stale", Entry(1))]), "q")  # a step 2 of q's
    ks.apply_parts("new", 1, encode_update([("new", Entry(1))]), None, "r", False)
    ks.apply_directory(encode_update([("live", Entry(1))]), "p")  # p's whole directory
    dropped = ks.reconcile("p")
    assert [(c.key, c.kind) for c in dropped] == [("stale", "deleted")]
    assert sorted(ks.directory.entries()) == ["live", "new"]
    await node.close()


async def test_a_horizon_under_two_anti_entropy_periods_is_warned_of(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="pydds"):
        async with pydds.Node("short", limits=pydds.Limits(tombstone_horizon=10.0)):
            pass
        async with pydds.Node("long"):  # six hours
            pass
    warned = [r.getMessage() for r in caplog.records if "tombstone_horizon" in r.getMessage()]
    assert len(warned) == 1
    assert warned[0].startswith("short: tombstone_horizon 10s is under two anti-entropy")
