"""The directory: a map of per-key registers of the greatest entry (crdt/directory.py)."""

from __future__ import annotations

import math

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map

from pydds.crdt.directory import (
    CHUNK,
    Directory,
    Entry,
    decode_update,
    encode_update,
    merge_updates,
    read_stored,
)
from pydds.errors import InvalidUpdate

entries = st.builds(
    Entry,
    st.integers(1, 4),
    st.booleans(),
    st.integers(0, 3),
    st.sampled_from([math.inf, 10.0, 20.0]),
)
updates = st.lists(
    st.dictionaries(st.sampled_from(["a", "b", "c", "é/ü"]), entries, max_size=4),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(updates, st.randoms())
def test_replicas_merging_the_same_updates_in_any_order_agree(
    made: list[dict[str, Entry]], rng: object
) -> None:
    encoded = [encode_update(update.items()) for update in made]
    one, other = Directory(), Directory()
    for update in encoded:
        one.apply(update)
    shuffled = encoded * 2  # any order, any number of times
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    for update in shuffled:
        other.apply(update)
    assert one.entries() == other.entries()
    for key, entry in one.entries().items():  # the greatest entry of each key wins
        assert entry == max(update[key] for update in made if key in update)
    buckets = one.bucket_count()
    assert one.digests(buckets) == other.digests(buckets)


def test_apply_reports_what_changed_and_an_older_entry_changes_nothing() -> None:
    d = Directory()
    d.put("k", Entry(2))
    delta, changed = d.apply(encode_update([("k", Entry(1, True, 0, 5.0)), ("j", Entry(1))]))
    assert [(c.key, c.old, c.new) for c in changed] == [("j", None, Entry(1))]
    assert delta is not None
    assert decode_update(delta) == {"j": Entry(1)}
    assert d.apply(encode_update([("k", Entry(2))])) == (None, [])


@pytest.mark.parametrize(
    "update",
    [
        b"",
        b"\x01\x02garbage",
        msgpack.packb([["k", [1, False]]]),  # not a map
        msgpack.packb({"": [1, False]}),  # an empty key
        msgpack.packb({"k": [0, False]}),  # generation 0
        msgpack.packb({"k": [1, "no"]}),
        msgpack.packb({"k": [1, False, -1, None]}),
        msgpack.packb({"k": [1, False, 0, float("nan")]}),
        msgpack.packb({"k": [1, False, 0]}),
        msgpack.packb({1: [1, False]}),
        msgpack.packb({"good": [1, False], "bad": "entry"}),  # one bad refuses all
    ],
)
def test_malformed_updates_are_refused_whole(update: bytes) -> None:
    d = Directory()
    d.put("there", Entry(1))
    with pytest.raises(InvalidUpdate):
        d.apply(update)
    assert d.entries() == {"there": Entry(1)}


def test_digests_find_the_buckets_that_differ_and_chunks_carry_them() -> None:
    one, other = Directory(), Directory()
    for i in range(2000):
        one.put(f"key:{i}", Entry(1))
        other.put(f"key:{i}", Entry(1))
    other.put("key:7", Entry(1, True, 0, 3.0))  # one entry differs
    other.put("new", Entry(1))  # one more
    buckets = one.bucket_count()
    assert buckets == 64  # 2,000 entries, 32 a bucket
    wanted = one.differing(buckets, other.digests(buckets))
    assert 1 <= len(wanted) <= 2
    sent = list(other.chunks(buckets, wanted))
    assert sent[-1][1] == wanted  # the last update completes every bucket asked for
    for update, _ in sent:
        one.apply(update)
    assert one.entries() == other.entries()
    assert one.differing(buckets, other.digests(buckets)) == []
    # A coarser or finer bucket count compares just as well.
    assert one.digests(16) == other.digests(16)
    assert one.digests(4096) == other.digests(4096)


def test_a_whole_directory_goes_in_chunks() -> None:
    d = Directory()
    for i in range(CHUNK * 2 + 5):
        d.put(f"k{i}", Entry(1))
    everything = list(range(d.bucket_count()))
    sent = list(d.chunks(d.bucket_count(), everything))
    assert [len(decode_update(update)) for update, _ in sent] == [CHUNK, CHUNK, 5]
    assert [complete for _, complete in sent] == [[], [], everything]


def test_digests_follow_changes_without_a_walk() -> None:
    d = Directory()
    for i in range(100):
        d.put(f"k{i}", Entry(1))
    before = d.digests(16)
    d.put("k5", Entry(1, True, 0, 9.0))
    fresh = Directory(encode_update(d.entries().items()))
    assert d.digests(16) == fresh.digests(16) != before
    d.forget("k5")
    fresh.forget("k5")
    assert d.digests(16) == fresh.digests(16)


@pytest.mark.parametrize("buckets", [0, 3, 1 << 17])
def test_a_digest_of_a_bad_bucket_count_is_refused(buckets: int) -> None:
    with pytest.raises(InvalidUpdate, match="power of two"):
        Directory().differing(buckets, bytes(8 * max(buckets, 1)))


def test_a_digest_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(InvalidUpdate, match="bytes of digest"):
        Directory().differing(16, bytes(9))


def test_tombstones_older_than_the_horizon_are_pruned() -> None:
    d = Directory()
    d.put("deleted-early", Entry(1, True, 0, 100.0))
    d.put("deleted-late", Entry(1, True, 0, 500.0))
    d.put("expired", Entry(1, False, 1, 150.0))
    d.put("timed", Entry(1, False, 1, 900.0))
    d.put("live", Entry(3))
    assert not d.prunable(100.0)
    assert d.prune(100.0) == []
    assert sorted(d.prune(200.0)) == ["deleted-early", "expired"]
    assert sorted(d.entries()) == ["deleted-late", "live", "timed"]
    assert d.prune(200.0) == []  # nothing older is left: no walk
    assert not d.prunable(200.0)
    assert d.tombstones == 2


def test_merging_stored_updates_prunes_and_reads_the_earlier_yjs_format() -> None:
    doc = Doc()
    keys: Map[bytes] = doc.get("keys", type=Map)
    keys["old"] = msgpack.packb([2, False])
    keys["gone"] = msgpack.packb([1, True])  # a delete of before: no time
    legacy = doc.get_update()
    assert read_stored(legacy) == {"old": Entry(2), "gone": Entry(1, True, 0, 0.0)}
    newer = encode_update([("old", Entry(3)), ("recent", Entry(1, True, 0, 50.0))])
    merged = decode_update(merge_updates([legacy, newer], prune_before=10.0))
    assert merged == {"old": Entry(3), "recent": Entry(1, True, 0, 50.0)}
    with pytest.raises(InvalidUpdate):
        read_stored(b"\x01\x02garbage")


def test_chunks_of_keys_that_are_not_ascii_keep_to_their_bytes() -> None:
    d = Directory()
    for i in range(2000):
        d.put(f"ключ-🔑-{i:04d}" + "ж" * 40, Entry(1))  # about 100 bytes, 50 characters
    everything = list(range(d.bucket_count()))
    sent = list(d.chunks(d.bucket_count(), everything, max_bytes=20_000))
    assert sum(len(decode_update(update)) for update, _ in sent) == 2000
    assert max(len(update) for update, _ in sent) <= 20_000  # 36,053 when counting characters
