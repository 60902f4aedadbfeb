"""Custom events a node or a client missed while it was unreachable are sent again
once it is back, from its peers' event logs, and delivered once."""

from __future__ import annotations

import time
from typing import Any

import pydds
from pydds.eventlog import EventLog
from pydds.events import EventKind

from .memcluster import Cluster, names, until
from .test_cluster import start_client, three


def payloads(subscription: pydds.Subscription) -> list[Any]:
    return [event.payload for event in subscription.ready(10_000) if event.kind == "custom"]


async def test_events_emitted_during_a_partition_reach_the_other_side_once(
    cluster: Cluster,
) -> None:
    a, b, c = await three(cluster)
    at_a, at_c = a.events(kinds={"custom"}), c.events(kinds={"custom"})
    # Nothing was emitted before: each side still knows where the other began.
    await cluster.network.partition(["mem://c"], ["mem://a", "mem://b"])
    await until(lambda: names(c) == ["c"] and names(a) == ["a", "b"])
    for n in range(3):
        await a.emit("tick", f"a{n}")
    await b.emit("tick", "b0")
    await c.emit("tick", "c0")
    assert payloads(at_c) == ["c0"]
    cluster.network.heal()
    await cluster.clock.advance(10, step=0.5)
    await until(lambda: len(names(c)) == 3)
    await until(lambda: len(at_c) >= 4 and len(at_a) >= 5)
    await cluster.clock.advance(2, step=0.5)  # anything more would have come by now
    assert sorted(payloads(at_c)) == ["a0", "a1", "a2", "b0"]
    assert sorted(payloads(at_a)) == ["a0", "a1", "a2", "b0", "c0"]
    # Again: each now resumes after the last event it has of the other.
    await cluster.network.partition(["mem://c"], ["mem://a", "mem://b"])
    await until(lambda: names(c) == ["c"])
    await a.emit("tick", "a3")
    cluster.network.heal()
    await cluster.clock.advance(10, step=0.5)
    await until(lambda: len(names(c)) == 3 and len(at_c) >= 1)
    await cluster.clock.advance(2, step=0.5)
    assert payloads(at_c) == ["a3"]


async def test_a_client_gets_what_it_missed_from_its_next_gateway(cluster: Cluster) -> None:
    a, b, _ = await three(cluster)
    client = await start_client(cluster, "cl", ["mem://a", "mem://b"])
    at_client = client.events(kinds={"custom"})
    await b.emit("tick", 1)
    await until(lambda: len(at_client) == 1)
    await cluster.network.partition(["mem://a"], ["mem://b", "mem://c", "cl"])
    await cluster.clock.advance(1, step=0.5)
    await b.emit("tick", 2)  # while the client moves from a to another gateway
    await a.emit("tick", 3)  # a, cut off, emits too
    await cluster.clock.advance(10, step=0.5)
    await until(lambda: any(not link.is_client for link in client._peers.links.values()))  # type: ignore[union-attr]
    await until(lambda: len(at_client) >= 2)
    cluster.network.heal()
    await cluster.clock.advance(10, step=0.5)
    await until(lambda: len(at_client) >= 3)
    await cluster.clock.advance(2, step=0.5)
    assert sorted(payloads(at_client)) == [1, 2, 3]


def test_the_log_finds_what_a_peer_missed() -> None:
    log = EventLog(count=100, size=1 << 20, age=60.0, start=1)
    now = time.time()

    def emit(ident: str) -> None:
        log.append(EventKind.CUSTOM, None, None, "x", None, "e", None, now, b"\x01", ident)

    for ident in ("a:old:1", "a:old:2", "b:i:1", "a:new:1", "a:new:2", "b:i:2", "a:new:3"):
        emit(ident)
    log.append(EventKind.CREATED, "db", "k", "a", None, None, None, now, None)

    def after(**last: str) -> list[str]:
        return [ident for ident, *_ in log.customs_after(last)]

    assert after(a="a:new:1") == ["a:new:2", "a:new:3"]  # after the very id
    assert after(a="a:new:0") == ["a:new:1", "a:new:2", "a:new:3"]  # before its first
    assert after(a="a:old:2") == ["a:new:1", "a:new:2", "a:new:3"]
    assert after(a="a:gone:9") == ["a:old:1", "a:old:2", "a:new:1", "a:new:2", "a:new:3"]
    assert after(a="a:new:3", b="b:i:1") == ["b:i:2"]
    assert after(c="c:i:0") == []
    assert after(a="no id at all") == after(a="a:gone:9")
    for _ in range(96):  # the first ids go past the bound: a:new:1 is gone
        log.append(EventKind.CREATED, "db", "k", "a", None, None, None, now, None)
    assert log.first == 5  # a:new:1 is gone
    assert after(a="a:new:1") == ["a:new:2", "a:new:3"]  # the first later one on
