"""Clusters of nodes on the in-memory network with a fake clock."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

import pydds
from pydds import keyspace
from pydds.clock import FakeClock
from pydds.crdt.directory import encode_update
from pydds.net import messages as m
from pydds.net.codec import PROTOCOL, encode_frame

from .memcluster import Cluster, as_rogue_client, drain, names, until


async def three(cluster: Cluster) -> tuple[pydds.Node, pydds.Node, pydds.Node]:
    a = await cluster.start("a")
    b = await cluster.start("b", ["mem://a"])
    c = await cluster.start("c", ["mem://a"])  # learns b through a
    await until(lambda: all(len(names(n)) == 3 for n in (a, b, c)))
    return a, b, c


async def test_joining_through_one_node_links_the_full_mesh(cluster: Cluster) -> None:
    a, _, c = await three(cluster)
    assert names(a) == ["a", "b", "c"]
    assert names(c) == ["c", "a", "b"]
    assert a.address == "mem://a"


async def test_directory_everywhere_values_only_where_read(cluster: Cluster) -> None:
    a, b, c = await three(cluster)
    await a.database("db").set("k", {"v": 1})
    await until(lambda: "k" in b.database("db") and "k" in c.database("db"))
    assert not b.database("db").holds("k")
    assert await b.database("db").get("k") == {"v": 1}  # pulled
    assert b.database("db").holds("k")
    assert not c.database("db").holds("k")


async def test_writes_reach_holders_and_others_learn_of_them(cluster: Cluster) -> None:
    a, b, c = await three(cluster)
    await a.database("db").set("k", {"v": 1})
    await until(lambda: "k" in b.database("db"))
    await b.database("db").get("k")
    async with b.events(database="db") as at_b, c.events(database="db") as at_c:
        await a.database("db").update("k", {"w": 2})
        event_b = await at_b.get(timeout=1)
        event_c = await at_c.get(timeout=1)
    assert (event_b.kind, event_b.origin) == ("changed", "a")
    assert event_b.delta is not None  # b holds it: the delta came
    assert event_b.value() == {"v": 1, "w": 2}
    assert (event_c.kind, event_c.delta) == ("changed", None)  # c only learns of it
    assert not c.database("db").holds("k")


async def test_a_holders_write_reaches_the_writer_of_origin(cluster: Cluster) -> None:
    a, b, _ = await three(cluster)
    await a.database("db").set("k", [1])
    await until(lambda: "k" in b.database("db"))
    await b.database("db").append("k", [], 2)  # b pulls, then writes
    await until(lambda: a.database("db")._keyspace.read("k") == [1, 2])


async def test_deletes_and_incr_everywhere(cluster: Cluster) -> None:
    a, b, c = await three(cluster)
    await a.database("db").incr("n", 5)
    await until(lambda: "n" in c.database("db"))
    assert await c.database("db").incr("n", 2) == 7
    assert await b.database("db").get("n") == 7
    await b.database("db").delete("n")
    await until(lambda: "n" not in a.database("db") and "n" not in c.database("db"))


async def test_custom_events_reach_every_node_once(cluster: Cluster) -> None:
    a, b, c = await three(cluster)
    subs = [n.events(kinds={"custom"}) for n in (a, b, c)]
    await b.emit("deploy", {"version": 3})
    await until(lambda: all(len(s) == 1 for s in subs))
    for _ in range(20):
        await asyncio.sleep(0)
    assert [len(s) for s in subs] == [1, 1, 1]
    event = await subs[2].get(timeout=1)
    assert (event.name, event.payload, event.origin) == ("deploy", {"version": 3}, "b")


async def test_writes_made_alone_merge_on_join(cluster: Cluster) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b")
    await a.database("db").set("from-a", 1)
    await b.database("db").set("from-b", 2)
    await b.database("other").set("x", True)
    await b.join("mem://a")
    await until(lambda: "from-b" in a.database("db") and "from-a" in b.database("db"))
    assert await a.database("db").get("from-b") == 2
    assert await b.database("db").get("from-a") == 1
    await until(lambda: "other" in a.databases() and "x" in a.database("other"))


async def test_a_value_with_no_reachable_holder_is_unavailable(cluster: Cluster) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b", ["mem://a"])
    await a.database("db").set("k", 1)
    await until(lambda: "k" in b.database("db"))
    await a.close()
    await until(lambda: names(b) == ["b"])
    with pytest.raises(pydds.Unavailable):
        await b.database("db").get("k")
    assert await b.database("db").get("missing", "default") == "default"


async def test_joined_and_left_events(cluster: Cluster) -> None:
    a = await cluster.start("a")
    async with a.events(kinds={"joined", "left"}) as events:
        b = await cluster.start("b", ["mem://a"])
        joined = await events.get(timeout=1)
        assert (joined.kind, joined.member) == ("joined", "b")
        await b.close()  # says it leaves: dropped at once, no waiting for dead_after
        left = await events.get(timeout=1)
    assert (left.kind, left.member) == ("left", "b")
    assert names(a) == ["a"]


async def test_partition_heal_and_catch_up(cluster: Cluster) -> None:
    a, _, c = await three(cluster)
    await a.database("db").set("k", "before")
    await until(lambda: "k" in c.database("db"))
    assert await c.database("db").get("k") == "before"  # c holds k
    await cluster.network.partition(["mem://c"], ["mem://a", "mem://b"])
    await until(lambda: names(c) == ["c"])
    await a.database("db").set("k", "during")
    await a.database("db").set("new", 1)
    await c.database("db").set("from-c", 2)
    cluster.network.heal()
    await cluster.clock.advance(10, step=0.5)  # redial with backoff
    await until(lambda: len(names(c)) == 3)
    await until(lambda: c.database("db")._keyspace.read("k") == "during")
    await until(lambda: "new" in c.database("db") and "from-c" in a.database("db"))


async def test_heartbeats_keep_idle_links_open(cluster: Cluster) -> None:
    a, _, _ = await three(cluster)
    await cluster.clock.advance(20, step=0.5)
    assert names(a) == ["a", "b", "c"]


async def test_a_silent_peer_is_disconnected(cluster: Cluster) -> None:
    await cluster.start("a")
    quiet = await cluster.network.transport().connect("mem://a")
    await quiet.send(encode_frame([m.Hello("quiet", "node", None, PROTOCOL), m.Proof(b"")]))
    reader = asyncio.ensure_future(drain(quiet))
    await cluster.clock.advance(6, step=0.5)  # past the 5 s timeout, never answering
    received = await asyncio.wait_for(reader, 1)
    assert isinstance(received[-1], m.Close)
    assert "silent" in received[-1].reason


async def test_a_peer_that_never_proves_itself_is_disconnected(cluster: Cluster) -> None:
    a = await cluster.start("a")
    quiet = await cluster.network.transport().connect("mem://a")
    await quiet.send(encode_frame([m.Hello("mute", "node", None, PROTOCOL)]))
    reader = asyncio.ensure_future(drain(quiet))
    await cluster.clock.advance(6, step=0.5)
    received = await asyncio.wait_for(reader, 1)
    assert isinstance(received[-1], m.Close)
    assert "handshake not completed within 5s" in received[-1].reason
    assert a._peers is not None
    assert a._peers.stats["error:auth"] == 1


async def test_a_malformed_frame_closes_only_that_link(cluster: Cluster) -> None:
    a = await cluster.start("a")
    evil = await cluster.network.transport().connect("mem://a")
    await evil.send(b"\xc1 not msgpack")
    received = await asyncio.wait_for(drain(evil), 1)
    assert isinstance(received[-1], m.Close)
    assert "msgpack" in received[-1].reason
    b = await cluster.start("b", ["mem://a"])
    await b.database("db").set("k", 1)
    await until(lambda: "k" in a.database("db"))


async def test_bad_data_from_a_peer_closes_that_link_and_changes_nothing(
    cluster: Cluster,
) -> None:
    a = await cluster.start("a")
    await a.database("db").set("k", 1)
    evil = await cluster.network.transport().connect("mem://a")
    garbage = m.DirectoryStep2("db", b"\x01\x02garbage", (0,))
    await evil.send(encode_frame([m.Hello("evil", "node", None, PROTOCOL), m.Proof(b""), garbage]))
    received = await asyncio.wait_for(drain(evil), 1)
    assert isinstance(received[-1], m.Close)
    assert "DirectoryStep2" in received[-1].reason
    assert await a.database("db").get("k") == 1
    assert a.database("db").keys() == ["k"]


async def test_a_bad_directory_step2_changes_nothing_known_or_not(cluster: Cluster) -> None:
    # A node's sync step 2 for a database this node has is decoded once, by the
    # directory (an empty one adopts it whole); one for a database it lacks is checked
    # before the database is made. Either way, garbage closes the link, nothing else.
    a = await cluster.start("a")
    a.database("empty")  # a directory that would adopt an update whole
    for database in ("empty", "unknown"):
        evil = await cluster.network.transport().connect("mem://a")
        garbage = m.DirectoryStep2(database, b"\x01\x02garbage", (0,))
        hello = m.Hello(f"evil-{database}", "node", None, PROTOCOL)
        await evil.send(encode_frame([hello, m.Proof(b""), garbage]))
        received = await asyncio.wait_for(drain(evil), 1)
        assert isinstance(received[-1], m.Close)
        assert "DirectoryStep2" in received[-1].reason
    assert a.databases() == ["empty"]
    assert a.database("empty")._keyspace.directory.untouched
    await a.database("empty").set("k", 1)  # it works as before
    assert a.database("empty").keys() == ["k"]


async def test_a_pull_nobody_answers_fails_after_the_bounded_wait(cluster: Cluster) -> None:
    a = await cluster.start("a")
    # A peer that tells of a key and then never answers a pull.
    source = pydds.Node("quiet")
    await source.database("db").set("k", 1)
    created = []
    source.add_change_listener(created.append)
    await source.database("db").set("k2", 2)
    change = created[0]
    await source.close()
    quiet = await cluster.network.transport().connect("mem://a")
    write = m.Write("db", "k2", change.gen, "created", change.directory, None, "quiet")
    await quiet.send(encode_frame([m.Hello("quiet", "node", None, PROTOCOL), m.Proof(b""), write]))
    await until(lambda: "k2" in a.database("db"))
    reader = asyncio.ensure_future(a.database("db").get("k2"))
    await until(lambda: bool(a._peers and a._peers.replication.pulls))
    await cluster.clock.advance(2.5, step=0.5)  # past the 2 s pull timeout
    with pytest.raises(pydds.Unavailable, match="in time"):
        await asyncio.wait_for(reader, 1)
    assert a._peers is not None
    assert not a._peers.replication.pulls  # nothing left waiting
    await quiet.close()


async def b_reads_from_a(
    cluster: Cluster,
) -> tuple[pydds.Node, pydds.Node, pydds.Database, pydds.Database]:
    """Nodes a and b, databases expiring after 10 s; a wrote "k", b read it (holds it)."""
    a, b = await cluster.pair()
    db_a, db_b = a.database("db", stale_after=10), b.database("db", stale_after=10)
    await db_a.set("k", 1)
    await until(lambda: "k" in db_b)
    assert await db_b.get("k") == 1
    return a, b, db_a, db_b


async def test_staleness_stops_pushes_and_a_read_refreshes(cluster: Cluster) -> None:
    a, b, db_a, db_b = await b_reads_from_a(cluster)
    assert a._peers is not None
    assert "b" in a._peers.replication.holders[("db", "k", 1)]
    async with b.events(kinds={"stale"}) as stale_events:
        await cluster.clock.advance(5, step=1.0)
        await db_a.set("k", 2)  # a write keeps a's copy fresh, not b's
        await cluster.clock.advance(6, step=1.0)
        event = await stale_events.get(timeout=1)
    assert (event.kind, event.key) == ("stale", "k")
    assert db_b.is_stale("k")
    await until(lambda: "b" not in a._peers.replication.holders[("db", "k", 1)])
    async with b.events(database="db") as at_b:
        await db_a.set("k", 3)
        notice = await at_b.get(timeout=1)
    assert (notice.kind, notice.delta) == ("changed", None)  # no longer pushed to b
    assert await db_b.get("k") == 3  # the read refreshed it
    assert not db_b.is_stale("k")
    assert "b" in a._peers.replication.holders[("db", "k", 1)]


async def test_a_stale_read_with_no_holder_reachable_serves_the_local_copy(
    cluster: Cluster,
) -> None:
    a, b = await cluster.pair()
    await a.database("db", stale_after=10).set("k", "old")
    db_b = b.database("db", stale_after=10)
    await until(lambda: "k" in db_b)
    assert await db_b.get("k") == "old"
    await cluster.network.partition(["mem://b"], ["mem://a"])
    await until(lambda: names(b) == ["b"])
    await cluster.clock.advance(11, step=1.0)
    assert db_b.is_stale("k")
    assert await db_b.get("k") == "old"  # the local copy, still flagged stale
    assert db_b.is_stale("k")


async def test_a_lone_nodes_stale_copy_is_all_there_is() -> None:
    clock = FakeClock()
    async with pydds.Node("alone", clock=clock) as node:
        db = node.database("db", stale_after=10)
        await db.set("k", 1)
        await clock.advance(11, step=1.0)
        assert db.is_stale("k")
        assert await db.get("k") == 1
        assert not db.is_stale("k")


async def test_pinning_refreshes_a_stale_copy_and_keeps_it_replicated(cluster: Cluster) -> None:
    _, b, db_a, db_b = await b_reads_from_a(cluster)
    await cluster.clock.advance(11, step=1.0)
    assert db_b.is_stale("k")
    await db_a.set("k", 2)
    await db_b.pin()
    assert not db_b.is_stale("k")
    assert db_b._keyspace.read("k") == 2  # refreshed by the pin, no read needed
    await cluster.clock.advance(30, step=1.0)
    async with b.events(database="db") as at_b:
        await db_a.set("k", 3)
        pushed = await at_b.get(timeout=1)
    assert pushed.delta is not None  # pushed to b again: it holds it fresh
    assert not db_b.is_stale("k")


async def test_a_key_created_on_two_nodes_at_once_merges_without_anti_entropy(
    cluster: Cluster,
) -> None:
    a, b = await cluster.pair()
    # Neither knows the other holds the key when it writes: each tells the other
    # only that the key was created, without the value.
    await a.database("db").update("k", {"from_a": 1})
    await b.database("db").update("k", {"from_b": 1})

    def merged(node: pydds.Node) -> bool:
        return node.database("db")._keyspace.read("k", fresh=False) == {"from_a": 1, "from_b": 1}

    await until(lambda: merged(a) and merged(b))  # no clock advance: no anti-entropy


async def test_ack_all_makes_every_node_a_holder(cluster: Cluster) -> None:
    a, b, c = await three(cluster)
    await a.database("db").set("k", {"v": 1}, ack="all")
    for node in (b, c):  # applied and held everywhere before set returned
        assert node.database("db").holds("k")
        assert node.database("db")._keyspace.read("k") == {"v": 1}
    await a.database("db").update("k", {"w": 2}, ack=3)
    assert c.database("db")._keyspace.read("k") == {"v": 1, "w": 2}
    assert await a.database("db").incr("n", 4, ack="majority") == 4
    assert await a.database("db").delete("k", ack="all") is True
    assert "k" not in b.database("db")
    assert "k" not in c.database("db")


async def test_ack_majority_survives_a_partitioned_minority(cluster: Cluster) -> None:
    a, b, _ = await three(cluster)
    await cluster.network.partition(["mem://c"], ["mem://a", "mem://b"])
    await until(lambda: names(a) == ["a", "b"])
    await a.database("db").set("k", 1, ack="majority")  # a and b: 2 of 3
    assert b.database("db").holds("k")
    writing = asyncio.ensure_future(a.database("db").set("k", 2, ack="all"))
    await until(lambda: bool(a._peers and a._peers.acks_waiting))
    await cluster.clock.advance(6, step=0.5)  # past the 5 s ack timeout
    with pytest.raises(pydds.AckTimeout, match="stands"):
        await asyncio.wait_for(writing, 1)
    assert await a.database("db").get("k") == 2  # a timeout never undoes the write
    assert b.database("db")._keyspace.read("k") == 2


async def test_bad_ack_levels_are_refused_and_change_nothing(cluster: Cluster) -> None:
    a = await cluster.start("a")
    for bad in ("quorum", 0, -1, 1.5, True, None):
        with pytest.raises(pydds.InvalidValue):
            await a.database("db").set("k", 1, ack=bad)  # type: ignore[arg-type]
    assert "k" not in a.database("db")


async def test_a_lone_node_acknowledges_every_level() -> None:
    async with pydds.Node("alone") as node:
        await node.database("db").set("k", 1, ack="all")
        await node.database("db").set("k", 2, ack=3)
        assert await node.database("db").get("k") == 2


async def start_client(cluster: Cluster, name: str, join: list[str]) -> pydds.Client:
    client = pydds.Client(
        name, join=join, transport=cluster.network.transport(), clock=cluster.clock
    )
    cluster.nodes.append(client)
    await client.start()
    return client


async def test_a_client_is_relayed_both_ways_and_never_a_member(cluster: Cluster) -> None:
    a, b, c = await three(cluster)
    client = await start_client(cluster, "cl", ["mem://a"])
    # The nodes it knows (to move to, should its gateway go): a, then b and c.
    await until(lambda: sorted(m.name for m in client.members()) == ["a", "b", "c"])
    for node in (a, b, c):
        assert "cl" not in names(node)
    # The client's writes reach the cluster through its gateway...
    await client.database("db").set("from-client", {"x": 1})
    await until(lambda: "from-client" in c.database("db"))
    assert await c.database("db").get("from-client") == {"x": 1}
    # ...and the cluster's writes reach the client.
    await b.database("db").set("from-b", 2)
    await until(lambda: "from-b" in client.database("db"))
    assert await client.database("db").get("from-b") == 2  # pulled via the gateway
    async with client.events(database="db") as at_client:
        await b.database("db").set("from-b", 3)
        event = await at_client.get(timeout=1)
    assert (event.kind, event.origin, event.delta is not None) == ("changed", "b", True)
    # A client that leaves is no member leaving: its gateway says nothing of it.
    async with a.events(kinds={"unreachable", "left"}) as member_events:
        other = await start_client(cluster, "cl2", ["mem://a"])
        await other.close()
        await until(lambda: "cl2" not in a._peers.links)  # type: ignore[union-attr]
        assert len(member_events) == 0
    # Custom events both ways, once each.
    subs = [n.events(kinds={"custom"}) for n in (a, b, c, client)]
    await client.emit("hello", 1)
    await c.emit("hi", 2)
    await until(lambda: all(len(s) == 2 for s in subs))


async def test_a_clients_acknowledged_writes_count_the_nodes(cluster: Cluster) -> None:
    a, b, c = await three(cluster)
    client = await start_client(cluster, "cl", ["mem://a"])
    await until(lambda: sorted(m.name for m in client.members()) == ["a", "b", "c"])
    db = client.database("db")
    await db.set("k", {"v": 1}, ack="all")
    for node in (a, b, c):  # applied and held by every node before set returned
        assert node.database("db").holds("k")
        assert node.database("db")._keyspace.read("k") == {"v": 1}
    await db.update("k", {"w": 2}, ack="majority")
    await db.incr("n", 1, ack=3)
    assert c.database("db")._keyspace.read("n") == 1
    # With a node cut off, "all" cannot be reached: AckTimeout, and the write stands.
    await cluster.network.partition(["mem://c"], ["mem://a", "mem://b"])
    await until(lambda: names(a) == ["a", "b"])
    waiting = asyncio.ensure_future(db.set("late", 1, ack="all"))
    await until(lambda: "late" in b.database("db"))
    await cluster.clock.advance(6, step=0.5)
    with pytest.raises(pydds.AckTimeout):
        await waiting
    assert await db.get("late") == 1
    await db.set("most", 1, ack="majority")  # a and b: still a majority of three


async def test_clients_never_count_for_acknowledgements(cluster: Cluster) -> None:
    # Two nodes, one of them gone (still a member: not yet dead_after), and clients
    # linked to the one left: no level beyond local can be reached, whoever writes.
    a, _ = await cluster.pair()
    clients = [await start_client(cluster, f"cl{i}", ["mem://a"]) for i in range(2)]
    await until(lambda: all(len(c.members()) == 2 for c in clients))
    await cluster.network.partition(["mem://b"], ["mem://a"])
    await until(lambda: names(a) == ["a"])
    for writer in (a, clients[0]):
        for level in ("majority", 2, "all"):
            writing = asyncio.ensure_future(writer.database("db").set("k", level, ack=level))
            await until(lambda: "k" in clients[1].database("db"))
            await cluster.clock.advance(6, step=0.5)  # past the 5 s ack timeout
            with pytest.raises(pydds.AckTimeout):
                await asyncio.wait_for(writing, 1)
            for c in clients:  # a client got no whole value to hold for the write
                assert not c.database("db").holds("k") or c is writer
            await a.database("db").delete("k")
            await until(lambda: "k" not in clients[1].database("db"))


async def test_a_client_never_takes_or_blocks_a_nodes_name(cluster: Cluster) -> None:
    a, b = await cluster.pair()
    await cluster.crash(b)  # b is down, still a member: its name is a node's
    await until(lambda: names(a) == ["a"])
    impostor = pydds.Client(
        "b", join=["mem://a"], transport=cluster.network.transport(), clock=cluster.clock
    )
    with pytest.raises(pydds.LinkClosed, match="'b' is a node's name"):
        await impostor.join("mem://a")
    await impostor.close()
    # A client that took a name before any node had it gives way to the node.
    squatter = await start_client(cluster, "c", ["mem://a"])
    await until(lambda: "c" in a._peers.links)  # type: ignore[union-attr]
    c = await cluster.start("c", ["mem://a"])
    await until(lambda: names(a) == ["a", "c"] and names(c) == ["c", "a"])
    b = await cluster.start("b", ["mem://a"])  # and b comes back: linked as before
    await until(lambda: sorted(names(a)) == ["a", "b", "c"])
    await a.database("db").set("k", 1)
    await until(lambda: "k" in b.database("db") and "k" in c.database("db"))
    assert await b.database("db").get("k") == 1
    assert await c.database("db").get("k") == 1
    assert squatter._peers is not None
    assert not a._peers.links["c"].is_client  # type: ignore[union-attr]  # the node's
    await until(lambda: "a" not in squatter._peers.links)  # type: ignore[union-attr]


async def test_a_member_without_an_address_expires_after_dead_after(cluster: Cluster) -> None:
    a = await cluster.start("a")
    # A node that does not listen: it dials, nobody can dial it back.
    lone = pydds.Node(
        "lone", join=["mem://a"], transport=cluster.network.transport(), clock=cluster.clock
    )
    cluster.nodes.append(lone)
    await lone.start()
    await until(lambda: names(a) == ["a", "lone"])
    async with a.events(kinds={"left"}) as left:
        await cluster.crash(lone)
        await until(lambda: names(a) == ["a"])
        assert a._peers is not None
        assert a._peers.needed_acks("all") == 1  # suspect: still counted
        await cluster.clock.advance(590, step=5.0)
        assert a._peers.needed_acks("all") == 1  # unreachable for 590 s: still counted
        await cluster.clock.advance(11, step=1.0)  # past dead_after (600 s)
        event = await left.get(timeout=1)
    assert event.member == "lone"
    assert [m.name for m in a.members()] == ["a"]
    await a.database("db").set("k", 1, ack="all")  # alone again: acknowledged at once


async def test_a_client_is_never_a_gateway(cluster: Cluster) -> None:
    a = await cluster.start("a")
    await start_client(cluster, "cl", ["mem://a"])
    # A node cannot join through a client: clients accept no links at all, and a
    # client that sends a member list (a join request) is cut off.
    received = await as_rogue_client(cluster, "mem://a", m.Members((("x", "mem://x"),)))
    assert isinstance(received[-1], m.Close)
    assert "client cannot send Members" in received[-1].reason
    assert names(a) == ["a"]


async def test_a_client_cannot_relay_writes_of_others(cluster: Cluster) -> None:
    a = await cluster.start("a")
    forged = await cluster.network.transport().connect("mem://a")
    source = pydds.Node("victim")
    made = []
    source.add_change_listener(made.append)
    await source.database("db").set("k", 1)
    change = made[0]
    write = m.Write("db", "k", change.gen, "created", change.directory, change.value, "victim")
    hello = m.Hello("rogue", "client", None, PROTOCOL)
    await forged.send(encode_frame([hello, m.Proof(b""), write]))
    received = await asyncio.wait_for(drain(forged), 1)
    assert isinstance(received[-1], m.Close)
    assert "relays nothing" in received[-1].reason
    assert "k" not in a.database("db")
    await source.close()


async def test_a_client_moves_to_another_gateway(cluster: Cluster) -> None:
    a, b, _ = await three(cluster)
    client = await start_client(cluster, "cl", ["mem://a"])
    await until(lambda: len(client.members()) == 3)  # it learned b and c
    await a.close()
    await cluster.clock.advance(2, step=0.2)
    await until(lambda: any(m.state == "alive" for m in client.members()))
    await client.database("db").set("after", 1)
    await until(lambda: "after" in b.database("db"))


async def test_warm_up_pulls_recent_values_after_a_join(cluster: Cluster) -> None:
    a = await cluster.start("a")
    recent = a.database("recent", stale_after=300)
    for i in range(25):
        await recent.set(f"k{i}", i)
    await a.database("lazy").set("x", 1)  # no expiry: stays lazy
    b = cluster.node("b", ["mem://a"])
    b.database("recent", stale_after=300)
    async with b.events(kinds={"warmed"}) as warmed:
        await b.start()  # the join is not delayed by the warm-up
        assert b.warmup.pulled == 0
        await cluster.clock.advance(1, step=0.1)
        event = await warmed.get(timeout=1)
    assert event.payload == {"pulled": 25, "failed": 0}
    assert b.warmup == pydds.Warmup(pending=0, pulled=25, failed=0, running=False)
    assert all(b.database("recent").holds(f"k{i}") for i in range(25))
    assert not b.database("lazy").holds("x")


@pytest.fixture
def sliced(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sweeps of one chunk of 10 keys, and exact counts up to 20 keys only."""
    monkeypatch.setattr(keyspace, "SWEEP_BUDGET", 0.0)  # one chunk per sweep
    monkeypatch.setattr(keyspace, "SWEEP_CHUNK", 10)
    monkeypatch.setattr(keyspace, "EXACT_COUNTS", 20)


@pytest.mark.usefixtures("sliced")
async def test_a_large_database_is_swept_a_slice_at_a_time() -> None:
    # A sweep holds the event loop for a bounded time: a database too large for one
    # sweep is walked over several, and its counts come from the last whole walk.
    clock = FakeClock()
    node = pydds.Node("big", clock=clock)  # not started: sweeps only when called
    db = node.database("db", stale_after=10)
    for i in range(35):
        await db.set(f"k{i:02}", i)
    ks = db._keyspace
    assert ks.counts() == (35, 35, 0)  # no whole walk yet: counted now
    await clock.advance(11)
    assert all(db.is_stale(f"k{i:02}") for i in range(35))  # reads see it on time
    swept = [len(ks.sweep()) for _ in range(4)]
    assert swept == [10, 10, 10, 5]  # four slices: the walk is complete
    assert ks.counts() == (35, 35, 35)  # what the walk counted
    await db.get("k00")  # refreshed: counted at the next whole walk
    assert ks.counts() == (35, 35, 35)
    assert sum(len(ks.sweep()) for _ in range(4)) == 0  # nothing newly stale
    assert ks.counts() == (35, 35, 34)
    await node.close()


@pytest.mark.usefixtures("sliced")
async def test_a_walk_left_unfinished_when_most_keys_go_keeps_none_of_them() -> None:
    # A database without staleness is walked only while it has many keys (for its
    # counts); when most of them are deleted, the walk under way holds no key.
    node = pydds.Node("n")  # not started: sweeps only when called
    db = node.database("db")
    await db.set_many({f"session:{i}": i for i in range(35)})
    ks = db._keyspace
    ks.sweep()  # a walk of 35 keys begins
    await db.delete_many(f"session:{i}" for i in range(30))
    ks.sweep()
    assert ks._pass == []  # it held the 35 keys until the next walk, which never came
    await node.close()


async def test_a_bulk_directory_pauses_the_collector_and_always_resumes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A whole directory (a join) is applied with the cyclic collector paused; it
    # runs again afterwards, also when the update is refused.
    source, target = pydds.Node("s"), pydds.Node("t")
    for i in range(6000):
        await source.database("db").set(f"key:{i}", i)
    update = encode_update(source.database("db")._keyspace.directory.entries().items())
    assert len(update) >= keyspace.BULK_BYTES
    ks = target.database("db")._keyspace
    collecting: list[bool] = []  # whether the collector could run, at each key made
    made = keyspace.KeyDoc

    def watched(*args: Any, **kwargs: Any) -> Any:
        collecting.append(gc.isenabled())
        return made(*args, **kwargs)

    monkeypatch.setattr(keyspace, "KeyDoc", watched)
    changes = ks.apply_directory(update, "s")
    assert collecting == [False] * 6000
    assert len(changes) == 6000
    assert len(ks) == 6000
    assert gc.isenabled()
    with pytest.raises(pydds.InvalidUpdate):
        target.database("other")._keyspace.apply_directory(b"\xff" * len(update), "s")
    assert gc.isenabled()
    await source.close()
    await target.close()


async def test_joins_return_when_links_replace_or_duplicate_each_other(cluster: Cluster) -> None:
    # Each dials the other; one of the two links is closed as a duplicate, and both
    # joins return once the peer has accepted them (the kept link carries its
    # members), instead of one waiting out its join timeout or failing. Joining
    # again while linked returns at once.
    a = await cluster.start("a")
    b = await cluster.start("b")
    async with asyncio.timeout(2):  # real time: the fake clock stands still
        await b.join("mem://a")
        # a's own link wins (the link dialed by the smaller name stays), replacing
        # b's on both ends; b's members on it tell a that it was accepted.
        await a.join("mem://b")
    await until(lambda: names(a) == ["a", "b"] and names(b) == ["b", "a"])
    assert a._peers is not None
    link = a._peers.links["b"]
    assert link.dialed
    assert not link.session.closed
    for i in range(5):
        async with asyncio.timeout(2):
            results = await asyncio.gather(
                a.join("mem://b"), b.join("mem://a"), return_exceptions=True
            )
        assert results == [None, None]  # joined, also when linked already
        await until(lambda: names(a) == ["a", "b"] and names(b) == ["b", "a"])
        assert a._peers is not None
        assert b._peers is not None
        assert len(a._peers.links) == len(b._peers.links) == 1
        await a.database("db").set(f"k{i}", i)
        await until(lambda: f"k{i}" in b.database("db"))  # noqa: B023 (awaited here)
        assert await b.database("db").get(f"k{i}") == i


async def test_a_node_that_closes_leaves_at_once(cluster: Cluster) -> None:
    a, b, c = await three(cluster)
    async with a.events(kinds={"left", "unreachable"}) as at_a, b.events(kinds={"left"}) as at_b:
        await c.close()  # says goodbye: no suspicion, no waiting for dead_after
        assert (await at_a.get(timeout=1)).kind == "left"
        assert (await at_b.get(timeout=1)).member == "c"
        assert [m.name for m in a.members()] == ["a", "b"]
        assert [m.name for m in b.members()] == ["b", "a"]
        await a.database("db").set("k", 1, ack="all")  # c no longer counts
        await cluster.clock.advance(5, step=0.5)  # and nothing redials it
        assert a._peers is not None
        assert "mem://c" not in a._peers.redialing
        assert len(at_a) == 0  # never reported unreachable
    c = await cluster.start("c", ["mem://a"])  # a node that left simply joins again
    await until(lambda: all(len(names(n)) == 3 for n in (a, b, c)))


async def test_a_leave_is_passed_on_to_nodes_the_leaver_cannot_reach(cluster: Cluster) -> None:
    _a, b, c = await three(cluster)
    await cluster.network.partition(["mem://c"], ["mem://b"])
    await until(lambda: names(b) == ["b", "a"])  # c is suspect at b
    async with b.events(kinds={"left"}) as at_b:
        await c.close()  # its Leave reaches a, and a passes it on to b
        assert (await at_b.get(timeout=1)).member == "c"
    assert [m.name for m in b.members()] == ["b", "a"]
    assert b._peers is not None
    assert b._peers.needed_acks("all") == 1


async def test_a_passed_on_leave_never_drops_a_node_linked_here(cluster: Cluster) -> None:
    a, _b, _ = await three(cluster)
    assert a._peers is not None
    link = a._peers.links["b"]
    a._peers.dispatch(link, m.Leave("c"), cluster.clock.now())  # as if b said that c left
    a._drain()  # c is linked to a: still here
    await drain_tasks()
    assert names(a) == ["a", "b", "c"]


async def drain_tasks() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_new_key_reaches_members_the_writer_has_no_link_to(cluster: Cluster) -> None:
    _a, b = await cluster.pair()
    await cluster.network.partition(["mem://w"], ["mem://b"])
    w = await cluster.start("w", ["mem://a"])  # learns b through a, cannot link to it
    await until(lambda: [m.name for m in w.members()] == ["w", "a", "b"])
    assert names(w) == ["w", "a"]
    async with b.events(database="db") as at_b:
        await w.database("db").set("k", {"v": 1}, ack="majority")  # a acknowledges
        event = await at_b.get(timeout=1)  # through a, not anti-entropy: no time passed
        assert (event.kind, event.key, event.origin) == ("created", "k", "w")
        assert await b.database("db").get("k") == {"v": 1}  # pulled from a
        await w.database("db").delete("k")
        assert (await at_b.get(timeout=1)).kind == "deleted"
    assert "k" not in b.database("db")


@pytest.mark.parametrize(
    "message",
    [m.Leave("a"), m.Relay(("b",), "db", "k", 1, b"\x80", "x"), m.Reach(("b",))],
)
async def test_a_client_cannot_say_who_left_or_relay(cluster: Cluster, message: Any) -> None:
    a, _b = await cluster.pair()
    received = await as_rogue_client(cluster, "mem://a", message)
    assert isinstance(received[-1], m.Close)
    assert f"client cannot send {type(message).__name__}" in received[-1].reason
    assert names(a) == ["a", "b"]


async def test_an_operator_removes_a_crashed_member_everywhere(cluster: Cluster) -> None:
    a, b, c = await three(cluster)
    await cluster.crash(c)
    await until(lambda: all(m.state != "alive" for m in a.members() if m.name == "c"))
    assert a._peers is not None
    assert b._peers is not None
    assert a._peers.needed_acks("all") == 2  # crashed, still counted
    async with b.events(kinds={"left"}) as left_on_b:
        assert a.remove_member("c")
        event = await left_on_b.get(timeout=1)  # a told b (Leave)
    assert event.member == "c"
    assert names(a) == ["a", "b"]
    assert names(b) == ["b", "a"]
    assert a._peers.needed_acks("all") == 1
    assert b._peers.needed_acks("all") == 1
    assert "c" not in [m.name for m in b.members()]
    await a.database("db").set("k", 1, ack="all")  # c is waited for no more
    assert not a.remove_member("c")  # no member any more
    assert not a.remove_member("a")  # this node itself
    assert not a.remove_member("nobody")
    await cluster.clock.advance(5, step=1.0)
    assert a._peers.redialing == []  # nobody dials c
    back = await cluster.start("c", ["mem://b"])  # a removed node simply joins again
    await until(lambda: all(len(names(n)) == 3 for n in (a, b, back)))


def states(node: pydds.Node) -> dict[str, str]:
    return {m.name: str(m.state) for m in node.members()}


async def test_a_link_cut_between_two_nodes_makes_neither_call_the_other_down(
    cluster: Cluster,
) -> None:
    settings = pydds.ClusterSettings(dead_after=20.0)
    a = cluster.node("a", cluster=settings)
    b = cluster.node("b", ["mem://a"], cluster=settings)
    c = cluster.node("c", ["mem://a"], cluster=settings)
    for node in (a, b, c):
        await node.start()
    await until(lambda: all(len(names(n)) == 3 for n in (a, b, c)))
    await cluster.clock.advance(1.5, step=0.5)  # every node's Reach has gone out
    events = a.events(kinds=["unreachable", "left"])
    await cluster.network.partition(["mem://a"], ["mem://b"])  # only a-b; c reaches both
    await until(lambda: states(a)["b"] == "indirect" and states(b)["a"] == "indirect")
    assert states(c) == {"c": "self", "a": "alive", "b": "alive"}
    # No one is suspect, so dead_after never runs out: still three members everywhere.
    await cluster.clock.advance(settings.dead_after + 10, step=0.5)
    assert states(a) == {"a": "self", "b": "indirect", "c": "alive"}
    assert states(b) == {"b": "self", "a": "indirect", "c": "alive"}
    # The link here closed (unreachable), and nobody left.
    assert [(e.kind, e.member) for e in events.ready(20)] == [("unreachable", "b")]
    await b.database("db").set("k", 1)
    await until(lambda: "k" in a.database("db"))  # relayed by c
    # c goes: now nothing reaches b from a, and b is suspect there.
    await cluster.crash(c)
    await until(lambda: states(a).get("b") == "suspect")
    got = await events.get(timeout=5)
    assert (got.kind, got.member) == ("unreachable", "c")
    reachable = a.events(kinds=["reachable"])
    cluster.network.heal()
    await cluster.clock.advance(2, step=0.5)  # the redial's backoff
    await until(lambda: states(a).get("b") == "alive" and states(b).get("a") == "alive")
    assert (await reachable.get(timeout=5)).member == "b"  # linked again (keep-fresh rescans)


async def test_a_node_whose_links_change_often_says_so_once_a_second(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydds.net.peers import REACH_EVERY, Peers

    sent: list[tuple[str, float]] = []
    send = Peers._send_reach

    def counted(self: Peers, now: float) -> None:
        sent.append((self.name, now))
        send(self, now)

    monkeypatch.setattr(Peers, "_send_reach", counted)
    a = await cluster.start("a")
    others = [await cluster.start(f"n{i}", ["mem://a"]) for i in range(6)]
    await until(lambda: all(len(names(n)) == 7 for n in (a, *others)))
    # Six links opened on a within the same instant: one Reach at once, the rest wait.
    assert [t for name, t in sent if name == "a"] == [0.0]
    await cluster.clock.advance(REACH_EVERY + 0.5, step=0.25)
    at_a = [t for name, t in sent if name == "a"]
    assert len(at_a) == 2  # the changes in between, in one
    assert at_a[1] - at_a[0] >= REACH_EVERY
    assert all(len([t for name, t in sent if name == n.name]) <= 2 for n in others)


async def test_a_directory_larger_than_a_frame_reaches_a_joining_node(cluster: Cluster) -> None:
    # Nodes that accept frames of 64 KiB at most: a directory of some 300 KB (a
    # join's answer, queued at once) goes in several frames the peer accepts.
    settings = pydds.ClusterSettings(max_frame_bytes=64 * 1024)
    a = cluster.node("a", cluster=settings)
    await a.start()
    db = a.database("db")
    for i in range(20_000):
        await db.set(f"key:{i}", i)
    b = cluster.node("b", ["mem://a"], cluster=settings)
    await b.start()
    await until(lambda: len(b.database("db")) == 20_000)
    assert await b.database("db").get("key:19999") == 19999
    assert b.traffic_total().bytes_in > 300_000
