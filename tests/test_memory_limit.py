"""A memory limit: held values measured, copies evicted past ``Limits.max_memory``
(to the store, or when another node holds them), reloaded on a read, never the last."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pycrdt
import pytest

import pydds
from pydds.config import parse_bytes
from pydds.crdt.keydoc import ON_DISK, KeyDoc
from pydds.eviction import LIVE_FLOOR
from pydds.memory import ENTRY, Footprint
from pydds.modules.persist import Persistence
from pydds.storage import SqliteStore

from .helpers import Replica
from .memcluster import Cluster, names, until

VALUE = {"name": "user", "email": "user@example.com", "age": 42, "score": 3.5, "tags": ["a"]}


def audit(node: pydds.Node) -> None:
    """The footprint's sum is the sum of what every held document measures."""
    held = [
        kd
        for name in node.databases()
        for kd in node.database(name).keyspace._keys.values()
        if kd.held
    ]
    assert len(node.footprint) == len(held)
    assert node.footprint.used == sum(kd.footprint() + ENTRY for kd in held)
    assert all(node.footprint.size_of(kd) == kd.footprint() + ENTRY for kd in held)


def value(i: int) -> dict[str, Any]:
    return {**VALUE, "age": i, "name": f"user-{i}"}


# -- measuring ---------------------------------------------------------------------


async def test_the_footprint_follows_every_operation() -> None:
    limits = pydds.Limits(live_docs=4)  # documents suspend as others are used
    async with pydds.Node("solo", limits=limits) as node:
        db = node.database("db")
        assert node.footprint.used == 0
        for i in range(20):
            await db.set(f"k{i}", value(i))
        audit(node)
        used = node.footprint.used
        assert used > 20 * ENTRY
        await db.update("k1", {"age": 7})
        await db.append("list", [], 1)
        await db.incr("n", 3)
        for i in range(0, 20, 3):
            await db.get(f"k{i}")
        audit(node)
        for i in range(10):
            await db.delete(f"k{i}")
        audit(node)
        assert node.footprint.used < used
        await db.set("k10", {"big": "x" * 10_000})
        audit(node)
        for name in list(db):
            await db.delete(name)
        assert node.footprint.used == 0
        assert len(node.footprint) == 0


async def test_values_a_peer_sends_and_pulls_are_measured(cluster: Cluster) -> None:
    a, b = await cluster.pair()
    for i in range(10):
        await a.database("db").set(f"k{i}", value(i))
    await until(lambda: len(b.database("db")) == 10)
    audit(b)
    assert b.footprint.used == 0  # the directory only: values stay lazy
    for i in range(5):
        await b.database("db").get(f"k{i}")
    audit(b)
    assert len(b.footprint) == 5
    await a.database("db").update("k1", {"age": 1})  # pushed to b, a holder now
    await until(lambda: b.database("db").keyspace.read("k1")["age"] == 1)
    audit(b)


def test_sampling_ranks_by_the_policy() -> None:
    for policy in ("lru", "lfu"):
        footprint = Footprint(10_000, policy, rng=random.Random(1))  # type: ignore[arg-type]
        docs = [KeyDoc(1, b"x" * 10, accessed=float(i)) for i in range(10)]
        for i, kd in enumerate(docs):
            footprint.measure("db", f"k{i}", kd)
        for _ in range(30):  # k0 is the oldest, but the most used
            footprint.bump(docs[0], 0.0)
        first = footprint.sample(10.0)[0][1]
        assert first == ("k1" if policy == "lfu" else "k0")
        footprint.forget(docs[3])
        assert len(footprint) == 9
        assert {key for _, key, _ in footprint.sample(10.0)} == {f"k{i}" for i in range(10)} - {
            "k3"
        }
        assert sorted(kd.mem_slot for kd in docs if kd is not docs[3]) == list(range(9))
        assert docs[3].mem_slot < 0


def test_an_lfu_count_halves_every_minute_idle() -> None:
    footprint = Footprint(1000, "lfu")
    hot, cold = KeyDoc(1, b"x", accessed=0.0), KeyDoc(1, b"y", accessed=600.0)
    footprint.measure("db", "hot", hot)
    footprint.measure("db", "cold", cold)
    for _ in range(100):
        footprint.bump(hot, 0.0)  # popular ten minutes ago
    footprint.bump(cold, 600.0)  # used once, just now
    assert footprint.sample(600.0)[0][1] == "hot"  # 105 / 2**10 < 6


# -- limits and their settings ------------------------------------------------------


def test_limits_check_the_memory_settings() -> None:
    assert pydds.Limits(max_memory=1 << 20).max_memory == 1 << 20
    for bad in (0, -1, True, 1.5, "1MiB"):
        with pytest.raises(pydds.InvalidValue):
            pydds.Limits(max_memory=bad)  # type: ignore[arg-type]
    with pytest.raises(pydds.InvalidValue, match="lru"):
        pydds.Limits(eviction="random")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512MiB", 512 << 20),
        ("512mib", 512 << 20),
        ("100MB", 100_000_000),
        ("1.5GB", 1_500_000_000),
        ("2g", 2 << 30),
        ("64k", 64 << 10),
        ("1048576", 1 << 20),
        (" 10 MiB ", 10 << 20),
        (4096, 4096),
    ],
)
def test_sizes_parse(text: object, size: int) -> None:
    assert parse_bytes(text) == size


@pytest.mark.parametrize(
    "text", ["", "MiB", "-1MiB", "0", "1 parsec", "1e9", True, None, "1.5.5GB"]
)
def test_bad_sizes_are_refused(text: object) -> None:
    with pytest.raises(pydds.InvalidValue):
        parse_bytes(text)


# -- eviction -------------------------------------------------------------------------


async def test_without_another_copy_nothing_is_evicted_and_writes_go_on() -> None:
    limits = pydds.Limits(max_memory=20_000)
    async with pydds.Node("solo", limits=limits) as node:
        db = node.database("db")
        full = node.events(kinds=["memory_full"])
        for i in range(200):
            await db.set(f"k{i}", value(i))
        event = await asyncio.wait_for(anext(full), 5)
        assert event.payload["limit"] == 20_000
        assert event.payload["used"] > 20_000
        assert node.evictor.full >= 1
        assert sum(node.evictor.evicted.values()) == 0
        assert all(db.holds(f"k{i}") for i in range(200))
        assert await db.get("k0") == value(0)
        full.close()


async def test_live_documents_are_suspended_before_any_copy_goes() -> None:
    limits = pydds.Limits(max_memory=300_000)  # 200 live documents take 700 KB
    async with pydds.Node("solo", limits=limits) as node:
        db = node.database("db")
        for i in range(200):
            await db.set(f"k{i}", value(i))
        assert node.footprint.used <= 300_000
        assert node.evictor.full == 0
        assert sum(node.evictor.evicted.values()) == 0
        assert all(db.holds(f"k{i}") for i in range(200))
        assert LIVE_FLOOR <= len(node._live) < 100  # the rest kept encoded
        audit(node)


async def test_a_store_takes_the_evicted_copies_and_reads_reload_them(tmp_path: Path) -> None:
    limits = pydds.Limits(max_memory=60_000)
    node = pydds.Node("solo", limits=limits, modules=[Persistence(str(tmp_path))])
    async with node:
        db = node.database("db")
        evicted = node.events(kinds=["evicted"])
        for i in range(500):
            await db.set(f"k{i}", value(i))
        first = await asyncio.wait_for(anext(evicted), 5)
        assert first.database == "db"
        await asyncio.sleep(0)
        assert node.footprint.used <= 60_000
        assert node.evictor.evicted["disk"] > 0
        audit(node)
        on_disk = [k for k in db if db.keyspace.on_disk(k) is not None]
        assert on_disk
        for i in range(500):  # every key reads back: from memory, or from the disk
            assert await db.get(f"k{i}") == value(i)
        assert node.evictor.reloaded["disk"] >= len(on_disk)
        assert node.footprint.used <= 60_000 + 2 * node.footprint.size_of(db.keyspace._keys["k499"])
        await db.update(on_disk[0], {"age": -1})  # a write reloads first, then writes
        assert await db.get(on_disk[0]) == {**value(int(on_disk[0][1:])), "age": -1}
        evicted.close()
    # A restart restores every value, then evicts again past the limit.
    node = pydds.Node("solo", limits=limits, modules=[Persistence(str(tmp_path))])
    async with node:
        db = node.database("db")
        assert len(db) == 500
        assert node.footprint.used <= 60_000  # evicted again once the store was attached
        for i in range(500):
            expected = value(i) if f"k{i}" != on_disk[0] else {**value(i), "age": -1}
            assert await db.get(f"k{i}") == expected


async def test_a_deleted_key_does_not_come_back_from_the_disk(tmp_path: Path) -> None:
    limits = pydds.Limits(max_memory=30_000)
    async with pydds.Node("solo", limits=limits, modules=[Persistence(str(tmp_path))]) as node:
        db = node.database("db")
        for i in range(300):
            await db.set(f"k{i}", value(i))
        await asyncio.sleep(0)
        gone = next(k for k in db if db.keyspace.on_disk(k) is not None)
        await db.delete(gone)
        assert gone not in db
        await db.set(gone, {"new": True})  # a new generation: nothing on disk for it
        assert await db.get(gone) == {"new": True}


async def test_pinned_keys_are_never_evicted(tmp_path: Path) -> None:
    limits = pydds.Limits(max_memory=30_000)
    async with pydds.Node("solo", limits=limits, modules=[Persistence(str(tmp_path))]) as node:
        db = node.database("db")
        await db.pin("keep:")
        for i in range(20):
            await db.set(f"keep:{i}", value(i))
        for i in range(300):
            await db.set(f"k{i}", value(i))
        await asyncio.sleep(0)
        assert node.evictor.evicted["disk"] > 0
        assert all(db.holds(f"keep:{i}") for i in range(20))


async def test_lfu_keeps_the_values_read_often(tmp_path: Path) -> None:
    limits = pydds.Limits(max_memory=40_000, eviction="lfu")
    async with pydds.Node("solo", limits=limits, modules=[Persistence(str(tmp_path))]) as node:
        db = node.database("db")
        await db.set("hot", value(0))
        for _ in range(50):
            await db.get("hot")
        for i in range(400):
            await db.set(f"k{i}", value(i))
        await asyncio.sleep(0)
        assert node.evictor.evicted["disk"] > 100
        assert db.holds("hot")


async def test_a_node_evicts_what_a_keeper_holds_and_pulls_it_back(cluster: Cluster) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b", ["mem://a"])
    c = cluster.node("c", ["mem://a"], limits=pydds.Limits(max_memory=40_000))
    await c.start()
    await until(lambda: all(len(names(n)) == 3 for n in (a, b, c)))
    db = c.database("db")
    for i in range(300):
        await db.set(f"k{i}", value(i), ack="all")  # a and b hold every value too
    await until(lambda: c.footprint.used <= 40_000)
    assert c.evictor.evicted["peer"] > 0
    assert c.evictor.evicted["disk"] == 0
    evicted = [k for k in db if not db.holds(k)]
    assert evicted
    key = evicted[0]
    # c released it: a change made on a reaches c as a notice, not a delta.
    await a.database("db").update(key, {"age": -5})
    await until(lambda: a.database("db").keyspace.read(key)["age"] == -5)
    assert not db.holds(key)
    for i in range(300):
        expected = value(i) if f"k{i}" != key else {**value(i), "age": -5}
        assert await db.get(f"k{i}") == expected
    assert c.evictor.reloaded["peer"] >= len(evicted)


async def test_the_node_first_by_name_keeps_its_copies(cluster: Cluster) -> None:
    """Two nodes over their limit, each holding every value, each seeing the other
    as a holder: only the second by name evicts, so every value keeps a copy."""
    limits = pydds.Limits(max_memory=30_000)
    a = cluster.node("a", limits=limits)
    await a.start()
    b = cluster.node("b", ["mem://a"], limits=limits)
    await b.start()
    await until(lambda: len(names(a)) == 2 and len(names(b)) == 2)
    for i in range(200):
        await a.database("db").set(f"k{i}", value(i), ack="all")
    await until(lambda: b.footprint.used <= 30_000)
    await until(lambda: a.evictor.full > 0)
    assert a.evictor.evicted.total() == 0
    assert b.evictor.evicted["peer"] > 0
    for i in range(200):
        assert a.database("db").holds(f"k{i}") or b.database("db").holds(f"k{i}")


async def test_a_failing_disk_takes_no_evicted_copy(tmp_path: Path) -> None:
    store = Persistence(str(tmp_path), max_page_count=40, retry=0.01)
    limits = pydds.Limits(max_memory=30_000)
    async with pydds.Node("solo", limits=limits, modules=[store]) as node:
        db = node.database("db")
        for i in range(400):
            await db.set(f"k{i}", {"pad": "x" * 400, "i": i})
        with pytest.raises(pydds.StorageError):
            await store.barrier()
        assert store.spill_room == 0
        spilled = node.evictor.evicted["disk"]
        for i in range(400, 500):
            await db.set(f"k{i}", {"pad": "x" * 400, "i": i})
        await asyncio.sleep(0)
        assert node.evictor.evicted["disk"] == spilled  # nothing more went to disk
        for i in range(500):  # and nothing was lost
            assert (await db.get(f"k{i}"))["i"] == i


# -- the store's part -------------------------------------------------------------------


def _update(**fields: int) -> bytes:
    doc = pycrdt.Doc()
    root = doc.get("value", type=pycrdt.Map)
    for name, number in fields.items():
        root[name] = number
    return bytes(doc.get_update())


def _fields(update: bytes) -> dict[str, Any]:
    doc = pycrdt.Doc()
    doc.apply_update(update)
    return dict(doc.get("value", type=pycrdt.Map).to_py() or {})


def test_spilled_states_merge_and_an_older_one_is_ignored(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    try:
        store.append([], [("db", "k", 2, _update(a=1))])
        assert store.load_value("db", "k") is not None
        store.append([], [("db", "k", 2, _update(b=2))])  # a partial copy: merged
        gen, state = store.load_value("db", "k") or (0, b"")
        assert (gen, _fields(state)) == (2, {"a": 1, "b": 2})
        store.append([], [("db", "k", 1, _update(c=3))])  # an older generation: ignored
        assert _fields((store.load_value("db", "k") or (0, b""))[1]) == {"a": 1, "b": 2}
        store.append([("db", "k", 3, b"")], [("db", "j", 1, _update(j=1))])
        assert store.load_value("db", "nope") is None
        store.compact()
        assert store.load_value("db", "k") is None  # the tombstone folded it away
        store._db.execute("UPDATE state SET crc = crc + 1 WHERE key = 'j'")
        assert store.load_value("db", "j") is None  # damaged: not loaded
    finally:
        store.close()


def test_keydocs_marked_on_disk_are_not_held() -> None:
    kd = KeyDoc(1)
    kd.mem_slot = ON_DISK
    assert not kd.held
    assert kd.footprint() == 0


async def test_a_client_evicts_what_its_gateway_holds(cluster: Cluster) -> None:
    gateway = await cluster.start("z")  # its name sorts after the client's
    client = pydds.Client(
        "c",
        join=["mem://z"],
        transport=cluster.network.transport(),
        clock=cluster.clock,
        limits=pydds.Limits(max_memory=20_000),
    )
    cluster.nodes.append(client)
    await client.start()
    db = client.database("db")
    for i in range(100):
        await db.set(f"k{i}", value(i))  # a gateway holds what its clients write
    await until(lambda: len(gateway.database("db")) == 100)
    await until(lambda: client.footprint.used <= 20_000)
    assert client.evictor.evicted["peer"] > 0
    for i in range(100):
        assert await db.get(f"k{i}") == value(i)


@pytest.mark.parametrize("to_disk", [True, False])
async def test_a_change_that_reaches_an_evicted_copy_makes_it_stale(to_disk: bool) -> None:
    """A peer pushes a delta before it hears that this node evicted its copy: the
    copy it makes is partial, so it is stale (completed before it is read), and a
    copy on disk is merged into it (``on_disk``) rather than lost."""
    first, second = Replica("r1"), Replica("r2")
    await first.db().set("k", value(1))
    second.receive(first.take())
    await second.db().get("k", None)  # r2 holds k (the whole value came with it)
    keyspace = second.db().keyspace
    assert keyspace.holds("k")
    whole = keyspace.copy_of("k")
    gen = keyspace.evict("k", to_disk=to_disk)
    assert gen == 1
    await first.db().update("k", {"age": 99})
    second.receive(first.take())  # r1 still pushes the delta to r2
    assert keyspace.holds("k")
    assert keyspace.is_stale("k")  # a read refreshes it first
    assert keyspace.read("k") is pydds.keyspace.STALE
    if to_disk:
        assert keyspace.on_disk("k") == 1  # the disk copy is merged in first
        assert keyspace.reload("k", 1, whole, stale=False)
        assert keyspace.on_disk("k") is None
        assert keyspace.read("k") == {**value(1), "age": 99}
    else:
        assert keyspace.on_disk("k") is None  # the holders complete it (a pull)


async def test_a_node_answers_a_pull_from_its_disk(cluster: Cluster, tmp_path: Path) -> None:
    a = cluster.node(
        "a", modules=[Persistence(str(tmp_path))], limits=pydds.Limits(max_memory=30_000)
    )
    await a.start()
    b = await cluster.start("b", ["mem://a"])
    await until(lambda: len(names(a)) == 2 and len(names(b)) == 2)
    for i in range(200):
        await a.database("db").set(f"k{i}", value(i))
    await until(lambda: len(b.database("db")) == 200)
    on_disk = [k for k in a.database("db") if a.database("db").keyspace.on_disk(k) is not None]
    assert on_disk
    assert await b.database("db").get(on_disk[0]) == value(int(on_disk[0][1:]))


async def test_a_restored_copy_answers_anti_entropy_without_going_live(tmp_path: Path) -> None:
    async with pydds.Node("solo", modules=[Persistence(str(tmp_path))]) as node:
        for i in range(50):
            await node.database("db").set(f"k{i}", value(i))
    async with pydds.Node("solo", modules=[Persistence(str(tmp_path))]) as node:
        keyspace = node.database("db").keyspace
        used = node.footprint.used
        keyspace.held_hashes()  # what anti-entropy reads of every held value
        assert not any(kd.live for kd in keyspace._keys.values())
        assert node.footprint.used == used
        audit(node)
