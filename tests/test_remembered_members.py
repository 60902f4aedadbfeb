"""A node remembers its members across a restart (``pydds-members.json``): the file,
nodes in memory, and real ``pydds serve`` processes stopped by SIGTERM and started
again on the same data."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

import pydds
from pydds.clock import FakeClock
from pydds.memberfile import (
    MAX_MEMBERS,
    MEMBERS_FILE,
    load_members,
    load_remembered,
    save_members,
)
from pydds.modules.persist import Persistence
from pydds.net.memory import MemoryNetwork

from .helpers import Served, stop_process, until_events, until_member

FAST = pydds.ClusterSettings(join_timeout=2.0, dead_after=60.0)


def test_the_file_keeps_the_list_whole(tmp_path: Path) -> None:
    assert load_members(tmp_path) == []  # no file: none
    save_members(tmp_path, [("b", "ws://127.0.0.1:2"), ("a", "ws://127.0.0.1:1")])
    assert load_members(tmp_path) == [("a", "ws://127.0.0.1:1"), ("b", "ws://127.0.0.1:2")]
    save_members(tmp_path, [("c", "ws://127.0.0.1:3")])  # replaced, not appended
    assert load_members(tmp_path) == [("c", "ws://127.0.0.1:3")]
    assert not (tmp_path / (MEMBERS_FILE + ".tmp")).exists()
    many = [(f"n{i:05}", f"ws://10.0.0.1:{i}") for i in range(MAX_MEMBERS + 5)]
    save_members(tmp_path, many)
    assert len(load_members(tmp_path)) == MAX_MEMBERS


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\xff garbage",
        b'{"version": 1, "members": [{"name": "a", "addr',  # cut short by a crash
        b'{"version": 2, "members": []}',
        b'{"version": 1, "members": [{"name": "a"}]}',
        b'{"version": 1, "members": [{"name": 5, "address": "ws://x"}]}',
        b'{"version": 1, "members": {}}',
        b"[" * 100_000,
    ],
    ids=["bytes", "truncated", "version", "no address", "bad name", "not a list", "deep"],
)
def test_a_damaged_file_is_set_aside_and_costs_nothing_else(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / MEMBERS_FILE).write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="pydds.storage"):
        assert load_members(tmp_path) == []
    assert "is damaged" in caplog.text
    assert not (tmp_path / MEMBERS_FILE).exists()
    [aside] = tmp_path.glob(MEMBERS_FILE + ".damaged-*")
    assert aside.read_bytes() == content  # kept, for whoever looks


def node(
    network: MemoryNetwork, name: str, folder: Path, clock: FakeClock, join: list[str] | None = None
) -> pydds.Node:
    return pydds.Node(
        name,
        listen=f"mem://{name}",
        join=join or [],
        transport=network.transport(),
        clock=clock,
        cluster=FAST,
        modules=[Persistence(path=str(folder / name))],
    )


def states(n: pydds.Node) -> dict[str, str]:
    return {m.name: str(m.state) for m in n.members()}


async def test_a_node_that_left_finds_its_cluster_again_without_a_join(tmp_path: Path) -> None:
    network, clock = MemoryNetwork(), FakeClock()
    a = node(network, "a", tmp_path, clock)  # the first node: no join
    b = node(network, "b", tmp_path, clock, ["mem://a"])
    c = node(network, "c", tmp_path, clock, ["mem://a"])
    for n in (a, b, c):
        await n.start()
    try:
        await until_events(lambda: all(len(states(n)) == 3 for n in (a, b, c)), a, b, c)
        await a.close()  # it leaves: b and c drop it, and dial it no more
        listed = json.loads((tmp_path / "a" / MEMBERS_FILE).read_text())  # written first
        assert [m["name"] for m in listed["members"]] == ["b", "c"]
        await until_events(lambda: "a" not in states(b) and "a" not in states(c), b, c)
        a = node(network, "a", tmp_path, clock)  # again, on its data: still no join
        await a.start()
        await until_events(lambda: states(a) == {"a": "self", "b": "alive", "c": "alive"}, a)
        await until_events(
            lambda: states(b).get("a") == "alive" and states(c).get("a") == "alive", b, c
        )
        await a.database("db").set("k", 1, ack="majority")  # counted among three again
        assert await b.database("db").get("k") == 1
    finally:
        for n in (a, b, c):
            await n.close()


async def remembering_one_gone(tmp_path: Path) -> tuple[pydds.Node, FakeClock]:
    """Node a, started on data that remembers a member ``gone`` nobody runs."""
    network, clock = MemoryNetwork(), FakeClock()
    (tmp_path / "a").mkdir()
    save_members(tmp_path / "a", [("gone", "mem://gone")])
    a = node(network, "a", tmp_path, clock)
    await a.start()
    return a, clock


async def test_a_remembered_member_that_never_comes_back_is_dropped_after_dead_after(
    tmp_path: Path,
) -> None:
    a, clock = await remembering_one_gone(tmp_path)
    try:
        assert states(a) == {"a": "self", "gone": "joining"}  # it counts, as before
        left = a.events(kinds=["left"])
        await clock.advance(FAST.dead_after + 1)
        event = await left.get(timeout=5)
        assert event.member == "gone"
        assert states(a) == {"a": "self"}
        for _ in range(500):  # the persistence thread writes it (bounded: 5 s)
            if load_members(tmp_path / "a") == []:
                break
            await asyncio.sleep(0.01)
        assert load_members(tmp_path / "a") == []  # the file followed the left event
    finally:
        await a.close()


async def test_a_restarted_first_node_process_rejoins_its_cluster(
    served: Callable[..., Awaitable[Served]], tmp_path: Path
) -> None:
    persisted = {"PYDDS_MEMORY": ""}

    def args(name: str) -> tuple[str, ...]:
        return ("--port", "0", "--name", name, "--data-dir", str(tmp_path / name))

    first = await served(*args("p1"), env=persisted)  # no join: the first node
    second = await served(*args("p2"), "--join", first.node, env=persisted)
    third = await served(*args("p3"), "--join", first.node, env=persisted)
    for a, b in ((first, "p2"), (first, "p3"), (second, "p3"), (third, "p2")):
        await until_member(a, b)
    assert await stop_process(first.proc) == 0  # SIGTERM: it leaves
    first = await served(*args("p1"), env=persisted)  # again: a new port, still no join
    for a, b in ((first, "p2"), (first, "p3"), (second, "p1"), (third, "p1")):
        await until_member(a, b)
    async with aiohttp.ClientSession() as session:
        url = first.http + "/v1/databases/db/keys/k?ack=majority"
        async with session.put(url, json={"v": 1}) as response:
            assert response.status == 201
        async with session.get(third.http + "/v1/cluster") as response:
            members = (await response.json())["members"]
        assert sorted(m["name"] for m in members if m["state"] in ("self", "alive")) == [
            "p1",
            "p2",
            "p3",
        ]


async def test_a_remembered_member_that_did_not_answer_is_not_written_back(
    tmp_path: Path,
) -> None:
    a, _ = await remembering_one_gone(tmp_path)
    assert states(a) == {"a": "self", "gone": "joining"}  # counted this run
    await a.close()
    assert load_members(tmp_path / "a") == []  # forgotten by the next


def test_the_last_touch_is_read_beside_a_damaged_member_list(tmp_path: Path) -> None:
    # A member list that does not read still says when the node was last in touch:
    # without it the node would take itself for current and bring back pruned keys.
    (tmp_path / MEMBERS_FILE).write_text(
        json.dumps({"version": 1, "members": [{"name": "", "address": "x"}], "touched": 123})
    )
    remembered = load_remembered(tmp_path)
    assert (remembered.members, remembered.touched) == ([], 123.0)
