"""Bad changes from elsewhere raise a typed error and corrupt nothing."""

from __future__ import annotations

import pytest

import pydds
from pydds.changes import Change

from .helpers import Replica


async def shared() -> tuple[Replica, Replica]:
    a, b = Replica("a"), Replica("b")
    await a.db().set("k", {"x": 1})
    b.receive(a.take())
    return a, b


@pytest.mark.parametrize("garbage", [b"", b"\x00", b"\xff\xfe\xfd", b"\x01\x02\x03garbage"])
async def test_garbage_directory_delta(garbage: bytes) -> None:
    a, b = await shared()
    before = b.state()
    with pytest.raises(pydds.InvalidUpdate):
        b.node.apply_change(Change("db", "k", 1, garbage, None, "evil"))
    assert b.state() == before
    await a.db().set("k2", 2)  # the link's next good change still applies
    b.receive(a.take())
    assert await b.db().get("k2") == 2


@pytest.mark.parametrize("garbage", [b"\xff\xfe\xfd", b"\x01\x02\x03garbage"])
async def test_garbage_value_delta(garbage: bytes) -> None:
    a, b = await shared()
    with pytest.raises(pydds.InvalidUpdate):
        b.node.apply_change(Change("db", "k", 1, None, garbage, "evil"))
    assert await b.db().get("k") == {"x": 1}
    await a.db().update("k", {"y": 2})
    b.receive(a.take())
    assert await b.db().get("k") == {"x": 1, "y": 2}


async def test_a_value_delta_for_an_old_generation_is_dropped() -> None:
    a, b = await shared()
    await a.db().delete("k")
    await a.db().set("k", "gen 2")
    b.receive(a.take())
    other = Replica("c")
    await other.db().set("k", "unrelated generation 1 write")
    gen1_value = other.take()[0].value
    b.node.apply_change(Change("db", "k", 1, None, gen1_value, "c"))
    assert await b.db().get("k") == "gen 2"


async def test_a_malformed_directory_entry_refuses_the_update_whole() -> None:
    import msgpack

    _, b = await shared()
    # Another program writes a non-pydds entry over "k", beside a good one.
    delta = msgpack.packb({"k": "not an entry", "other": [1, False]})
    with pytest.raises(pydds.InvalidUpdate, match="malformed directory entry"):
        b.node.apply_change(Change("db", "k", 1, delta, None, "evil"))
    assert await b.db().get("k") == {"x": 1}
    assert "other" not in b.db()
    assert b.directory()["k"].gen == 1


async def test_an_invalid_database_name_in_a_change() -> None:
    b = Replica("b")
    with pytest.raises(pydds.InvalidName):
        b.node.apply_change(Change("../etc", "k", 1, None, None, "evil"))
    assert b.node.databases() == []


async def test_early_updates_load_documents_within_the_live_limit() -> None:
    source = Replica("a")
    for i in range(5):
        await source.db().set(f"k{i}", i)
    changes = source.take()
    sink = pydds.Node("b", limits=pydds.Limits(live_docs=2))
    db = sink.database("db")
    # Every value delta first (they wait for their entries), then every entry.
    for change in changes:
        sink.apply_change(Change("db", change.key, change.gen, None, change.value, "a"))
    for change in changes:
        sink.apply_change(Change("db", change.key, change.gen, change.directory, None, "a"))
    live = [kd for kd in db._keyspace._keys.values() if kd.live]
    assert len(live) <= 2
    assert [await db.get(f"k{i}") for i in range(5)] == [0, 1, 2, 3, 4]


async def test_early_updates_are_bounded_by_bytes_too() -> None:
    source = Replica("a")
    for i in range(10):
        await source.db().set(f"k{i}", "x" * 1000)  # about 1 kB of update each
    changes = source.take()
    sink = pydds.Node("b", limits=pydds.Limits(early_bytes=5000))
    ks = sink.database("db")._keyspace
    for change in changes:  # values before their entries: each waits
        sink.apply_change(Change("db", change.key, change.gen, None, change.value, "a"))
    assert ks._early_bytes <= 5000
    assert sum(len(u) for held in ks._early.values() for u in held) == ks._early_bytes
    assert ks.dropped_updates == 10 - len(ks._early) >= 5  # the oldest went first
    kept = sorted(key for key, _ in ks._early)
    assert kept == [f"k{i}" for i in range(10 - len(kept), 10)]
    for change in changes:
        sink.apply_change(Change("db", change.key, change.gen, change.directory, None, "a"))
    assert ks._early_bytes == ks._early_count == 0
    assert await sink.database("db").get("k9") == "x" * 1000
