"""Consumer groups of custom events: each event to one consumer of a group across the
cluster, to another when not acknowledged in time, never lost to a consumer that
goes; the sans-IO part driven with plain numbers for time."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

import pydds
from pydds.net import messages as m
from pydds.net.codec import decode_frame, encode_frame
from pydds.net.groups import ConsumerInfo, Groups
from pydds.net.replication import Replication

from .helpers import Served, until_member
from .memcluster import Cluster, as_rogue_client, until
from .test_cluster import start_client, three


def custom(n: int) -> m.Custom:
    return m.Custom(f"e:i:{n}", "job", b"\x01", "e")


# -- the sans-IO part -------------------------------------------------------------------


def test_each_event_goes_to_one_consumer_and_every_node_agrees() -> None:
    consumers = [ConsumerInfo("job", "g", f"n{i}/1", 5.0) for i in range(3)]
    views = []
    for i in range(3):  # each node sees its own consumer and the two others'
        groups = Groups(f"n{i}")
        groups.add(consumers[i])
        for j in range(3):
            if j != i:
                groups.peer(f"n{j}", [consumers[j]], now=0.0)
        views.append(groups)
    owners = collections.Counter()
    for n in range(300):
        delivered = [d for g in views for d in g.event(custom(n), now=0.0)]
        assert len(delivered) == 1  # one node delivers it, to its own consumer
        owners[delivered[0].consumer] += 1
    assert set(owners) == {"n0/1", "n1/1", "n2/1"}
    assert min(owners.values()) > 60  # spread across the group


def test_an_event_not_acknowledged_in_time_goes_to_the_next_consumer() -> None:
    groups = Groups("n0")
    groups.add(ConsumerInfo("job", "g", "n0/1", 5.0))
    groups.add(ConsumerInfo("job", "g", "n0/2", 5.0))
    (first,) = groups.event(custom(1), now=0.0)
    assert groups.due == 5.0
    assert groups.tick(4.9) == []
    (second,) = groups.tick(5.0)
    assert (second.attempt, second.consumer != first.consumer) == (1, True)
    (third,) = groups.tick(10.0)  # around again
    assert (third.attempt, third.consumer) == (2, first.consumer)
    assert groups.ack("g", "e:i:1") == m.GroupAck("g", "e:i:1")
    assert groups.tick(100.0) == []
    assert groups.event(custom(1), now=100.0) == []  # sent again later: handled
    assert groups.ack("g", "e:i:1") is None  # nothing to tell anyone twice


def test_a_consumer_that_goes_hands_its_events_on_at_once() -> None:
    groups = Groups("n0")
    groups.add(ConsumerInfo("job", "g", "n0/1", 30.0))
    groups.peer("n1", [ConsumerInfo("job", "g", "n1/1", 30.0)], now=0.0)
    mine = [d for n in range(50) for d in groups.event(custom(n), now=0.0)]
    theirs = 50 - len(mine)
    assert 0 < theirs < 50
    handed = groups.peer("n1", [], now=1.0)  # its node is gone
    assert len(handed) == theirs
    assert {d.consumer for d in handed} == {"n0/1"}
    assert {d.attempt for d in handed} == {1}
    # With no consumer at all, events wait for the group's next one.
    groups.remove("n0/1", now=2.0)
    assert groups.names == frozenset()
    assert groups.event(custom(99), now=2.0) == []  # no group consumes it: not kept
    waited = groups.add(ConsumerInfo("job", "g", "n0/2", 30.0), now=3.0)
    assert len(waited) == 50  # none acknowledged: all of them, to the new one


def test_pending_events_are_bounded() -> None:
    groups = Groups("n0", max_pending=10)
    groups.add(ConsumerInfo("job", "g", "n0/1", 30.0))
    for n in range(25):
        groups.event(custom(n), now=0.0)
    assert len(groups.pending) == 10
    assert groups.given_up == 15
    assert len(groups._timeouts) <= 2 * 10 + 1024


def test_consumers_and_acks_are_checked_on_the_wire() -> None:
    good = m.Consumers((("job", "g", "n1/1", 30.0),))
    assert decode_frame(encode_frame([good, m.GroupAck("g", "x:y:1")])) == [
        good,
        m.GroupAck("g", "x:y:1"),
    ]
    for bad in (
        m.Consumers((("job", "g", "n1/1", -1.0),)),
        m.Consumers((("job", "g", "n1/1", 30),)),  # type: ignore[arg-type]
        m.Consumers((("job", "g"),)),  # type: ignore[arg-type]
    ):
        with pytest.raises(pydds.MalformedFrame):
            decode_frame(encode_frame([bad]))


# -- nodes ------------------------------------------------------------------------------


async def take(consumer: pydds.Consumer) -> list[pydds.GroupEvent]:
    return [await consumer.get() for _ in range(len(consumer))]


async def test_a_group_across_three_nodes_gets_each_event_once(cluster: Cluster) -> None:
    nodes = await three(cluster)
    consumers = [node.consume("job", "billing") for node in nodes]
    await until(lambda: all(sum(len(t) for t in n.groups.remote.values()) == 2 for n in nodes))
    for n in range(90):
        await nodes[n % 3].emit("job", n)
    await until(lambda: sum(len(c) for c in consumers) == 90)
    each = [await take(c) for c in consumers]
    got = [event for events in each for event in events]
    assert sorted(event.payload for event in got) == list(range(90))  # once each
    assert all(events for events in each)  # spread over the three
    assert {(e.group, e.attempt, e.kind) for e in got} == {("billing", 0, "custom")}
    for event in got:
        await event.ack()
    await until(lambda: all(not node.groups.pending for node in nodes))
    await cluster.clock.advance(31, step=1.0)  # past every ack timeout: nothing comes again
    assert sum(len(c) for c in consumers) == 0
    # Another group of the same name gets every event too.
    audit = nodes[0].consume("job", "audit")
    await until(lambda: all(len(n.groups.table()) + len(n.groups.remote) > 1 for n in nodes))
    await until(lambda: len(nodes[1].groups.remote["a"]) == 2)
    await nodes[1].emit("job", "x")
    await until(lambda: len(audit) == 1 and sum(len(c) for c in consumers) == 1)


async def test_a_consumer_that_closes_or_crashes_loses_nothing(cluster: Cluster) -> None:
    a, b, c = await three(cluster)
    at = {node.name: node.consume("job", "g", ack_timeout=10.0) for node in (a, b, c)}
    await until(lambda: all(sum(len(t) for t in n.groups.remote.values()) == 2 for n in (a, b, c)))
    for n in range(60):
        await a.emit("job", n)
    await until(lambda: sum(len(q) for q in at.values()) == 60)
    acked = set()
    for name in ("a", "b"):
        for event in await take(at[name]):
            await event.ack()
            acked.add(event.payload)
    left = {event.payload for event in await take(at["c"])}  # c's, never acknowledged
    assert left
    assert acked.isdisjoint(left)
    await cluster.crash(c)  # its consumer goes with it: a and b take its events at once
    await until(lambda: len(at["a"]) + len(at["b"]) == len(left))
    again = [e for name in ("a", "b") for e in await take(at[name])]
    assert {e.payload for e in again} == left
    assert {e.attempt for e in again} == {1}
    for event in again:
        await event.ack()
    # One that closes hands on what it holds, to the one left.
    for n in range(60, 80):
        await b.emit("job", n)
    await until(lambda: len(at["a"]) + len(at["b"]) == 20)
    assert len(at["b"]) > 0
    at["b"].close()  # what it held goes to a, at once
    await until(lambda: len(at["a"]) == 20)
    assert sorted(e.payload for e in await take(at["a"])) == list(range(60, 80))


async def test_consuming_is_checked() -> None:
    async with pydds.Node("solo") as node:
        with pytest.raises(pydds.InvalidName):
            node.consume("job", "no spaces")
        with pytest.raises(pydds.InvalidValue):
            node.consume("job", "g", ack_timeout=0)
        with pytest.raises(pydds.InvalidValue):
            node.consume("job", "g", maxsize=0)
        jobs = node.consume("job", "g", maxsize=1)
        await node.emit("job", 1)
        await node.emit("job", 2)  # the queue is full: dropped here, for another later
        assert (len(jobs), jobs.dropped) == (1, 1)
        jobs.close()
        assert (await jobs.get()).payload == 1  # what was queued is still read
        with pytest.raises(pydds.NodeClosed):
            await jobs.get()
        with pytest.raises(pydds.InvalidValue):
            node.consume("job", "g", ack_timeout=float("nan"))


async def test_a_client_cannot_consume_and_may_not_speak_for_a_group(cluster: Cluster) -> None:
    a, _, _ = await three(cluster)
    client = await start_client(cluster, "cl", ["mem://a"])
    with pytest.raises(pydds.Unavailable):
        client.consume("job", "g")
    for said in (m.Consumers((("job", "g", "rogue/1", 5.0),)), m.GroupAck("g", "a:i:1")):
        received = await as_rogue_client(cluster, "mem://a", said)
        assert isinstance(received[-1], m.Close)
        assert f"client cannot send {type(said).__name__}" in received[-1].reason
    assert not a.groups.remote


# -- node processes ---------------------------------------------------------------------


async def test_a_group_of_three_http_consumers_on_three_processes_loses_nothing(
    served: Callable[..., Awaitable[Served]],
) -> None:
    """10,000 events, one consumer on each of three ``pydds serve`` processes, the
    third process SIGKILLed once half the events were handled: every event is
    acknowledged at least once; the duplicates are counted."""
    p1 = await served("--port", "0", "--name", "p1")
    p2 = await served("--port", "0", "--name", "p2", "--join", p1.node)
    p3 = await served("--port", "0", "--name", "p3", "--join", p1.node)
    for node, others in ((p1, ("p2", "p3")), (p2, ("p1", "p3")), (p3, ("p1", "p2"))):
        for other in others:
            await until_member(node, other)
    total = 10_000
    handled: dict[str, list[int]] = {"p1": [], "p2": [], "p3": []}
    streaming = {name: asyncio.Event() for name in handled}
    half, everything = asyncio.Event(), asyncio.Event()
    distinct: set[int] = set()

    async def consume(name: str, node: Served) -> None:
        async with aiohttp.ClientSession() as session:
            params = {"names": "job", "group": "workers", "ack_timeout": "5"}
            async with session.get(node.http + "/v1/events", params=params) as stream:
                await stream.content.readline()  # the consumer exists
                streaming[name].set()
                ids: list[str] = []

                async def ack() -> None:
                    body = {"group": "workers", "ids": ids}
                    async with session.post(node.http + "/v1/events/ack", json=body) as r:
                        assert r.status == 200, await r.text()
                    ids.clear()

                with contextlib.suppress(aiohttp.ClientError, ConnectionError):
                    while True:
                        try:  # what it has handled is acknowledged before it waits
                            line = await asyncio.wait_for(stream.content.readline(), 0.1)
                        except TimeoutError:
                            if ids:
                                await ack()
                            continue
                        if not line:
                            return  # its node is gone
                        if not line.startswith(b"data:"):
                            continue
                        event = json.loads(line.removeprefix(b"data:"))
                        handled[name].append(event["payload"])
                        distinct.add(event["payload"])
                        ids.append(event["id"])
                        if len(distinct) >= total // 2:
                            half.set()
                        if len(distinct) == total:
                            everything.set()
                        if len(ids) >= 50:
                            await ack()

    readers = [
        asyncio.ensure_future(consume(name, node))
        for name, node in (("p1", p1), ("p2", p2), ("p3", p3))
    ]
    async with asyncio.timeout(20):
        for ready in streaming.values():
            await ready.wait()
    emitter = pydds.Client("emitter", join=[p1.node])
    await emitter.start()
    try:
        async with asyncio.timeout(20):  # until every node knows the three consumers
            while True:
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(p1.http + "/v1/stats") as response,
                ):
                    groups = (await response.json()).get("groups", {})
                if groups.get("consumers") == 3:
                    break
                await asyncio.sleep(0.05)  # another process: nothing to await here
        for n in range(total):
            await emitter.emit("job", n)
        async with asyncio.timeout(60):
            await half.wait()
            os.killpg(p3.proc.pid, signal.SIGKILL)  # its consumer dies with it
            await p3.proc.wait()
            await everything.wait()
    finally:
        await emitter.close()
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    got = [n for values in handled.values() for n in values]
    assert set(got) == set(range(total))  # none lost
    duplicates = len(got) - total
    print(
        f"handled {len(got)}: p1 {len(handled['p1'])}, p2 {len(handled['p2'])}, "
        f"p3 {len(handled['p3'])} (killed), duplicates {duplicates}"
    )
    assert handled["p3"]  # it had its share before it went


def test_what_a_peer_says_of_consumers_is_its_own_each_once() -> None:
    groups = Groups("c")
    theirs = ConsumerInfo("job", "g", "b/1", 5.0)
    groups.peer("a", [theirs, ConsumerInfo("job", "g", "a/1", 5.0)] * 2, now=0.0)
    assert groups.remote == {"a": (ConsumerInfo("job", "g", "a/1", 5.0),)}


def test_an_event_tried_too_often_is_given_up() -> None:
    groups = Groups("n0", max_attempts=3)
    groups.add(ConsumerInfo("job", "g", "n0/1", 1.0))
    groups.event(custom(1), now=0.0)
    assert [d.attempt for t in (1.0, 2.0, 3.0) for d in groups.tick(t)] == [1, 2]
    assert (groups.pending, groups.given_up) == ({}, 1)
    assert groups.due == float("inf") or groups.tick(10.0) == []


def test_a_link_opening_says_the_consumers_even_when_none_and_a_client_says_none() -> None:
    node = Replication("a", lambda db: None, list)  # type: ignore[arg-type,return-value]
    assert m.Consumers(()) in [message for _, message in node.opened("b")]
    client = Replication("cl", lambda db: None, list, is_client=True)  # type: ignore[arg-type,return-value]
    assert not any(isinstance(message, m.Consumers) for _, message in client.opened("gw"))


async def test_an_ack_before_the_event_loses_nothing_and_bounds_are_kept() -> None:
    async with pydds.Node("solo") as node:
        jobs = node.consume("job", "g")
        assert node.ack("g", "solo:local:1") is False  # nothing waits: nothing recorded
        await node.emit("job", 1)
        assert (await jobs.get(timeout=1)).id == "solo:local:1"
        for bad in (1e-300, 1e9):
            with pytest.raises(pydds.InvalidValue):
                node.consume("job", "g", ack_timeout=bad)
        more = [node.consume("job", f"g{i}") for i in range(4095)]
        with pytest.raises(pydds.InvalidValue):
            node.consume("job", "one-too-many")
        for consumer in more:
            consumer.close()
    with pytest.raises(pydds.MalformedFrame):
        decode_frame(encode_frame([m.Consumers((("job", "g", "n1/1", 1e-300),))]))


async def test_a_redelivery_to_a_consumer_here_comes_on_time(cluster: Cluster) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b", ["mem://a"])
    await until(lambda: len(a._peers.links) == 1 and len(b._peers.links) == 1)  # type: ignore[union-attr]
    at_a = a.consume("job", "g", ack_timeout=0.2)
    at_b = b.consume("job", "g", ack_timeout=0.2)
    await until(lambda: "b" in a.groups.remote and "a" in b.groups.remote)
    for n in range(64):  # until an event whose first turn is b's (half of them are)
        await a.emit("job", n)
        await until(lambda: len(at_a) + len(at_b) == 1)
        if len(at_b):
            break
        await (await at_a.get()).ack()
    assert len(at_b) == 1
    await cluster.clock.advance(0.25, step=0.05)  # b never acknowledges it
    again = await at_a.get(timeout=1)
    assert again.attempt == 1


def test_a_dead_letter_sent_again_is_not_tried_again() -> None:
    groups = Groups("n0", max_attempts=1)
    groups.add(ConsumerInfo("job", "g", "n0/1", 1.0))
    assert len(groups.event(custom(1), now=0.0)) == 1
    assert groups.tick(1.0) == []  # given up
    assert groups.event(custom(1), now=2.0) == []  # a resend of it: not again


async def test_a_node_whose_clock_is_replaced_times_acks_by_it() -> None:
    async with pydds.Node("solo") as node:
        clock = pydds.FakeClock()
        node.clock = clock
        jobs = node.consume("job", "g", ack_timeout=5.0)
        await node.emit("job", 1)
        assert (await jobs.get(timeout=1)).attempt == 0
        assert node.groups.due == clock.now() + 5.0
