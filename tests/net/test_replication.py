"""The replication protocol, one message at a time (sans-IO)."""

from __future__ import annotations

import pytest
from pycrdt import Doc, Map

import pydds
from pydds.crdt.directory import encode_update
from pydds.crdt.sync import update_state_vector, writes_only_as
from pydds.net import messages as m
from pydds.net.codec import encode_frame
from pydds.net.replication import Replication

from ..helpers import sent


def replication(node: pydds.Node) -> Replication:
    return Replication(node.name, lambda db: node.database(db)._keyspace, node.databases)


def step1_of(node: pydds.Node, database: str) -> m.DirectoryStep1:
    """The sync step 1 ``node`` would send for ``database``."""
    directory = node.database(database)._keyspace.directory
    buckets = directory.bucket_count()
    return m.DirectoryStep1(database, buckets, directory.digests(buckets))


async def a_writes_to_b(
    *keys: str,
) -> tuple[pydds.Node, pydds.Node, Replication, Replication]:
    """Nodes a and b, linked; a sets ``keys`` and b handles what a sends of them."""
    a, b = pydds.Node("a"), pydds.Node("b")
    ra, rb = replication(a), replication(b)
    ra.opened("b")
    rb.opened("a")
    made: list[pydds.Change] = []
    a.add_change_listener(made.append)
    for key in keys:
        await a.database("db").set(key, {"v": 1})
    for change in made:
        for _, message in ra.changed(change):
            rb.handle("a", message)
    return a, b, ra, rb


async def test_step1s_both_ways_bring_each_end_what_it_lacks() -> None:
    a, b = pydds.Node("a"), pydds.Node("b")
    await a.database("db").set("k", 1)
    await b.database("db").set("j", 2)
    ra, rb = replication(a), replication(b)
    seen_b, _, to_b = ra.opened("b")  # EventsSeen, Consumers, the step 1
    seen_a, _, to_a = rb.opened("a")
    assert isinstance(seen_b[1], m.EventsSeen)
    assert isinstance(seen_a[1], m.EventsSeen)
    pairs = ((ra, "a", rb, "b", to_b), (rb, "b", ra, "a", to_a))
    for sender, sender_name, receiver, receiver_name, step1 in pairs:
        sends = sent(receiver.handle(sender_name, step1[1])[0])
        assert [type(message) for _, message in sends] == [m.DirectoryStep2]
        assert sends[0][1].complete  # type: ignore[union-attr]
        sender.handle(receiver_name, sends[0][1])
    assert "k" in b.database("db")
    assert "j" in a.database("db")
    # Once even, a step 1 is answered with nothing: the exchange ends.
    sends, _ = rb.handle("a", step1_of(a, "db"))
    assert sends == []


async def test_a_step1_for_a_database_this_node_lacks_is_asked_back() -> None:
    a, b = pydds.Node("a"), pydds.Node("b")
    await a.database("db").set("k", 1)
    ra, rb = replication(a), replication(b)
    ra.opened("b")
    rb.opened("a")  # b has no database: it sent no step 1
    sends = sent(rb.handle("a", step1_of(a, "db"))[0])
    assert sorted(type(message).__name__ for _, message in sends) == [
        "DirectoryStep1",
        "DirectoryStep2",
    ]
    (step1,) = [message for _, message in sends if isinstance(message, m.DirectoryStep1)]
    answer = sent(ra.handle("b", step1)[0])
    rb.handle("a", answer[0][1])
    assert "k" in b.database("db")


async def test_a_pull_answer_registers_holders_both_ways() -> None:
    _, b, ra, rb = await a_writes_to_b("k")
    assert rb.holders[("db", "k", 1)] == {"a"}  # the writer holds it
    value_id, pulls = rb.pull("db", "k")
    (answer,), _ = ra.handle("b", pulls[0][1])
    assert ra.holders[value_id] == {"b"}  # the puller holds it from now on
    _, notices = rb.handle("a", answer[1])
    assert notices[0].answered  # type: ignore[union-attr]
    assert b.database("db").holds("k")


async def test_only_a_client_is_told_who_acknowledged() -> None:
    a = pydds.Node("a")
    ra = replication(a)
    ra.opened("b")
    with pytest.raises(pydds.ProtocolError, match="only a client"):
        ra.handle("b", m.AckFrom(1, "c"))
    client = Replication("cl", lambda db: a.database(db)._keyspace, a.databases, is_client=True)
    client.opened("a")
    _, notices = client.handle("a", m.AckFrom(5, "c"))
    assert [(n.id, n.peer) for n in notices] == [(5, "c")]  # type: ignore[union-attr]


async def test_a_value_that_does_not_decode_changes_nothing_wherever_it_would_go() -> None:
    # A node's write of a value only, to a database already seen, is decoded by the
    # apply itself where the key is held; elsewhere it is checked first. Either way a
    # bad one is refused and nothing changes.
    _, b, ra, rb = await a_writes_to_b("held", "unread")
    ks = b.database("db")._keyspace
    _, pulls = rb.pull("db", "held")
    (answer,), _ = ra.handle("b", pulls[0][1])
    rb.handle("a", answer[1])
    assert ks.read("held") == {"v": 1}
    before = (dict(ks.directory.entries()), ks.value_state_vector("held"), len(ks))
    garbage = b"\x01\x02\xff\xff\xff\xff\xff\xff\xff\xff\x7f"
    for key, gen in (("held", 1), ("unread", 1), ("held", 2), ("new", 1)):
        bad = m.Write("db", key, gen, "changed", None, garbage, "a", 0)
        with pytest.raises(pydds.ProtocolError, match=r"does not decode|cannot apply"):
            rb.handle("a", bad)
        assert (dict(ks.directory.entries()), ks.value_state_vector("held"), len(ks)) == before
    assert ks.read("held") == {"v": 1}
    assert not ks.holds("unread")  # not made a holder by a value that failed
    assert ("db", "new", 1) not in rb.holders
    assert not ks._early  # nothing kept for later
    assert ks.dropped_updates == 0


async def test_holding_compares_only_what_both_hold_and_refuses_garbage_whole() -> None:
    # b holds "held"; a tells b what it holds. A state vector b compares must decode
    # (else the message is refused before any holder is recorded); one for a value b
    # does not hold is never used.
    _, b, ra, rb = await a_writes_to_b("held", "unread")
    _, pulls = rb.pull("db", "held")
    (answer,), _ = ra.handle("b", pulls[0][1])
    rb.handle("a", answer[1])
    ours = b.database("db")._keyspace.value_state_vector("held")
    garbage = b"\x05\xff"
    same = m.Holding("db", (("held", 1, ours), ("unread", 1, garbage)))
    rb.holders.drop_peer("a")
    sends, _ = rb.handle("a", same)
    assert sends == []  # the same state vector: nothing to send, nothing decoded
    assert rb.holders[("db", "held", 1)] == {"a"}
    assert rb.holders[("db", "unread", 1)] == {"a"}
    rb.holders.drop_peer("a")
    bad = m.Holding("db", (("unread", 1, ours), ("held", 1, garbage)))
    with pytest.raises(pydds.ProtocolError, match="Holding"):
        rb.handle("a", bad)
    assert len(rb.holders) == 0  # refused whole: no holder recorded
    behind = m.Holding("db", (("held", 1, b"\x00"),))  # a lacks everything of it
    sends, _ = rb.handle("a", behind)
    assert [type(message) for _, message in sends] == [m.ValueDiff]


async def test_a_client_syncs_no_directory_outside_its_token() -> None:
    # Even an empty step 2 (no writers) for a database out of the client's scope
    # is refused: handling it would make that database on the gateway.
    from pydds.net.auth import Grant

    gateway = pydds.Node("g")
    rg = replication(gateway)
    rg.opened("cl", "client", Grant("client", databases=frozenset({"cache"})), 7)
    gateway.database("cache")
    empty = encode_update(())
    with pytest.raises(pydds.ProtocolError, match="no read right on 'other'"):
        rg.handle("cl", m.DirectoryStep2("other", empty, ()))
    assert gateway.databases() == ["cache"]
    rg.handle("cl", m.DirectoryStep2("cache", empty, ()))  # its own database: fine


async def test_a_link_that_replaces_another_waits_for_the_peers_sync_steps_again() -> None:
    a, b = pydds.Node("a"), pydds.Node("b")
    await a.database("db").set("k", 1)
    await b.database("db").set("j", 1)
    ra = replication(a)
    ra.opened("b")
    assert ra.awaiting["b"] == {"db"}  # b's step 1 for it has not come
    ra.handle("b", step1_of(b, "db"))
    assert ra.awaiting["b"] == set()
    ra.relinked("b")  # what the replaced link carried is lost: not synced yet
    assert ra.awaiting["b"] == {"db"}


async def test_a_clients_refused_write_makes_no_database() -> None:
    a = pydds.Node("a")
    gateway = Replication("a", lambda db: a.database(db)._keyspace, a.databases)
    gateway.opened("cl", "client", None, 7)
    # A value with no entry, to a database the node does not have: refused, unmade.
    write = m.Write("new-db", "k", 1, "changed", None, b"\x00\x00", "cl")
    with pytest.raises(pydds.ProtocolError, match="no entry"):
        gateway.handle("cl", write)
    assert a.databases() == []


async def test_holding_messages_keep_to_a_byte_budget() -> None:
    a = pydds.Node("a")
    for i in range(300):
        await a.database("db").set("k" * 900 + str(i), i)  # long keys
    ra = Replication("a", lambda db: a.database(db)._keyspace, a.databases, chunk_bytes=32_768)
    ra.opened("b")
    holding = [message for _, message in sent(ra.holding("b", "db"))]
    assert sum(len(message.values) for message in holding) == 300  # type: ignore[union-attr]
    assert len(holding) > 1
    assert max(len(encode_frame([message])) for message in holding) < 2 * 32_768


async def test_a_client_cannot_write_under_another_id_from_a_later_clock() -> None:
    # An update's state vector leaves out a writer whose operations in it start past
    # clock 0: the writers are read from a document that takes it.
    forger = Doc(client_id=99)
    fields = forger.get("v", type=Map)
    fields["a"] = "first"
    before = forger.get_state()
    fields["b"] = "forged"
    forged = forger.get_update(before)
    assert not writes_only_as(forged, 7)
    assert writes_only_as(forged, 99)
    a = pydds.Node("a")
    await a.database("db").set("k", {"a": 1})
    gateway = Replication("a", lambda db: a.database(db)._keyspace, a.databases)
    gateway.opened("cl", "client", None, 7)
    gen = a.database("db")._keyspace.generation("k")
    # And under the node's own id, over an item it made: the update depends on
    # items it does not carry, so its state vector lists no writer at all.
    node_writer = Doc(client_id=a.client_id)
    whole = a.database("db")._keyspace.value_diff("k", gen, b"\x00")
    assert whole is not None
    node_writer.apply_update(whole)
    at = node_writer.get_state()
    node_writer.get("value", type=Map)["a"] = "forged"
    over = node_writer.get_update(at)
    assert update_state_vector(over) in (b"\x00", bytes(at))  # it names no new writer
    assert not writes_only_as(over, 7)
    for message in (
        m.Write("db", "k", gen, "changed", None, forged, "cl"),
        m.ValueDiff("db", "k", gen, forged),
        m.ValueDiff("db", "k", gen, over),
    ):
        with pytest.raises(pydds.ProtocolError, match="own client id"):
            gateway.handle("cl", message)
    assert a.database("db")._keyspace.read("k") == {"a": 1}


async def test_holding_buckets_keep_to_a_byte_budget() -> None:
    a = pydds.Node("a")
    for i in range(300):
        await a.database("db").set("k" * 900 + str(i), i)
    ra = Replication("a", lambda db: a.database(db)._keyspace, a.databases, chunk_bytes=32_768)
    ra.opened("b")
    buckets = 64
    answers, _ = ra.handle("b", m.HoldingAsk("db", buckets, tuple(range(buckets))))
    sent_values = [message for _, message in sent(answers)]
    assert sum(len(message.values) for message in sent_values) == 300  # type: ignore[union-attr]
    assert max(len(encode_frame([message])) for message in sent_values) < 2 * 32_768
