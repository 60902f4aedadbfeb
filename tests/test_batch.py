"""Batches: ``get_many``, ``set_many`` and ``delete_many`` (one pull round, one
acknowledgement round), and ``keys(pattern=...)``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import pydds
from pydds.clock import FakeClock

from .memcluster import Cluster, names, until


async def test_get_many_returns_the_keys_found_in_the_order_asked() -> None:
    async with pydds.Node("solo") as node:
        db = node.database("d")
        await db.set_many({"a": 1, "b": {"x": [1]}, "c": "three"})
        assert await db.get_many(["c", "nope", "a", "c"]) == {"c": "three", "a": 1}
        assert await db.get_many([]) == {}
        assert await db.get_many(iter(["b"])) == {"b": {"x": [1]}}
        got = await db.get_many(["a"])
        got["a"] = 2  # a fresh copy
        assert await db.get("a") == 1
        with pytest.raises(pydds.InvalidValue):
            await db.get_many("abc")  # one str is not a list of keys
        with pytest.raises(pydds.InvalidName):
            await db.get_many(["a", ""])


async def test_get_many_pulls_every_value_not_held_at_once(cluster: Cluster) -> None:
    a, b = await cluster.pair()
    db_a, db_b = a.database("d"), b.database("d")
    await db_a.set_many({f"k{i}": i for i in range(50)})
    await until(lambda: len(db_b) == 50)
    assert not any(db_b.holds(f"k{i}") for i in range(50))
    wanted = [f"k{i}" for i in range(0, 50, 2)]
    got = await db_b.get_many([*wanted, "absent"])
    assert got == {f"k{i}": i for i in range(0, 50, 2)}
    assert all(db_b.holds(key) for key in wanted)


async def test_get_many_says_when_no_holder_answers(cluster: Cluster) -> None:
    a, b = await cluster.pair()
    await a.database("d").set("k", 1)
    db_b = b.database("d")
    await until(lambda: "k" in db_b)
    await cluster.network.partition([a.address or ""], [b.address or ""])
    with pytest.raises(pydds.Unavailable, match="1 values could not be pulled"):
        await db_b.get_many(["k"])


async def test_set_many_checks_everything_before_it_changes_anything() -> None:
    async with pydds.Node("solo") as node:
        db = node.database("d")
        bad: list[dict[str, Any]] = [
            {"a": 1, "b": {1, 2}},  # a set is no JSON value
            {"a": 1, "": 2},  # an empty key
            {"a": 1, "b": float("nan")},
        ]
        for items in bad:
            with pytest.raises((pydds.InvalidValue, pydds.InvalidName)):
                await db.set_many(items)
        with pytest.raises(pydds.InvalidValue):
            await db.set_many([("a", 1)])  # type: ignore[arg-type]
        with pytest.raises(pydds.InvalidValue):
            await db.set_many({"a": 1}, ack="most")
        with pytest.raises(pydds.InvalidValue):
            await db.set_many({"a": 1}, ttl=0)
        assert db.keys() == []


async def test_set_many_stops_at_the_key_limit_and_keeps_what_it_set() -> None:
    async with pydds.Node("solo", limits=pydds.Limits(max_keys=3)) as node:
        db = node.database("d")
        async with node.events() as events:
            with pytest.raises(pydds.InvalidValue, match="its limit"):
                await db.set_many({f"k{i}": i for i in range(5)})
            assert db.keys() == ["k0", "k1", "k2"]
            assert [e.key for e in events.ready(10)] == ["k0", "k1", "k2"]


async def test_set_many_waits_for_one_acknowledgement_round(cluster: Cluster) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b", ["mem://a"])
    c = await cluster.start("c", ["mem://a"])
    await until(lambda: all(len(names(n)) == 3 for n in (a, b, c)))
    db = a.database("d")
    await db.set_many({f"k{i}": {"n": i} for i in range(200)}, ack="all", ttl=60)
    assert a.network_counts()["ack:waited"] == 1
    for node in (b, c):  # an acknowledged write is held by those that acknowledged it
        other = node.database("d")
        assert len(other) == 200
        assert all(other.holds(f"k{i}") for i in range(200))
        assert other.ttl("k7") == pytest.approx(60)
        assert await other.get("k199") == {"n": 199}


async def test_a_batch_counts_a_node_only_once_it_acknowledged_every_write(
    cluster: Cluster,
) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b", ["mem://a"])
    c = await cluster.start("c", ["mem://a"])
    await until(lambda: all(len(names(n)) == 3 for n in (a, b, c)))
    await cluster.network.partition([a.address or ""], [c.address or ""])
    await until(lambda: "c" not in names(a))
    db = a.database("d")
    await db.set_many({f"k{i}": i for i in range(20)}, ack="majority")  # a and b
    waiting = asyncio.ensure_future(db.set_many({f"j{i}": i for i in range(20)}, ack="all"))
    await until(lambda: "j19" in b.database("d"))
    await cluster.clock.advance(6, step=0.5)
    with pytest.raises(pydds.AckTimeout):
        await waiting
    assert b.database("d").holds("j19")  # the batch stands


async def test_delete_many(cluster: Cluster) -> None:
    a, b = await cluster.pair()
    db_a, db_b = a.database("d"), b.database("d")
    await db_a.set_many({"a": 1, "b": 2, "c": 3}, ack="all")
    async with b.events(kinds=["deleted"]) as events:
        assert await db_a.delete_many(["a", "c", "nope"], ack="all") == 2
        assert db_b.keys() == ["b"]
        assert sorted(e.key or "" for e in events.ready(10)) == ["a", "c"]
    assert await db_a.delete_many([]) == 0


async def test_keys_by_glob_pattern() -> None:
    node = pydds.Node("solo", clock=FakeClock())
    db = node.database("d")
    await db.set_many({k: 1 for k in ["user:1", "user:2", "user:10", "users", "admin:1", "u*"]})
    assert db.keys(pattern="user:*") == ["user:1", "user:10", "user:2"]
    assert db.keys(pattern="user:?") == ["user:1", "user:2"]
    assert db.keys(pattern="*:1") == ["admin:1", "user:1"]
    assert db.keys(pattern="user:[!1]") == ["user:2"]
    assert db.keys(pattern="u[*]") == ["u*"]
    assert db.keys(pattern="users") == ["users"]
    assert db.keys("user:", pattern="*0") == ["user:10"]
    assert db.keys("admin", pattern="user*") == []
    assert db.keys("user:1", pattern="user*") == ["user:1", "user:10"]
    with pytest.raises(pydds.InvalidValue):
        db.keys(pattern=5)  # type: ignore[arg-type]
    await node.close()


async def test_a_batch_has_at_most_max_batch_keys() -> None:
    from pydds.database import MAX_BATCH

    async with pydds.Node("solo") as node:
        db = node.database("d")
        with pytest.raises(pydds.InvalidValue, match="at most"):
            await db.set_many({f"k{i}": i for i in range(MAX_BATCH + 1)})
        with pytest.raises(pydds.InvalidValue, match="at most"):
            await db.delete_many(f"k{i}" for i in range(MAX_BATCH + 1))
        assert db.keys() == []
