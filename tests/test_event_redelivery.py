"""Custom events a node or a client missed while it was unreachable are sent again
once it is back, from its peers' event logs, and delivered once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pydds
from pydds.crdt import values
from pydds.eventlog import EventLog
from pydds.events import EventKind
from pydds.net import messages as m
from pydds.net.codec import PROTOCOL, decode_frame, encode_frame
from pydds.net.replication import MAX_LAST_SEEN, Replication

from .memcluster import Cluster, drain, names, until
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


def test_a_resend_read_while_the_log_cuts_its_head_skips_nothing() -> None:
    log = EventLog(count=2000, size=1 << 30, age=60.0, start=1)
    now = time.time()
    for n in range(1, 301):
        log.append(EventKind.CUSTOM, None, None, "a", None, "e", None, now, b"\x01", f"a:i:{n}")
    resent = log.customs_after({"a": "a:i:0"})
    got = [next(resent)[0]]
    for _ in range(2001):  # the log cuts its head meanwhile; none of these are resent
        log.append(EventKind.CREATED, "db", "k", "a", None, None, None, now, None)
    got.extend(ident for ident, *_ in resent)
    assert got == [f"a:i:{n}" for n in range(1, 301)]  # a batch was taken whole
    later = log.customs_after({"a": "a:i:0"})
    log.append(EventKind.CUSTOM, None, None, "a", None, "e", None, now, b"\x01", "a:i:301")
    assert list(later) == []  # what comes after a resend began is sent live, not twice


def test_a_cursor_moves_only_past_what_all_came() -> None:
    r = Replication("b", lambda db: None, list)  # type: ignore[arg-type,return-value]
    for n in (1, 2, 3, 5, 6):  # 4 is missing: a resend has yet to bring it
        r._remember(f"a:1:{n}")
    assert r.last_seen()["a"] == "a:1:3"
    r._remember("a:1:4")
    assert r.last_seen()["a"] == "a:1:6"
    r._remember("a:2:2")  # a restarted (a later incarnation sorts after)
    assert r.last_seen()["a"] == "a:1:6"
    r._remember("a:2:1")
    assert r.last_seen()["a"] == "a:2:2"
    assert r.last_seen()["b"].startswith("b:")  # its own, from :0


def test_a_client_keeps_at_most_so_many_cursors_and_always_its_own() -> None:
    r = Replication("cl", lambda db: None, list, is_client=True)  # type: ignore[arg-type,return-value]
    r.opened("gw")
    for batch in range(3):
        pairs = tuple((f"n{batch}-{i}", f"n{batch}-{i}:x:1") for i in range(4096))
        r.handle("gw", m.EventsSeen(pairs))
    seen = r.last_seen()
    assert len(seen) == MAX_LAST_SEEN
    assert "cl" in seen
    assert decode_frame(encode_frame([m.EventsSeen(tuple(seen.items()))]))  # a peer takes it


async def test_events_seen_said_again_on_a_link_is_read_once(cluster: Cluster) -> None:
    a = await cluster.start("a")
    for n in range(5):
        await a.emit("tick", n)
    rogue = await cluster.network.transport().connect("mem://a")
    hello = m.Hello("rogue", "client", None, PROTOCOL)
    again = m.EventsSeen((("a", f"a:{a._network().replication.incarnation}:2"),))
    await rogue.send(encode_frame([hello, m.Proof(b""), *[again] * 50]))
    await cluster.clock.advance(1, step=0.25)
    await rogue.close()
    received = await asyncio.wait_for(drain(rogue), 1)
    resent = [message.payload for message in received if isinstance(message, m.Custom)]
    assert resent == [values.pack(n, 64) for n in (2, 3, 4)]  # once, not fifty times


def test_a_cursor_past_gaps_that_never_fill_stays_bounded_and_moves_on() -> None:
    r = Replication("cl", lambda db: None, list, is_client=True)  # type: ignore[arg-type,return-value]
    for n in range(1, 50_001, 2):  # every other id of g never comes (the client's own)
        r._remember(f"g:x:{n}")
    cursor = r._cursors["g"]
    assert len(cursor.ahead) <= 10_000
    assert cursor.counter > 30_000  # moved on past the gaps, half the kept ones at a time


def test_an_old_incarnations_ids_sent_late_do_not_turn_a_cursor_back() -> None:
    r = Replication("b", lambda db: None, list)  # type: ignore[arg-type,return-value]
    for ident in ("a:2:1", "a:2:2", "a:2:3"):  # what it has: a's second process's
        r._remember(ident)
    r._remember("a:1:1")  # a resend from a gateway that holds only the first one's
    r._remember("a:1:2")
    r._remember("a:2:4")
    assert r.last_seen()["a"] == "a:2:4"


def test_an_id_of_odd_digits_is_no_counter_and_crashes_nothing() -> None:
    assert m.event_id_parts("b:i:²") == ("b", "", -1)
    r = Replication("a", lambda db: None, list)  # type: ignore[arg-type,return-value]
    r.opened("b")
    r.handle("b", m.Custom("b:i:²", "e", values.pack(1, 64), "b"))
    r.handle("b", m.EventsSeen((("a", "a:i:²"),)))
    r.seen_again([f"x:i:{n}" for n in range(r.seen_limit + 10)])
    assert len(r._seen) <= r.seen_limit


def test_an_incarnation_of_an_earlier_release_sorts_before_the_new_ones() -> None:
    r = Replication("b", lambda db: None, list)  # type: ignore[arg-type,return-value]
    r._remember("a:c3d2161b2b8f2851:3")  # random, 16 digits: before time-stamped ones
    new = Replication("a", lambda db: None, list).incarnation  # type: ignore[arg-type,return-value]
    r._remember(f"a:{new}:1")
    assert r.last_seen()["a"] == f"a:{new}:1"
