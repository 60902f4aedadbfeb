"""The event log: offsets, replay from ``since`` with no gap and no duplicate at the
seam, ``gap`` events where the log no longer holds what was asked, its bounds."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

import pydds
from pydds.eventfile import EVENTS_FILE
from pydds.eventlog import EventLog
from pydds.events import EventKind
from pydds.modules.persist import Persistence
from pydds.net.memory import MemoryNetwork
from pydds.server import make_app


def ready(subscription: pydds.Subscription) -> list[pydds.Event]:
    return subscription.ready(100_000)


async def test_every_event_has_an_increasing_offset() -> None:
    async with pydds.Node("solo") as node:
        events = node.events()
        db = node.database("db")
        await db.set("a", 1)
        await db.set("a", 2)
        await node.emit("ping", {"n": 1})
        await db.delete("a")
        got = ready(events)
        assert [e.kind for e in got] == ["created", "changed", "custom", "deleted"]
        offsets = [e.offset for e in got]
        assert offsets == sorted(offsets)
        assert len(set(offsets)) == 4
        assert offsets[-1] == node.event_log.next - 1


async def test_since_replays_then_goes_on_live_with_no_gap_or_duplicate() -> None:
    async with pydds.Node("solo") as node:
        db = node.database("db")
        for i in range(10):
            await db.set(f"k{i}", i)
        first = node.event_log.first
        assert first is not None
        replay = node.events(since=first + 4)  # the 6th event on
        await db.set("k10", 10)  # live, after the subscription was made
        got = ready(replay)
        assert [e.key for e in got] == [f"k{i}" for i in range(5, 11)]
        assert [e.offset for e in got] == list(range(first + 5, first + 11))
        assert got[0].value() == 5  # a replayed data event reads the value now
        everything = node.events(since=0)
        assert [e.key for e in ready(everything)] == [f"k{i}" for i in range(11)]


async def test_a_replay_passes_the_subscription_filters() -> None:
    async with pydds.Node("solo") as node:
        db, other = node.database("db"), node.database("other")
        await db.set("user:1", 1)
        await other.set("user:2", 2)
        await db.set("order:1", 3)
        await node.emit("ping", 1)
        await node.emit("pong", 2)
        assert [e.key for e in ready(node.events(since=0, database="db", prefix="user:"))] == [
            "user:1"
        ]
        customs = ready(node.events(since=0, kinds=["custom"], names=["pong"]))
        assert [(e.name, e.payload) for e in customs] == [("pong", 2)]


async def test_since_before_what_the_log_holds_starts_with_a_gap() -> None:
    limits = pydds.Limits(event_log=5)
    async with pydds.Node("solo", limits=limits) as node:
        db = node.database("db")
        for i in range(12):
            await db.set(f"k{i}", i)
        first = node.event_log.first
        assert first is not None
        assert len(node.event_log) == 5
        got = ready(node.events(since=first - 5, kinds=["created"]))
        assert got[0].kind == EventKind.GAP  # always delivered, as overflow is
        assert got[0].payload == {"from": first - 4, "to": first - 1}
        assert got[0].offset == first - 1  # resuming after it asks for no gap again
        assert [e.key for e in got[1:]] == [f"k{i}" for i in range(7, 12)]
        assert ready(node.events(since=got[0].offset))[0].key == "k7"


def test_the_log_is_bounded_by_count_bytes_and_age() -> None:
    clock = [1000.0]
    log = EventLog(count=100, size=100_000, age=60.0, now=lambda: clock[0])
    for _ in range(150):
        log.append(EventKind.CUSTOM, None, None, "a", None, "n", None, clock[0], b"x")
    assert len(log) == 100
    assert log.trimmed == 50
    assert log.horizon == log.first - 1  # type: ignore[operator]
    log.append(EventKind.CUSTOM, None, None, "a", None, "n", None, clock[0], b"x" * 90_000)
    assert log.used <= 100_000
    assert len(log) < 100
    clock[0] += 61
    log.trim()
    assert len(log) == 0
    assert log.first is None
    assert log.after(0) == []
    assert log.horizon == log.next - 1  # everything logged is gone
    assert log.gaps_after(1) == [(2, log.horizon)]


def test_offsets_never_repeat_across_restarts_without_a_store() -> None:
    first = EventLog(count=10, size=1 << 20, age=60)
    last = first.append(EventKind.CUSTOM, None, None, "a", None, "n", None, 0.0, None)
    again = EventLog(count=10, size=1 << 20, age=60)  # a later process
    assert again.next > last
    assert again.gaps_after(last) == [(last + 1, again.next - 1)]  # all it cannot know


def test_a_log_loaded_from_a_store_goes_on_and_marks_what_it_lost() -> None:
    log = EventLog(count=10, size=1 << 20, age=1e12, start=500)
    kept = [
        (i, EventKind.CUSTOM, None, None, "a", None, "n", None, 0.0, None, None) for i in (3, 4)
    ]
    log.load(kept, last=7)  # 5 to 7 were written, then lost before the disk had them
    assert log.first == 3
    assert log.horizon == 2
    assert list(log.holes) == [(8, 499)]
    assert log.gaps_after(3) == [(8, 499)]
    assert log.gaps_after(0) == []  # from the start: what there is
    assert log.gaps_after(1) == [(2, 2), (8, 499)]
    assert log.next == 500


async def test_since_must_be_an_offset() -> None:
    async with pydds.Node("solo") as node:
        for bad in (-1, 1.5, "3", True):
            with pytest.raises(pydds.InvalidValue):
                node.events(since=bad)  # type: ignore[arg-type]


async def test_a_replay_waits_for_live_events_once_caught_up() -> None:
    async with pydds.Node("solo") as node:
        db = node.database("db")
        await db.set("a", 1)
        events = node.events(since=0)
        assert (await events.get(1)).key == "a"
        task = asyncio.ensure_future(events.get(5))
        await asyncio.sleep(0)
        await db.set("b", 2)
        assert (await task).key == "b"


async def test_a_node_without_a_log_gives_no_offsets_and_refuses_since() -> None:
    async with pydds.Node("solo", limits=pydds.Limits(event_log=0)) as node:
        events = node.events()
        await node.database("db").set("a", 1)
        assert ready(events)[0].offset == 0
        assert node.event_log is None
        with pytest.raises(pydds.InvalidValue, match="no event log"):
            node.events(since=0)


async def test_the_log_survives_a_restart_with_a_store(tmp_path: Path) -> None:
    store = Persistence(str(tmp_path))
    async with pydds.Node("solo", modules=[store]) as node:
        for i in range(5):
            await node.database("db").set(f"k{i}", i, ack="durable")
        assert node.event_log is not None
        offsets = [e.offset for e in ready(node.events(since=0))]
    async with pydds.Node("solo", modules=[Persistence(str(tmp_path))]) as node:
        assert node.event_log is not None
        assert node.event_log.next > offsets[-1]
        replayed = ready(node.events(since=offsets[1], kinds=["created"]))
        assert [e.offset for e in replayed[:3]] == offsets[2:]
        assert [e.key for e in replayed[:3]] == ["k2", "k3", "k4"]
        assert replayed[2].value() == 4  # read from the restored data
        # What came after the last stored event, up to this process, is unknown.
        assert replayed[3].kind == EventKind.GAP
        assert replayed[3].payload["from"] == offsets[-1] + 1


async def test_a_damaged_events_file_is_set_aside_and_the_data_stays(tmp_path: Path) -> None:
    async with pydds.Node("solo", modules=[Persistence(str(tmp_path))]) as node:
        await node.database("db").set("k", 1, ack="durable")
    (tmp_path / EVENTS_FILE).write_bytes(b"not a database" * 100)
    async with pydds.Node("solo", modules=[Persistence(str(tmp_path))]) as node:
        assert await node.database("db").get("k") == 1  # the data is apart, whole
        assert len(node.event_log or ()) == 0
        names = await asyncio.to_thread(lambda: [p.name for p in tmp_path.iterdir()])
        assert any(name.startswith(f"{EVENTS_FILE}.damaged-") for name in names)
        await node.database("db").set("j", 2, ack="durable")
        assert [e.key for e in ready(node.events(since=0))] == ["j"]


async def test_changes_since_names_what_to_read_again() -> None:
    async with pydds.Node("solo") as node:
        db, other = node.database("db"), node.database("other")
        await db.set_many({"a": 1, "b": 2, "c": 3})
        events = node.events()
        await db.set("seen", 0)
        seen = ready(events)[-1].offset
        await db.set("a", 10)  # changed
        await db.set("b", {"x": 1})
        await db.delete("c")  # deleted: read again, it is found absent
        await db.set("d", 4)  # created
        await other.set("a", 99)  # another database
        await node.emit("ping", None)
        got = db.changes_since(seen)
        assert got == pydds.ChangedKeys(["a", "b", "c", "d"], True, node.event_log.next - 1)
        assert db.changes_since(got.offset) == pydds.ChangedKeys([], True, got.offset)
        assert other.changes_since(seen).keys == ["a"]
        assert db.changes_since(0) == pydds.ChangedKeys(["a", "b", "d", "seen"], True, got.offset)
        for bad in (-1, True, 1.5, "1"):
            with pytest.raises(pydds.InvalidValue):
                db.changes_since(bad)  # type: ignore[arg-type]
        beyond = db.changes_since(got.offset + 1)  # another node's offset: nothing vouches
        assert (beyond.keys, beyond.complete) == (db.keys(), False)


async def test_changes_since_an_offset_the_log_dropped_is_every_key() -> None:
    async with pydds.Node("solo", limits=pydds.Limits(event_log=5)) as node:
        db = node.database("db")
        events = node.events()
        await db.set("first", 1)
        first = ready(events)[-1].offset
        for i in range(10):  # the log keeps 5: first's offset is gone
            await db.set(f"k{i}", i)
        node.event_log.trim()
        got = db.changes_since(first)
        assert got.complete is False
        assert got.keys == db.keys()  # everything, since what changed is not known
    async with pydds.Node("nolog", limits=pydds.Limits(event_log=0)) as node:
        with pytest.raises(pydds.InvalidValue, match="no event log"):
            node.database("db").changes_since(0)


async def test_changes_from_peers_are_changes_here() -> None:
    network = MemoryNetwork()
    a = pydds.Node("a", listen="mem://a", transport=network.transport())
    b = pydds.Node("b", listen="mem://b", join=["mem://a"], transport=network.transport())
    async with a, b:
        events = b.events(database="db")
        await b.database("db").set("mine", 1)
        seen = (await events.get(timeout=5)).offset
        await a.database("db").set("theirs", 2)
        assert (await events.get(timeout=5)).key == "theirs"
        assert b.database("db").changes_since(seen).keys == ["theirs"]


async def test_changes_over_http() -> None:
    node = pydds.Node("h")
    client: TestClient[Any, Any] = TestClient(TestServer(make_app(node)))
    await client.start_server()
    try:
        await client.put("/v1/databases/db/keys/a", json=1)
        offset = node.event_log.next - 1
        await client.put("/v1/databases/db/keys/b", json=2)
        response = await client.get("/v1/databases/db/changes", params={"since": str(offset)})
        assert await response.json() == {
            "keys": ["b"],
            "complete": True,
            "offset": node.event_log.next - 1,
        }
        for query in ("", "?since=", "?since=-1", "?since=x", "?since=1e3"):
            response = await client.get("/v1/databases/db/changes" + query)
            assert response.status == 400, query
            assert (await response.json())["error"] == "invalid_value"
        response = await client.get("/v1/databases/nodb/changes?since=0")
        assert response.status == 404
    finally:
        await client.close()
