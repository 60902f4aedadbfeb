"""Events: one per change, filters, the overflow policy, custom events and handlers."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

import pydds
from pydds import EventKind


@pytest.fixture
async def node():
    async with pydds.Node("n1") as n:
        yield n


def drain(sub: pydds.Subscription) -> list[pydds.Event]:
    out = []
    while len(sub):
        event = sub._next_ready()
        assert event is not None
        out.append(event)
    return out


async def test_one_event_per_change(node: pydds.Node) -> None:
    db = node.database("d")
    async with node.events() as sub:
        await db.set("k", {"a": 1})
        await db.update("k", {"b": 2})
        await db.append("l", [], 1)
        await db.append("l", [], 2)
        await db.incr("c")
        await db.set("k", 5)
        await db.delete("k")
        await db.delete("k")  # nothing to delete: no event
        events = drain(sub)
    assert [(e.kind, e.key) for e in events] == [
        ("created", "k"),
        ("changed", "k"),
        ("created", "l"),
        ("changed", "l"),
        ("created", "c"),
        ("changed", "k"),
        ("deleted", "k"),
    ]
    assert all(e.database == "d" and e.origin == "n1" for e in events)
    assert all(e.delta for e in events if e.kind != "deleted")


async def test_event_value_on_demand(node: pydds.Node) -> None:
    db = node.database("d")
    async with node.events() as sub:
        await db.set("k", {"a": 1})
        event = await sub.get(timeout=1)
    value = event.value()
    assert value == {"a": 1}
    value["a"] = 2  # a fresh copy
    assert event.value() == {"a": 1}
    await db.delete("k")
    with pytest.raises(pydds.KeyNotFound):
        event.value()


async def test_the_delta_replays_the_change_elsewhere(node: pydds.Node) -> None:
    from pydds.crdt.keydoc import KeyDoc

    db = node.database("d")
    async with node.events() as sub:
        await db.set("k", {"a": [1]})
        await db.append("k", ["a"], 2)
        first, second = await sub.get(timeout=1), await sub.get(timeout=1)
    replica = KeyDoc(1)
    assert first.delta is not None
    assert second.delta is not None
    replica.apply(99, first.delta)
    replica.apply(99, second.delta)
    assert replica.read(99) == {"a": [1, 2]}


async def test_filters(node: pydds.Node) -> None:
    a, b = node.database("a"), node.database("b")
    by_db = node.events(database="a")
    by_prefix = node.events(prefix="user:")
    by_kind = node.events(kinds={"deleted", "custom"})
    by_both = node.events(database="b", prefix="user:", kinds=["created"])
    customs = node.events(names={"deploy"})
    await a.set("user:1", 1)
    await b.set("user:2", 2)
    await b.set("item:1", 3)
    await a.delete("user:1")
    await node.emit("deploy", {"v": 1})
    await node.emit("other")
    assert [(e.database, e.key, e.kind) for e in drain(by_db)] == [
        ("a", "user:1", "created"),
        ("a", "user:1", "deleted"),
    ]
    assert [e.key for e in drain(by_prefix)] == ["user:1", "user:2", "user:1"]
    assert [(e.kind, e.name) for e in drain(by_kind)] == [
        ("deleted", None),
        ("custom", "deploy"),
        ("custom", "other"),
    ]
    assert [e.key for e in drain(by_both)] == ["user:2"]
    assert [e.payload for e in drain(customs)] == [{"v": 1}]
    with pytest.raises(pydds.InvalidValue):
        node.events(kinds={"nonsense"})


async def test_overflow_drops_the_oldest_and_says_so(node: pydds.Node) -> None:
    db = node.database("d")
    sub = node.events(maxsize=3)
    for i in range(10):
        await db.set(f"k{i}", i)
    assert len(sub) == 3
    assert sub.dropped == 7
    overflow = await sub.get(timeout=1)
    assert overflow.kind == EventKind.OVERFLOW
    assert overflow.payload == {"dropped": 7}
    assert [(await sub.get(timeout=1)).key for _ in range(3)] == ["k7", "k8", "k9"]
    await db.set("k10", 10)
    assert (await sub.get(timeout=1)).key == "k10"  # no second overflow report
    sub.close()


async def test_a_waiting_consumer_is_woken(node: pydds.Node) -> None:
    db = node.database("d")
    async with node.events() as sub:
        waiting = asyncio.ensure_future(sub.get())
        await asyncio.sleep(0)
        assert not waiting.done()
        await db.set("k", 1)
        event = await asyncio.wait_for(waiting, 1)
    assert event.key == "k"


async def test_get_times_out(node: pydds.Node) -> None:
    async with node.events() as sub:
        with pytest.raises(TimeoutError):
            await sub.get(timeout=0.01)


async def test_iteration_ends_when_closed_after_draining(node: pydds.Node) -> None:
    db = node.database("d")
    sub = node.events()
    await db.set("a", 1)
    await db.set("b", 2)
    sub.close()
    await db.set("c", 3)  # not queued: closed
    assert [e.key async for e in sub] == ["a", "b"]


async def test_closing_the_node_ends_every_subscription() -> None:
    node = pydds.Node()
    sub = node.events()
    consumer = asyncio.ensure_future(sub.get())
    await asyncio.sleep(0)
    await node.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(consumer, 1)


async def test_custom_events_reach_sync_and_async_handlers(node: pydds.Node) -> None:
    got: list[object] = []
    done = asyncio.Event()

    def sync_handler(event: pydds.Event) -> None:
        got.append(("sync", event.payload))

    async def async_handler(event: pydds.Event) -> None:
        await asyncio.sleep(0)
        got.append(("async", event.payload))
        if len(got) == 4:
            done.set()

    node.on("deploy", sync_handler)
    node.on("deploy", async_handler)
    await node.emit("deploy", {"version": 3})
    await node.emit("deploy", [1])
    await asyncio.wait_for(done.wait(), 1)
    expected = [("sync", {"version": 3}), ("sync", [1]), ("async", {"version": 3}), ("async", [1])]
    assert sorted(map(str, got)) == sorted(map(str, expected))


async def test_a_failing_handler_harms_nothing_else(
    node: pydds.Node, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[int] = []
    done = asyncio.Event()

    def bad(event: pydds.Event) -> None:
        raise RuntimeError("boom")

    def good(event: pydds.Event) -> None:
        seen.append(event.payload)
        if len(seen) == 2:
            done.set()

    node.on("e", bad)
    node.on("e", good)
    with caplog.at_level(logging.ERROR, logger="pydds"):
        await node.emit("e", 1)
        await node.emit("e", 2)
        await asyncio.wait_for(done.wait(), 1)
        for _ in range(10):  # let the failing handler run both events
            if node.handler_errors == 2:
                break
            await asyncio.sleep(0)
    assert seen == [1, 2]
    assert node.handler_errors == 2
    assert "boom" in caplog.text


async def test_unsubscribe_stops_calls(node: pydds.Node) -> None:
    seen: list[object] = []
    reached = asyncio.Event()
    unsubscribe = node.on("e", lambda event: seen.append(event.payload))
    await node.emit("e", 1)
    unsubscribe()
    node.on("e", lambda event: reached.set())  # a later handler sees the next event
    await node.emit("e", 2)
    await asyncio.wait_for(reached.wait(), 1)
    await asyncio.sleep(0)
    assert 2 not in seen


async def test_payloads_are_validated_and_never_shared(node: pydds.Node) -> None:
    with pytest.raises(pydds.InvalidValue):
        await node.emit("e", {1, 2})
    with pytest.raises(pydds.InvalidName):
        await node.emit("../bad", 1)
    async with node.events(kinds={"custom"}) as sub:
        await node.emit("e", {"a": [1]})
        event = await sub.get(timeout=1)
    first = event.payload
    first["a"].append(2)
    assert event.payload == {"a": [1]}


def test_an_event_is_an_immutable_record() -> None:
    before = time.time()
    event = pydds.Event(pydds.EventKind.CHANGED, "db", "k", "a", b"\x01", loader=lambda: 1)
    assert before <= event.time <= time.time()  # recorded now unless given
    same = pydds.Event(pydds.EventKind.CHANGED, "db", "k", "a", b"\x01", time=event.time)
    assert event == same  # the value loader is not compared
    assert hash(event) == hash(same)
    assert event != pydds.Event(pydds.EventKind.DELETED, "db", "k", "a", time=event.time)
    with pytest.raises(AttributeError):
        event.key = "other"  # type: ignore[misc]
    assert event.value() == 1
    assert "delta" not in repr(event)  # bytes stay out of the repr
    assert repr(event).startswith("Event(kind='changed', database='db', key='k'")
