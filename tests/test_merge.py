"""Merge semantics between two replicas, in every delivery order (docs/semantics.md).

Each case starts from a shared state, lets replicas A and B operate concurrently,
then delivers each one's changes to the other in every order; both must end with
identical keys, generations, exact values, directories and state vectors.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from pydds.crdt.sync import decode_state_vector
from pydds.crdt.ydoc import YDoc

from .helpers import Replica, exact, orders, settle

Op = Callable[[Replica], Awaitable[Any]]


async def concurrently(setup: Op | None, op_a: Op, op_b: Op) -> list[tuple[Replica, Replica]]:
    """Run the case for every pair of delivery orders; return the final replica pairs."""
    finals = []
    probe_a, probe_b = await start(setup)
    await op_a(probe_a)
    await op_b(probe_b)
    count_a, count_b = len(probe_a.outbox), len(probe_b.outbox)
    for order_a, order_b in itertools.product(
        itertools.permutations(range(count_a)), itertools.permutations(range(count_b))
    ):
        a, b = await start(setup)
        await op_a(a)
        await op_b(b)
        from_a, from_b = a.take(), b.take()
        b.receive([from_a[i] for i in order_a])
        a.receive([from_b[i] for i in order_b])
        settle(a, b)  # repairs made while applying, if any
        assert_converged(a, b)
        finals.append((a, b))
    return finals


async def start(setup: Op | None) -> tuple[Replica, Replica]:
    a, b = Replica("a", 101), Replica("b", 202)
    if setup is not None:
        await setup(a)
        settle(a, b)
    return a, b


def assert_converged(a: Replica, b: Replica) -> None:
    assert a.state() == b.state()
    assert a.directory() == b.directory()
    ks_a, ks_b = a.db()._keyspace, b.db()._keyspace
    assert ks_a.directory.entries() == ks_b.directory.entries()
    for key in ks_a.keys():  # noqa: SIM118
        assert sv(ks_a._keys[key].doc(a.node.client_id)) == sv(
            ks_b._keys[key].doc(b.node.client_id)
        )


def sv(doc: YDoc) -> dict[int, int]:
    return decode_state_vector(doc.state_vector())


def value(r: Replica, key: str) -> Any:
    return exact(r.db()._keyspace.read(key)) if key in r.db() else "absent"


async def test_concurrent_set_converges_on_one_winner() -> None:
    async def setup(r: Replica) -> None:
        await r.db().set("k", "old")

    finals = await concurrently(
        setup,
        lambda a: a.db().set("k", {"from": "a"}),
        lambda b: b.db().set("k", [1, "from b"]),
    )
    winners = {value(a, "k") for a, _ in finals}
    assert len(winners) == 1  # the same winner whatever the delivery order
    assert winners <= {exact({"from": "a"}), exact([1, "from b"])}


async def test_concurrent_creation_of_an_absent_key_shares_one_generation() -> None:
    finals = await concurrently(None, lambda a: a.db().set("k", 1), lambda b: b.db().set("k", 2.0))
    for a, _ in finals:
        assert a.db()._keyspace._keys["k"].gen == 1
        assert value(a, "k") in {exact(1), exact(2.0)}


async def test_concurrent_updates_of_different_fields_both_survive() -> None:
    async def setup(r: Replica) -> None:
        await r.db().set("u", {"name": "Ada"})

    finals = await concurrently(
        setup,
        lambda a: a.db().update("u", {"age": 36}),
        lambda b: b.db().update("u", {"langs": ["en"]}),
    )
    for a, _ in finals:
        assert value(a, "u") == exact({"name": "Ada", "age": 36, "langs": ["en"]})


async def test_concurrent_updates_of_absent_keys_merge_too() -> None:
    finals = await concurrently(
        None, lambda a: a.db().update("u", {"x": 1}), lambda b: b.db().update("u", {"y": 2})
    )
    for a, _ in finals:
        assert value(a, "u") == exact({"x": 1, "y": 2})


async def test_concurrent_appends_keep_both_items_in_one_order() -> None:
    async def setup(r: Replica) -> None:
        await r.db().set("l", {"items": [0]})

    async def two_from_a(a: Replica) -> None:
        await a.db().append("l", ["items"], "a1")
        await a.db().append("l", ["items"], "a2")

    finals = await concurrently(setup, two_from_a, lambda b: b.db().append("l", ["items"], "b1"))
    results = {value(a, "l") for a, _ in finals}
    assert len(results) == 1
    items = next(iter(finals))[0].db()._keyspace.read("l")["items"]
    assert sorted(items[1:]) == ["a1", "a2", "b1"]
    assert items.index("a1") < items.index("a2")  # each replica's own order is kept


async def test_concurrent_increments_add_up() -> None:
    async def setup(r: Replica) -> None:
        await r.db().incr("c", 10)

    async def a_ops(a: Replica) -> None:
        await a.db().incr("c", 5)
        await a.db().incr("c", -2)

    finals = await concurrently(setup, a_ops, lambda b: b.db().incr("c", 100))
    for a, b in finals:
        assert a.db()._keyspace.read("c") == 113
        assert b.db()._keyspace.read("c") == 113


async def test_concurrent_increments_of_an_absent_key_add_up() -> None:
    finals = await concurrently(None, lambda a: a.db().incr("c", 3), lambda b: b.db().incr("c", 4))
    for a, _ in finals:
        assert a.db()._keyspace.read("c") == 7


async def test_delete_wins_over_a_concurrent_set() -> None:
    async def setup(r: Replica) -> None:
        await r.db().set("k", "old")

    finals = await concurrently(
        setup, lambda a: a.db().delete("k"), lambda b: b.db().set("k", "new")
    )
    for a, b in finals:
        assert "k" not in a.db()
        assert "k" not in b.db()


async def test_delete_wins_over_concurrent_edits() -> None:
    async def setup(r: Replica) -> None:
        await r.db().set("k", {"a": [1]})

    async def edits(b: Replica) -> None:
        await b.db().update("k", {"b": 2})
        await b.db().append("k", ["a"], 2)

    finals = await concurrently(setup, lambda a: a.db().delete("k"), edits)
    for a, _ in finals:
        assert "k" not in a.db()


async def test_a_set_after_delete_wins_over_a_write_to_the_deleted_value() -> None:
    async def setup(r: Replica) -> None:
        await r.db().set("k", "old")

    async def delete_then_set(a: Replica) -> None:
        await a.db().delete("k")
        await a.db().set("k", "recreated")

    finals = await concurrently(setup, delete_then_set, lambda b: b.db().set("k", "stale write"))
    for a, _ in finals:
        assert value(a, "k") == exact("recreated")
        assert a.db()._keyspace._keys["k"].gen == 2


async def test_the_newest_generation_wins_over_a_lagging_creation() -> None:
    # A creates, deletes and creates "k" again (generation 2) while B, which has seen
    # none of it, creates "k" itself (generation 1). Whatever Yjs picks for the entry,
    # repairs bring every replica to generation 2.
    async def churn(a: Replica) -> None:
        await a.db().set("k", "g1")
        await a.db().delete("k")
        await a.db().set("k", "g2")

    finals = await concurrently(None, churn, lambda b: b.db().set("k", "lagging"))
    for a, _ in finals:
        assert a.db()._keyspace._keys["k"].gen == 2
        assert value(a, "k") == exact("g2")


@pytest.mark.parametrize("seed", range(3))
async def test_a_stream_applied_in_any_order_ends_in_the_same_state(seed: int) -> None:
    # Out-of-order delivery within one replica's stream: value deltas that arrive
    # before their directory entry wait for it; Yrs holds structs until their
    # dependencies arrive.
    source = Replica("a")
    db = source.db()
    await db.set("k", {"n": seed})
    await db.update("k", {"m": [1]})
    await db.delete("k")
    await db.append("k", [], "again")
    changes = source.take()
    for order in orders(changes):
        sink = Replica("b")
        sink.receive(order)
        assert sink.state() == source.state()
        assert sink.directory() == source.directory()


async def test_duplicate_delivery_changes_nothing_and_makes_no_events() -> None:
    a, b = Replica("a"), Replica("b")
    await a.db().set("k", {"x": 1})
    await a.db().update("k", {"y": 2})
    changes = a.take()
    b.receive(changes)
    sub = b.node.events()
    b.receive(changes)
    assert len(sub) == 0
    assert b.state() == a.state()


async def test_remote_changes_make_one_event_each_with_the_origin() -> None:
    a, b = Replica("a"), Replica("b")
    sub = b.node.events()
    await a.db().set("k", 1)
    await a.db().set("k", 2)
    await a.db().delete("k")
    b.receive(a.take())
    events = [sub._next_ready() for _ in range(len(sub))]
    assert [(e.kind, e.key, e.origin) for e in events if e] == [
        ("created", "k", "a"),
        ("changed", "k", "a"),
        ("deleted", "k", "a"),
    ]
