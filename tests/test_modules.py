"""The module API: lifecycle, events, isolation, loading by spec, pins."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import pydds
from pydds.clock import FakeClock
from pydds.modules import load_module, loading, parse_spec


class Recorder(pydds.Module):
    def __init__(self, name: str, log: list[str], events: pydds.EventFilter | None = None):
        self.name = name
        self.log = log
        self.events = events
        self.seen: list[tuple[str, str | None]] = []
        self.got = asyncio.Event()

    async def start(self, node: pydds.Node) -> None:
        self.log.append(f"start {self.name}")
        await node.database("db").set(f"by-{self.name}", node.name)  # modules write data

    async def on_event(self, event: pydds.Event) -> None:
        self.seen.append((event.kind, event.key))
        self.got.set()

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")


async def test_lifecycle_in_order_and_filtered_events() -> None:
    log: list[str] = []
    first = Recorder("first", log, pydds.EventFilter(database="db", prefix="user:"))
    second = Recorder("second", log)
    node = pydds.Node("n", modules=[first, second])
    assert node.modules == [first, second]
    async with node:
        assert log == ["start first", "start second"]
        db = node.database("db")
        assert db.keys() == ["by-first", "by-second"]
        await db.set("user:1", 1)
        await db.set("other", 1)
        await db.delete("user:1")
        await node.database("elsewhere").set("user:2", 1)
        async with asyncio.timeout(5):
            while len(first.seen) < 2:
                first.got.clear()
                await first.got.wait()
        assert first.seen == [("created", "user:1"), ("deleted", "user:1")]
        assert second.seen == []  # no filter: no events
    assert log == ["start first", "start second", "stop second", "stop first"]


class Faulty(pydds.Module):
    name = "faulty"
    events = pydds.EventFilter(kinds=["created"])

    def __init__(self) -> None:
        self.handled: list[str | None] = []
        self.done = asyncio.Event()

    async def on_event(self, event: pydds.Event) -> None:
        if event.key == "bad":
            raise ValueError("a bug in the module")
        self.handled.append(event.key)
        self.done.set()


async def test_a_module_that_raises_is_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    module = Faulty()
    async with pydds.Node(modules=[module]) as node:
        db = node.database("db")
        await db.set("bad", 1)
        await db.set("good", 1)
        await asyncio.wait_for(module.done.wait(), 5)
        assert module.handled == ["good"]  # it goes on after the error
        assert node.module_errors == {"faulty": 1}
        assert await db.get("bad") == 1  # the node is unharmed
    assert "module faulty failed on a created event" in caplog.text


class Slow(pydds.Module):
    name = "slow"
    events = pydds.EventFilter(database="db")
    queue_size = 3

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.seen: list[pydds.Event] = []
        self.blocked = asyncio.Event()
        self.more = asyncio.Event()

    async def on_event(self, event: pydds.Event) -> None:
        self.seen.append(event)
        self.more.set()
        if len(self.seen) == 1:
            self.blocked.set()
            await self.release.wait()


async def test_a_slow_module_loses_old_events_not_memory() -> None:
    module = Slow()
    async with pydds.Node(modules=[module]) as node:
        db = node.database("db")
        await db.set("k0", 0)
        await asyncio.wait_for(module.blocked.wait(), 5)
        for i in range(1, 11):
            await db.set(f"k{i}", i)  # never waits for the module
        module.release.set()
        async with asyncio.timeout(5):
            while not module.seen or module.seen[-1].key != "k10":
                module.more.clear()
                await module.more.wait()
    kinds = [(e.kind, e.key) for e in module.seen]
    assert kinds[0] == ("created", "k0")
    assert kinds[1][0] == "overflow"
    assert module.seen[1].payload == {"dropped": 7}
    assert kinds[2:] == [("created", "k8"), ("created", "k9"), ("created", "k10")]


class Hangs(pydds.Module):
    name = "hangs"
    start_timeout = 0.05
    stop_timeout = 0.05

    def __init__(self, where: str) -> None:
        self.where = where

    async def start(self, node: pydds.Node) -> None:
        if self.where == "start":
            await asyncio.Event().wait()

    async def stop(self) -> None:
        if self.where == "stop":
            await asyncio.Event().wait()


async def test_a_failed_start_stops_the_node_start_clearly() -> None:
    log: list[str] = []
    ok = Recorder("ok", log)
    node = pydds.Node(modules=[ok, load_module("tests.modules_for_tests:Broken")])
    with pytest.raises(pydds.ModuleError, match=r"module 'broken' could not start.*no disk here"):
        await node.start()
    assert log == ["start ok", "stop ok"]  # what had started is stopped
    assert node.closed
    node = pydds.Node(modules=[Hangs("start")])
    with pytest.raises(pydds.ModuleError, match="'hangs' could not start: took too long"):
        await node.start()
    assert node.closed


async def test_a_module_that_hangs_in_stop_does_not_hold_the_node(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    node = pydds.Node(modules=[Hangs("stop")])
    await node.start()
    await asyncio.wait_for(node.close(), 5)
    assert node.closed
    assert "module hangs did not stop within 0.05s" in caplog.text


def test_modules_are_checked_when_given() -> None:
    with pytest.raises(TypeError, match=r"not a pydds\.Module"):
        pydds.Node(modules=[object()])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="two modules have one name"):
        pydds.Node(modules=[Recorder("x", []), Recorder("x", [])])


def test_specs() -> None:
    assert parse_spec("pkg.mod:Cls?path=/data&every=5&flag=") == (
        "pkg.mod:Cls",
        {"path": "/data", "every": "5", "flag": ""},
    )
    module = load_module("tests.modules_for_tests:Marker?path=%2Fdata&n=1")
    assert module.name == "marker"
    assert module.options == {"path": "/data", "n": "1"}  # type: ignore[attr-defined]
    table = load_module({"spec": "tests.modules_for_tests:Marker?a=1", "n": 2, "on": True})
    assert table.options == {"a": "1", "n": 2, "on": True}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_package.x:Y", "cannot import 'no_such_package.x'"),
        ("tests.modules_for_tests:Nope", "has no 'Nope'"),
        ("tests.modules_for_tests:NotAModule", "is not a pydds.Module class"),
        ("tests.modules_for_tests:Broken?unexpected=1", "refused its options"),
        ("no-such-entry-point", "no module 'no-such-entry-point'"),
        ({"path": "x"}, "needs a 'spec' string"),
    ],
)
def test_bad_specs(spec: Any, message: str) -> None:
    with pytest.raises(pydds.ModuleError, match=message):
        load_module(spec)


def test_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    class Point:
        def load(self) -> type[pydds.Module]:
            from tests.modules_for_tests import Marker

            return Marker

    def found(group: str, name: str) -> list[Point]:
        assert group == "pydds.modules"
        return [Point()] if name == "marker" else []

    monkeypatch.setattr(loading, "entry_points", found)
    module = load_module("marker?x=1")
    assert (module.name, module.options) == ("marker", {"x": "1"})  # type: ignore[attr-defined]


async def test_pinned_keys_never_go_stale() -> None:
    clock = FakeClock()
    async with pydds.Node("alone", clock=clock) as node:
        db = node.database("db", stale_after=10)
        await db.set("config:a", 1)
        await db.set("cache:a", 1)
        await db.pin("config:")
        assert db.pins() == ["config:"]
        await clock.advance(11, step=1.0)
        assert not db.is_stale("config:a")
        assert db.is_stale("cache:a")
        db.unpin("config:")
        await clock.advance(1, step=1.0)
        assert db.is_stale("config:a")
