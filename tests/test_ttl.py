"""Keys with a time to live (docs/semantics.md, "Time to live"): deadlines carried
in the directory, reads that never return an expired value, ``expired`` events,
and deterministic merges of concurrent TTL changes."""

from __future__ import annotations

import math
from typing import Any

import msgpack
import pytest

import pydds
from pydds.clock import FakeClock
from pydds.crdt.directory import Entry
from pydds.keyspace import LAPSE_CHUNK
from pydds.modules.persist import Persistence

from .helpers import Replica, settle
from .memcluster import Cluster, until


def embedded(clock: FakeClock, **options: Any) -> pydds.Node:
    """A node that is not started: no timer, so nothing lapses a key but a write."""
    return pydds.Node("solo", clock=clock, **options)


async def kinds_of(events: pydds.Subscription) -> list[tuple[str, str | None]]:
    return [(e.kind, e.key) for e in events.ready(100)]


# -- one node -----------------------------------------------------------------------


async def test_a_key_is_gone_at_its_deadline_with_an_expired_event() -> None:
    clock = FakeClock()
    async with pydds.Node("solo", clock=clock) as node:
        db = node.database("cache")
        async with node.events(database="cache") as events:
            await db.set("session", {"user": 1}, ttl=5)
            await db.set("kept", 1)
            assert db.ttl("session") == pytest.approx(5)
            assert db.ttl("kept") is None
            await clock.advance(4.9)
            assert await db.get("session") == {"user": 1}
            await clock.advance(0.2)
            assert "session" not in db
            assert db.keys() == ["kept"]
            assert len(db) == 1
            with pytest.raises(pydds.KeyNotFound):
                await db.get("session")
            with pytest.raises(pydds.KeyNotFound):
                db.ttl("session")
            got = await kinds_of(events)
        assert got == [("created", "session"), ("created", "kept"), ("expired", "session")]
        assert node.event_counts["expired"] == 1
        assert node.event_counts["deleted"] == 0
        assert not db.keyspace.holds("session")  # its value document is dropped


async def test_a_read_after_the_deadline_misses_before_any_sweep() -> None:
    clock = FakeClock()
    node = embedded(clock)
    db = node.database("cache")
    await db.set("k", "v", ttl=1)
    await clock.advance(1)  # nothing runs: the node has no timer
    assert db.keyspace.holds("k")  # not lapsed yet...
    assert await db.get("k", None) is None  # ...and absent for every read
    assert "k" not in db
    assert db.keys() == []
    assert len(db) == 0
    assert db.keyspace.counts() == (0, 1, 0)
    await node.close()


async def test_a_write_after_the_deadline_starts_a_new_key_after_its_expiry() -> None:
    clock = FakeClock()
    node = embedded(clock)
    db = node.database("cache")
    async with node.events(database="cache") as events:
        await db.set("k", [1], ttl=1)
        await clock.advance(2)
        await db.append("k", [], 2)  # the expired [1] is not appended to
        assert await db.get("k") == [2]
        assert db.ttl("k") is None
        assert db.keyspace.generation("k") == 2
        assert await kinds_of(events) == [("created", "k"), ("expired", "k"), ("created", "k")]
    await node.close()


@pytest.mark.parametrize("operation", ["delete", "expire", "persist", "update", "incr"])
async def test_every_write_sees_an_expired_key_as_absent(operation: str) -> None:
    clock = FakeClock()
    node = embedded(clock)
    db = node.database("cache")
    await db.set("k", {"n": 1} if operation == "update" else 1, ttl=1)
    await clock.advance(1)
    async with node.events(database="cache") as events:
        if operation == "delete":
            assert await db.delete("k") is False
        elif operation == "expire":
            assert await db.expire("k", 10) is False
        elif operation == "persist":
            assert await db.persist("k") is False
        elif operation == "update":
            await db.update("k", {"m": 2})
            assert await db.get("k") == {"m": 2}
        else:
            assert await db.incr("k") == 1
        got = await kinds_of(events)
    assert got[0] == ("expired", "k")  # said before anything the write made
    assert [kind for kind, _ in got[1:]] == (["created"] if operation in ("update", "incr") else [])
    await node.close()


async def test_set_clears_a_ttl_and_other_writes_keep_it() -> None:
    """As Redis: SET without a TTL makes the key persistent; HSET, RPUSH, INCR keep it."""
    clock = FakeClock()
    node = embedded(clock)
    db = node.database("d")
    await db.set("d", {"a": 1}, ttl=10)
    await db.update("d", {"b": 2})
    await db.set("l", [], ttl=10)
    await db.append("l", [], 1)
    await db.incr("c", ttl=10)
    await db.incr("c")
    for key in ("d", "l", "c"):
        assert db.ttl(key) == pytest.approx(10)
    await db.set("d", {"a": 2})
    assert db.ttl("d") is None
    await db.update("l2", {"x": 1}, ttl=3)  # a write that creates a key may give one
    assert db.ttl("l2") == pytest.approx(3)
    await db.update("d", {"c": 3}, ttl=7)  # and one that changes it
    assert db.ttl("d") == pytest.approx(7)
    await node.close()


async def test_expire_and_persist() -> None:
    clock = FakeClock()
    node = embedded(clock)
    db = node.database("d")
    assert await db.expire("absent", 5) is False
    assert await db.persist("absent") is False
    await db.set("k", 1)
    assert await db.persist("k") is False  # it had no TTL
    assert await db.expire("k", 5) is True
    await clock.advance(2)
    assert db.ttl("k") == pytest.approx(3)
    assert await db.expire("k", 5) is True  # from now: 5 more
    assert db.ttl("k") == pytest.approx(5)
    assert await db.persist("k") is True
    assert db.ttl("k") is None
    await clock.advance(100)
    assert await db.get("k") == 1
    with pytest.raises(pydds.KeyNotFound):
        db.ttl("absent")
    await node.close()


async def test_a_ttl_change_is_a_changed_event_that_leaves_the_value() -> None:
    clock = FakeClock()
    node = embedded(clock)
    db = node.database("d")
    await db.set("k", {"a": 1})
    async with node.events() as events:
        await db.expire("k", 5)
        await db.set("k", {"a": 1}, ttl=5)  # the same value, a TTL from now
        await db.persist("k")
        await db.persist("k")  # nothing to do: no event
        got = await kinds_of(events)
    assert got == [("changed", "k")] * 3
    assert await db.get("k") == {"a": 1}
    await node.close()


async def test_a_database_default_ttl_applies_to_every_write_without_one() -> None:
    clock = FakeClock()
    node = embedded(clock)
    db = node.database("cache", ttl=30)
    assert db.default_ttl == 30
    assert node.database("cache").default_ttl == 30
    await db.set("a", 1)
    await db.incr("b")
    await clock.advance(10)
    await db.incr("b")  # every write restarts the TTL at the default
    await db.set("c", 1, ttl=5)  # one given wins over the default
    assert db.ttl("a") == pytest.approx(20)
    assert db.ttl("b") == pytest.approx(30)
    assert db.ttl("c") == pytest.approx(5)
    assert await db.persist("b") is True  # and persist still drops it
    assert db.ttl("b") is None
    node.database("cache", ttl=None)
    await db.set("a", 2)
    assert db.ttl("a") is None
    await node.close()


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, "5", True, 10**400])
async def test_a_bad_ttl_changes_nothing(bad: Any) -> None:
    node = embedded(FakeClock())
    db = node.database("d")
    await db.set("k", 1)
    for write in (
        db.set("k", 2, ttl=bad),
        db.update("u", {"a": 1}, ttl=bad),
        db.append("l", [], 1, ttl=bad),
        db.incr("c", ttl=bad),
        db.expire("k", bad),
    ):
        with pytest.raises(pydds.InvalidValue):
            await write
    with pytest.raises(pydds.InvalidValue):
        node.database("other", ttl=bad)
    assert db.keys() == ["k"]
    assert await db.get("k") == 1
    assert db.ttl("k") is None
    await node.close()


async def test_a_failed_write_changes_no_ttl() -> None:
    node = embedded(FakeClock())
    db = node.database("d")
    await db.set("k", "text")
    with pytest.raises(pydds.WrongType):
        await db.update("k", {"a": 1}, ttl=5)
    with pytest.raises(pydds.WrongType):
        await db.incr("k", ttl=5)
    assert db.ttl("k") is None
    await node.close()


async def test_many_keys_expiring_at_once_lapse_over_several_timer_turns() -> None:
    clock = FakeClock()
    async with pydds.Node("solo", clock=clock) as node:
        db = node.database("cache")
        count = LAPSE_CHUNK + 500
        for i in range(count):
            await db.set(f"k{i}", i, ttl=1)
        await db.set("kept", 1)
        await clock.advance(1.1)
        assert len(db) == 1  # every read sees them gone at once
        await until(lambda: len(db.keyspace._keys) == 1)
        assert node.event_counts["expired"] == count


async def test_deadlines_survive_a_store_reload(tmp_path: Any) -> None:
    """The deadline is in the directory: what a store keeps brings it back (a
    restart of ``pydds serve`` is tested in test_http_api.py)."""
    clock = FakeClock()
    node = pydds.Node("a", clock=clock, modules=[Persistence(path=str(tmp_path))])
    await node.start()
    db = node.database("d")
    await db.set("short", 1, ttl=5)
    await db.set("long", 2, ttl=50)
    await node.close()
    await clock.advance(10)
    again = pydds.Node("a", clock=clock, modules=[Persistence(path=str(tmp_path))])
    await again.start()
    db = again.database("d")
    assert db.keys() == ["long"]
    assert db.ttl("long") == pytest.approx(40)
    assert await db.get("long") == 2
    await again.close()


# -- a cluster ----------------------------------------------------------------------


async def test_every_node_expires_the_key_at_the_writers_deadline(cluster: Cluster) -> None:
    a, b = await cluster.pair()
    db_a, db_b = a.database("cache"), b.database("cache")
    async with b.events(database="cache") as events:
        await db_a.set("k", {"v": 1}, ttl=5, ack="all")
        await until(lambda: "k" in db_b)
        assert db_b.ttl("k") == pytest.approx(5)
        assert not db_b.holds("k") or await db_b.get("k") == {"v": 1}
        await cluster.clock.advance(5.1)
        assert "k" not in db_a
        assert "k" not in db_b
        await until(lambda: b.event_counts["expired"] == 1 and a.event_counts["expired"] == 1)
        got = [e.kind for e in events.ready(10)]
    assert got[0] == "created"
    assert got[-1] == "expired"
    assert "deleted" not in got


async def test_a_ttl_change_reaches_a_node_that_does_not_hold_the_value(
    cluster: Cluster,
) -> None:
    a, b = await cluster.pair()
    db_a, db_b = a.database("cache"), b.database("cache")
    await db_a.set("k", 1)
    await until(lambda: "k" in db_b)
    assert not db_b.holds("k")
    await db_a.expire("k", 3, ack="all")  # acknowledged, as any write
    assert db_b.ttl("k") is not None
    assert db_b.ttl("k") == pytest.approx(3)
    await db_a.persist("k")
    await until(lambda: db_b.ttl("k") is None)
    await db_b.expire("k", 2)  # a write on b: b pulls the value and holds it
    assert db_b.holds("k")
    await until(lambda: db_a.ttl("k") is not None)
    await cluster.clock.advance(2.1)
    await until(lambda: a.event_counts["expired"] == 1 and b.event_counts["expired"] == 1)


class SkewedClock:
    """A cluster's fake clock, seen by a node whose time of day is ``skew`` off."""

    def __init__(self, base: FakeClock, skew: float) -> None:
        self.base, self.skew = base, skew

    def now(self) -> float:
        return self.base.now()

    def wall(self) -> float:
        return self.base.wall() + self.skew

    async def sleep_until(self, deadline: float) -> None:
        await self.base.sleep_until(deadline)


async def test_a_node_whose_clock_is_ahead_expires_the_key_that_much_earlier(
    cluster: Cluster,
) -> None:
    a = await cluster.start("a")
    b = cluster.node("b", ["mem://a"], clock=SkewedClock(cluster.clock, 3.0))
    await b.start()
    db_a, db_b = a.database("d"), b.database("d")
    await db_a.set("k", 1, ttl=10)
    await until(lambda: "k" in db_b)
    assert db_b.ttl("k") == pytest.approx(7)  # the deadline is a's, b's clock is ahead
    await cluster.clock.advance(7.1)
    assert "k" not in db_b
    assert "k" in db_a
    await cluster.clock.advance(3)
    assert "k" not in db_a


# -- merges ---------------------------------------------------------------------------


def replicas(clock: FakeClock) -> tuple[Replica, Replica]:
    a, b = Replica("a", 101), Replica("b", 202)
    a.node.clock = b.node.clock = clock  # before any database is made
    return a, b


@pytest.mark.parametrize(
    ("first", "second", "left"),
    [
        (("expire", 10), ("expire", 20), 20),  # the later deadline wins
        (("expire", 20), ("expire", 10), 20),
        (("expire", 10), ("persist",), None),  # no deadline beats any
        (("persist",), ("expire", 10), None),
    ],
)
async def test_concurrent_ttl_changes_merge_to_the_later_deadline(
    first: tuple[Any, ...], second: tuple[Any, ...], left: float | None
) -> None:
    clock = FakeClock()
    a, b = replicas(clock)
    await a.db().set("k", 1, ttl=5)
    settle(a, b)
    for replica, (op, *args) in ((a, first), (b, second)):
        await getattr(replica.db(), op)("k", *args)
    settle(a, b)
    assert a.directory() == b.directory()
    assert a.db().ttl("k") == b.db().ttl("k") == (None if left is None else pytest.approx(left))


async def test_a_ttl_change_that_saw_another_wins_over_it() -> None:
    clock = FakeClock()
    a, b = replicas(clock)
    await a.db().set("k", 1)
    await a.db().expire("k", 100)
    settle(a, b)
    await b.db().expire("k", 1)  # it saw the 100: a shorter TTL, later, wins
    settle(a, b)
    assert a.db().ttl("k") == b.db().ttl("k") == pytest.approx(1)


async def test_a_delete_wins_over_a_concurrent_ttl_change() -> None:
    clock = FakeClock()
    a, b = replicas(clock)
    await a.db().set("k", 1)
    settle(a, b)
    await a.db().delete("k")
    await b.db().expire("k", 100)
    settle(a, b)
    assert "k" not in a.db()
    assert "k" not in b.db()
    assert a.directory() == b.directory()


async def test_a_key_expired_on_one_replica_and_extended_on_another_lives() -> None:
    """A node whose clock is behind extends a key another already lapsed: the
    greater entry (the extension) is live everywhere, the value pulled again."""
    clock = FakeClock()
    a, b = replicas(clock)
    b.node.clock = SkewedClock(clock, -5.0)  # before b's database is made
    await a.db().set("k", 1, ttl=5)
    settle(a, b)
    await clock.advance(6)
    assert "k" not in a.db()
    assert "k" in b.db()
    await b.db().expire("k", 60)
    settle(a, b)
    assert "k" in a.db()
    assert a.db().ttl("k") == pytest.approx(55)
    assert a.directory() == b.directory()


# -- the encoded entry ----------------------------------------------------------------


def test_an_entry_without_a_ttl_encodes_as_before() -> None:
    assert msgpack.unpackb(Entry(3).encode()) == [3, False]
    entry = Entry(3, False, 2, 1.5e9)
    assert Entry.decode(entry.encode()) == entry
    persisted = Entry(3, False, 4)
    assert msgpack.unpackb(persisted.encode()) == [3, False, 4, None]
    assert Entry.decode(persisted.encode()) == persisted
    assert Entry(3, False, 1, 10.0) < Entry(3, False, 1, 20.0) < Entry(3, False, 1)
    assert Entry(3, False, 1) < Entry(3, False, 2, 1.0) < Entry(3, True, 0, 1.0) < Entry(4)
    deleted = Entry(3, True, 0, 1.7e9)  # a delete says when it was
    assert msgpack.unpackb(deleted.encode()) == [3, True, 0, 1.7e9]
    assert Entry.decode(msgpack.packb([3, True])) == Entry(3, True, 0, 0.0)  # undated: oldest


@pytest.mark.parametrize(
    "fields",
    [
        [1, False, -1, None],
        [1, False, 1.5, None],
        [1, False, 1, "soon"],
        [1, False, 1, math.nan],
        [1, False, 1, math.inf],
        [1, False, 1],
        [1, False, 1, None, 5],
        {"gen": 1},
        "ab",
    ],
)
def test_a_malformed_ttl_entry_decodes_to_none(fields: Any) -> None:
    assert Entry.decode(msgpack.packb(fields)) is None


async def test_deadlines_of_keys_gone_meanwhile_do_not_break_later_ttls() -> None:
    """Deletes leave their keys' entries in the expiry heap until it is rebuilt;
    a rebuild while a key is being created with a TTL must not fail."""
    node = embedded(FakeClock())
    db = node.database("d")
    await db.set_many({f"k{i}": i for i in range(2000)}, ttl=50)
    await db.delete_many([f"k{i}" for i in range(1900)])
    for i in range(3):
        await db.set(f"new{i}", i, ttl=5)
    assert db.ttl("new2") == pytest.approx(5)
    assert db.ttl("k1999") == pytest.approx(50)
    assert await db.expire("k1999", 7) is True
    await node.close()


async def test_a_key_past_its_deadline_does_not_count_for_the_key_limit() -> None:
    clock = FakeClock()
    node = embedded(clock, limits=pydds.Limits(max_keys=2))
    db = node.database("d")
    await db.set("a", 1, ttl=1)
    await db.set("b", 1)
    await clock.advance(2)  # "a" has not lapsed (no timer), and is gone
    await db.set("c", 1)
    assert db.keys() == ["b", "c"]
    await node.close()


async def test_concurrent_creations_with_and_without_a_ttl_keep_none() -> None:
    """Rule 9 for a key both replicas create: no deadline wins over a deadline."""
    for with_ttl_first in (True, False):
        a, b = replicas(FakeClock())
        first, second = (a, b) if with_ttl_first else (b, a)
        await first.db().set("k", 1, ttl=5)
        await second.db().set("k", 2)
        settle(a, b)
        assert a.directory() == b.directory()
        assert a.db().ttl("k") is None
        assert b.db().ttl("k") is None


async def test_an_expired_value_leaves_the_holder_table(cluster: Cluster) -> None:
    a, b = await cluster.pair()
    await a.database("d").set("k", 1, ttl=2, ack="all")  # b holds it
    assert b.database("d").holds("k")
    holders_a = a._peers.replication.holders  # type: ignore[union-attr]
    holders_b = b._peers.replication.holders  # type: ignore[union-attr]
    assert ("d", "k", 1) in holders_a
    await cluster.clock.advance(3)
    await until(lambda: a.event_counts["expired"] == 1 and b.event_counts["expired"] == 1)
    assert ("d", "k", 1) not in holders_a
    assert ("d", "k", 1) not in holders_b
