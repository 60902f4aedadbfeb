"""Anti-entropy of held values by digests (``net/digests.py``): an idle link sends a
digest per database and nothing else; what differs is found by bucket and repaired."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

import pydds
from pydds.crdt import values
from pydds.crdt.keydoc import KeyDoc
from pydds.crdt.sync import value_hash
from pydds.crdt.ydoc import EMPTY_STATE_VECTOR
from pydds.errors import MalformedFrame, ProtocolError
from pydds.net import digests
from pydds.net import messages as m
from pydds.net.codec import decode_frame, encode_frame
from pydds.net.replication import HoldingDue, Replication

from ..helpers import sent

DB = "db"
VALUES = 300  # over digests.MIN_DIGESTED: periodic exchanges use digests


class Replica:
    def __init__(self, name: str, client_id: int) -> None:
        self.name = name
        self.node = pydds.Node(name)
        self.node.client_id = client_id
        self.replication = Replication(
            name, lambda db: self.node.database(db)._keyspace, self.node.databases
        )
        self.outbox: list[tuple[str, m.Message]] = []
        self.node.add_change_listener(lambda change: self.post(self.replication.changed(change)))
        self.db = self.node.database(DB)

    def post(self, sends: list[tuple[str, Any]]) -> None:
        self.outbox.extend(sent(sends))


class Pair:
    """Two replicas linked both ways; ``run`` delivers until nothing is in flight."""

    def __init__(self) -> None:
        self.a, self.b = Replica("a", 11), Replica("b", 22)
        self.by_name = {"a": self.a, "b": self.b}
        self.delivered: Counter[str] = Counter()
        self.listed = 0  # values listed by HoldingBuckets answers
        self.a.post(self.a.replication.opened("b"))
        self.b.post(self.b.replication.opened("a"))

    def run(self, drop: type | None = None) -> None:
        for _ in range(10_000):
            moved = False
            for source in (self.a, self.b):
                out, source.outbox = source.outbox, []
                for target_name, message in out:
                    moved = True
                    if drop is not None and isinstance(message, drop):
                        continue
                    self.delivered[type(message).__name__] += 1
                    if isinstance(message, m.HoldingBuckets):
                        self.listed += len(message.values)
                    target = self.by_name[target_name]
                    sends, notices = target.replication.handle(source.name, message)
                    target.post(list(sends))
                    for notice in notices:
                        if isinstance(notice, HoldingDue):
                            target.post(target.replication.holding(notice.peer, notice.database))
            if not moved:
                return
        raise AssertionError("messages kept flowing")

    def resync(self, coarse: bool = False) -> None:
        self.delivered.clear()
        self.listed = 0
        self.a.post(self.a.replication.resync("b", coarse=coarse))
        self.b.post(self.b.replication.resync("a", coarse=coarse))
        self.run()


async def synced_pair() -> Pair:
    pair = Pair()
    for i in range(VALUES):
        await pair.a.db.set(f"k{i}", {"n": i})
    pair.run()
    for i in range(VALUES):  # b pulls every value: both hold all of them
        _, sends = pair.b.replication.pull(DB, f"k{i}")
        pair.b.post(sends)
    pair.run()
    pair.resync()  # the first exchange after the pulls
    return pair


async def test_an_idle_link_exchanges_one_digest_per_database_and_nothing_else() -> None:
    pair = await synced_pair()
    pair.resync()
    assert pair.delivered["HoldingDigest"] == 2  # one each way
    assert pair.delivered["Holding"] == 0
    assert pair.delivered["HoldingAsk"] == 0
    assert pair.delivered["ValueDiff"] == 0


async def test_a_period_sends_one_directory_digest_and_buckets_only_on_a_mismatch() -> None:
    pair = await synced_pair()
    pair.resync(coarse=True)
    assert pair.delivered["DirectoryStep1"] == 2  # one each way, of one digest
    assert pair.delivered["DirectoryStep2"] == 0
    await pair.a.db.set("new", 1)
    pair.run(drop=m.Write)  # b never learned of the key
    assert "new" not in pair.b.db
    pair.resync(coarse=True)
    assert "new" in pair.b.db
    # Each whole digest differed: each end asked for the other's buckets, and one
    # bucket's entries came back.
    assert pair.delivered["DirectoryStep1"] == 4
    assert pair.delivered["DirectoryStep2"] >= 1
    pair.resync(coarse=True)
    assert pair.delivered["DirectoryStep1"] == 2


async def test_a_lost_delta_is_repaired_through_the_bucket_it_is_in() -> None:
    pair = await synced_pair()
    await pair.a.db.update("k7", {"late": True})
    pair.run(drop=m.Write)  # b never got it
    assert await pair.b.db.get("k7") == {"n": 7}
    pair.resync()
    assert await pair.b.db.get("k7") == {"late": True, "n": 7}
    assert pair.delivered["HoldingAsk"] >= 1
    assert 0 < pair.listed <= 4 * digests.PER_BUCKET  # one bucket's values, not all 300
    pair.resync()
    assert pair.delivered["HoldingAsk"] == 0  # nothing differs any more


async def test_the_side_that_lacks_a_change_pulls_it() -> None:
    pair = await synced_pair()
    await pair.b.db.update("k9", {"from_b": 1})
    pair.run(drop=m.Write)
    pair.delivered.clear()
    pair.a.post(pair.a.replication.resync("b"))  # b answers with its digest, a asks
    pair.run()
    assert pair.delivered["ValuePull"] == 1  # a found itself behind: it pulled
    assert await pair.a.db.get("k9") == {"from_b": 1, "n": 9}


async def test_a_holder_table_out_of_date_is_put_right() -> None:
    pair = await synced_pair()
    await pair.b.db.set("only-b", 1)
    pair.run()
    assert not pair.a.db._keyspace.holds("only-b")
    pair.b.replication.holders.add((DB, "only-b", 1), "a")  # wrong: a does not hold it
    pair.resync()
    assert "a" not in pair.b.replication.holders[(DB, "only-b", 1)]
    pair.resync()
    assert pair.delivered["HoldingAsk"] == 0


def test_bucket_counts_are_powers_of_two_within_bounds() -> None:
    assert digests.bucket_count(0) == digests.MIN_BUCKETS
    assert digests.bucket_count(100_000) == 4096
    assert digests.bucket_count(10**9) == digests.MAX_BUCKETS
    assert digests.bucket("k", 1) == 0


def test_value_hashes_do_not_depend_on_the_order_of_writers_in_a_state_vector() -> None:
    one = bytes([2, 1, 5, 2, 7])  # writers 1 and 2, in either order
    other = bytes([2, 2, 7, 1, 5])
    assert value_hash("k", 1, one) == value_hash("k", 1, other)
    assert value_hash("k", 1, one) != value_hash("k", 2, one)
    assert value_hash("k", 1, one) != value_hash("k", 1, bytes([2, 1, 6, 2, 7]))


def test_a_writer_at_clock_0_changes_no_hash() -> None:
    """Yrs lists a writer it knows only from an update still waiting, at clock 0: two
    replicas holding the same operations must hash alike all the same."""
    assert value_hash("k", 1, bytes([1, 5, 0])) == value_hash("k", 1, bytes([0]))
    assert value_hash("k", 1, bytes([2, 1, 5, 5, 0])) == value_hash("k", 1, bytes([1, 1, 5]))


def test_a_cached_value_hash_follows_every_change() -> None:
    kd = KeyDoc(1)
    for change in (
        lambda: kd.set(1, {"a": 1}, values.pack({"a": 1}, 1 << 20)),
        lambda: kd.update(1, {"b": 2}, 1 << 20),
        lambda: kd.set(1, [1], values.pack([1], 1 << 20)),
        lambda: kd.append(1, [], 2, 1 << 20),
        lambda: kd.set(1, 5, values.pack(5, 1 << 20)),
        lambda: kd.incr(1, 1),
    ):
        change()
        assert kd.value_hash(1, "k") == value_hash("k", 1, kd.state_vector(1))
    other = KeyDoc(1)
    other.apply(2, kd.diff(2, EMPTY_STATE_VECTOR))
    assert other.value_hash(2, "k") == kd.value_hash(1, "k")
    kd.apply(1, KeyDoc(1).set(3, "x", values.pack("x", 1 << 20)) or b"")
    assert kd.value_hash(1, "k") == value_hash("k", 1, kd.state_vector(1))


@pytest.mark.parametrize(
    "message",
    [
        m.HoldingDigest(DB, 16, b"\x00" * 15),
        m.HoldingAsk(DB, 16, (16,)),
        m.HoldingBuckets(DB, 16, (0,), (("k-not-in-0", 1, b"\x00"),)),
    ],
)
def test_inconsistent_digest_messages_are_refused_and_change_nothing(message: m.Message) -> None:
    r = Replica("a", 11)
    r.replication.opened("b")
    if isinstance(message, m.HoldingBuckets):
        key = message.values[0][0]
        assert digests.bucket(key, 16) != 0  # so that it is out of the bucket listed
    before = r.node.databases()
    with pytest.raises(ProtocolError):
        r.replication.handle("b", message)
    assert r.node.databases() == before


@pytest.mark.parametrize("buckets", [0, 3, 1 << 17])
def test_the_codec_refuses_bucket_counts_that_are_not_powers_of_two(buckets: int) -> None:
    frame = encode_frame([m.HoldingDigest(DB, buckets, b"")])
    with pytest.raises(MalformedFrame):
        decode_frame(frame)


def test_digest_messages_round_trip_the_codec() -> None:
    messages: list[m.Message] = [
        m.HoldingDigest(DB, 16, b"\x01" * 128),
        m.HoldingAsk(DB, 16, (0, 15)),
        m.HoldingBuckets(DB, 16, (3,), (("k", 1, b"\x00"),)),
    ]
    assert decode_frame(encode_frame(messages)) == messages
