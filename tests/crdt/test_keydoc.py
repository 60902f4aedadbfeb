"""Packed whole values and their overlay (``crdt/keydoc.py``'s theory of operation)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pydds.crdt import values
from pydds.crdt.keydoc import LOCAL, MISSING, KeyDoc
from pydds.crdt.ydoc import EMPTY_STATE_VECTOR, YDoc
from pydds.errors import InvalidValue, PathNotFound, WrongType

A, B = 101, 202
MAX = 1 << 20


def set_(kd: KeyDoc, cid: int, value: Any) -> bytes | None:
    return kd.set(cid, value, values.pack(value, MAX))


def fresh_read(kd: KeyDoc, cid: int) -> Any:
    """The value decoded from the document, not from the packed cache."""
    kd.packed = None
    return kd.read(cid)


def replicas(value: Any) -> tuple[KeyDoc, KeyDoc]:
    a, b = KeyDoc(1), KeyDoc(1)
    delta = set_(a, A, value)
    assert delta is not None
    b.apply(B, delta)
    return a, b


def exchange(a: KeyDoc, b: KeyDoc, from_a: list[bytes | None], from_b: list[bytes | None]) -> None:
    for d in from_a:
        if d is not None:
            b.apply(B, d)
    for d in from_b:
        if d is not None:
            a.apply(A, d)


def test_a_key_set_many_times_by_one_writer_encodes_as_if_set_once() -> None:
    once, many = KeyDoc(1), KeyDoc(1)
    set_(once, A, {"a": 1, "b": "x", "c": [1, 2], "d": None, "e": 2.5})
    receiver = KeyDoc(1)
    for i in range(5000):
        delta = set_(many, A, {"a": i, "b": "x", "c": [1, 2], "d": None, "e": 2.5})
        assert delta is not None
        receiver.apply(B, delta)
    size_once = len(once.diff(A, EMPTY_STATE_VECTOR))
    assert len(many.diff(A, EMPTY_STATE_VECTOR)) <= size_once + 16
    assert len(receiver.diff(B, EMPTY_STATE_VECTOR)) <= size_once + 16
    assert fresh_read(receiver, B) == {"a": 4999, "b": "x", "c": [1, 2], "d": None, "e": 2.5}


def test_writers_taking_turns_at_setting_a_key_encode_as_one_set() -> None:
    once = KeyDoc(1)
    set_(once, A, {"n": 0, "s": "x" * 20})
    a, b = KeyDoc(1), KeyDoc(1)
    for i in range(3000):  # a, b, a, b...: each sees the other's set first
        writer, cid, other, other_cid = (a, A, b, B) if i % 2 == 0 else (b, B, a, A)
        delta = set_(writer, cid, {"n": i, "s": "x" * 20})
        assert delta is not None
        other.apply(other_cid, delta)
    size_once = len(once.diff(A, EMPTY_STATE_VECTOR))
    assert len(a.diff(A, EMPTY_STATE_VECTOR)) <= size_once + 40  # a tombstone of b's
    assert fresh_read(a, A) == fresh_read(b, B) == {"n": 2999, "s": "x" * 20}


def test_a_set_wins_over_every_set_it_has_seen_and_concurrent_ones_by_writer_id() -> None:
    a, b = replicas("first")  # a set it; b saw it
    db = set_(b, B, "second")  # b has seen a's set: it wins over it, whatever the ids
    assert db is not None
    a.apply(A, db)
    assert fresh_read(a, A) == fresh_read(b, B) == "second"
    da = set_(a, A, "a-concurrent")
    db = set_(b, B, "b-concurrent")  # neither saw the other's: the greater id wins
    exchange(a, b, [da], [db])
    assert fresh_read(a, A) == fresh_read(b, B) == "b-concurrent"


def test_a_set_wins_over_a_concurrent_first_edit_of_an_absent_value() -> None:
    a, b = KeyDoc(1), KeyDoc(1)
    da = set_(a, A, {"set": 1})
    db = b.update(B, {"edited": 1}, MAX)
    exchange(a, b, [da], [db])
    assert fresh_read(a, A) == fresh_read(b, B) == {"set": 1}


@pytest.mark.parametrize("start", ["set", "update"])
def test_a_field_updated_with_a_dict_many_times_encodes_as_if_updated_once(start: str) -> None:
    once, many = KeyDoc(1), KeyDoc(1)
    for kd, times in ((once, 1), (many, 5000)):
        if start == "set":
            set_(kd, A, {"other": 1})
        for i in range(times):
            kd.update(A, {"profile": {"n": i, "name": "x", "tags": ["a"], "ok": True}}, MAX)
    assert len(many.diff(A, EMPTY_STATE_VECTOR)) <= len(once.diff(A, EMPTY_STATE_VECTOR)) + 16
    assert fresh_read(many, A)["profile"] == {"n": 4999, "name": "x", "ok": True, "tags": ["a"]}


def test_appends_into_a_list_an_update_wrote_merge_and_go_with_it() -> None:
    a, b = replicas({"name": "Ada"})
    delta = a.update(A, {"langs": ["en"]}, MAX)
    assert delta is not None
    b.apply(B, delta)
    da = a.append(A, ["langs"], "fr", MAX)
    db = b.append(B, ["langs"], "de", MAX)
    exchange(a, b, [da], [db])
    langs = fresh_read(a, A)["langs"]
    assert langs == fresh_read(b, B)["langs"]
    assert langs[0] == "en"
    assert sorted(langs[1:]) == ["de", "fr"]
    a.update(A, {"langs": ["it"]}, MAX)  # replaces the list and what was appended to it
    assert fresh_read(a, A) == {"langs": ["it"], "name": "Ada"}


def test_an_incr_that_starts_a_counter_counts_shares_that_arrived_before_it() -> None:
    """c's increment of a counter a started reaches b before a's start: b's own first
    incr then starts the counter with c's share in it, and says the total it has."""
    a, b, c = KeyDoc(1), KeyDoc(1), KeyDoc(1)
    start, _ = a.incr(A, 2)
    assert start is not None
    c.apply(33, start)
    share, total = c.incr(33, -3)
    assert total == -1
    assert share is not None
    b.apply(B, share)  # a's start is not here yet
    mine, total = b.incr(B, -1)
    assert total == b.read(B) == fresh_read(b, B) == -4
    assert mine is not None
    b.apply(B, start)
    for other in (a, c):
        other.apply(A, mine)
    a.apply(A, share)
    assert fresh_read(a, A) == fresh_read(b, B) == fresh_read(c, 33) == -2


def test_a_set_leaves_the_overlay_of_a_value_it_has_not_seen() -> None:
    """b's append reaches a before b's set (they are independent Yjs items); a's set,
    concurrent with b's, must not clear b's overlay: b's set wins (the greater id at
    an equal clock), and with it what was appended to it."""
    a, b = KeyDoc(1), KeyDoc(1)
    b_set = set_(b, B, [0])
    b_append = b.append(B, [], 1, MAX)
    assert b_set is not None
    assert b_append is not None
    a.apply(A, b_append)  # before b's set
    a_set = set_(a, A, "x")
    exchange(a, b, [a_set], [b_set])
    assert fresh_read(a, A) == fresh_read(b, B) == [0, 1]
    assert a.read(A) == b.read(B) == [0, 1]


def test_update_of_a_set_value_lays_its_fields_over_it() -> None:
    kd = KeyDoc(1)
    set_(kd, A, {"name": "Ada", "langs": ["en"]})
    kd.update(A, {"age": 36, "name": "Ada L."}, MAX)
    expected = {"age": 36, "langs": ["en"], "name": "Ada L."}
    assert kd.read(A) == expected
    assert list(fresh_read(kd, A)) == ["age", "langs", "name"]  # fields sorted
    assert fresh_read(kd, A) == expected


def test_a_set_clears_the_overlay_of_the_value_it_replaces() -> None:
    kd = KeyDoc(1)
    set_(kd, A, {"items": [1]})
    kd.update(A, {"x": 1}, MAX)
    kd.append(A, ["items"], 2, MAX)
    set_(kd, A, {"items": [9]})
    assert fresh_read(kd, A) == {"items": [9]}
    kd.append(A, ["items"], 10, MAX)
    assert fresh_read(kd, A) == {"items": [9, 10]}
    loaded = KeyDoc(1, kd.diff(A, EMPTY_STATE_VECTOR))  # a restart reads the same
    assert loaded.read(B) == {"items": [9, 10]}


def test_concurrent_updates_of_a_set_value_merge() -> None:
    a, b = replicas({"name": "Ada"})
    da = a.update(A, {"age": 36}, MAX)
    db = b.update(B, {"langs": ["en"]}, MAX)
    exchange(a, b, [da], [db])
    expected = {"age": 36, "langs": ["en"], "name": "Ada"}
    assert fresh_read(a, A) == fresh_read(b, B) == expected


def test_concurrent_appends_to_a_packed_list_keep_both() -> None:
    a, b = replicas({"items": [0], "more": [[1]]})
    da = [a.append(A, ["items"], "a1", MAX), a.append(A, ["more", 0], "a2", MAX)]
    db = [b.append(B, ["items"], "b1", MAX), b.append(B, ["more", -1], "b2", MAX)]
    exchange(a, b, da, db)
    va, vb = fresh_read(a, A), fresh_read(b, B)
    assert va == vb
    assert va["items"][0] == 0
    assert sorted(va["items"][1:]) == ["a1", "b1"]
    assert va["more"][0][0] == 1
    assert sorted(va["more"][0][1:]) == ["a2", "b2"]


def test_appends_go_on_inside_appended_items_and_overlay_fields() -> None:
    kd = KeyDoc(1)
    set_(kd, A, [[0]])
    kd.append(A, [], [1], MAX)  # item 1: appended, live
    kd.append(A, [1], 2, MAX)  # inside the appended item
    kd.append(A, [-2], 3, MAX)  # inside the packed item 0, by a negative index
    assert fresh_read(kd, A) == [[0, 3], [1, 2]]
    set_(kd, A, {"l": [1]})
    kd.update(A, {"m": [5]}, MAX)
    kd.append(A, ["m"], 6, MAX)  # an overlay field: a live array
    assert fresh_read(kd, A) == {"l": [1], "m": [5, 6]}


def test_an_update_replacing_a_field_drops_the_items_appended_to_it() -> None:
    kd = KeyDoc(1)
    set_(kd, A, {"l": [1]})
    kd.append(A, ["l"], 2, MAX)
    kd.update(A, {"l": ["new"]}, MAX)
    assert kd.read(A) == fresh_read(kd, A) == {"l": ["new"]}


def test_a_set_wins_over_a_concurrent_update_of_the_value_it_replaces() -> None:
    a, b = replicas({"x": 1})
    da = set_(a, A, {"y": 2})
    db = b.update(B, {"z": 3}, MAX)
    exchange(a, b, [da], [db])
    assert fresh_read(a, A) == fresh_read(b, B) == {"y": 2}


@pytest.mark.parametrize(
    ("value", "edit", "error"),
    [
        ([1], lambda kd: kd.update(A, {"x": 1}, MAX), WrongType),
        ({"x": 1}, lambda kd: kd.append(A, [], 2, MAX), WrongType),
        ({"x": 1}, lambda kd: kd.append(A, ["x"], 2, MAX), WrongType),
        ({"x": [1]}, lambda kd: kd.append(A, ["y"], 2, MAX), PathNotFound),
        ({"x": [1]}, lambda kd: kd.append(A, ["x", 3], 2, MAX), PathNotFound),
        ([1], lambda kd: kd.append(A, ["x"], 2, MAX), PathNotFound),
        ({"x": 1}, lambda kd: kd.incr(A, 1), WrongType),
    ],
)
def test_wrong_edits_of_a_packed_value_are_refused_and_change_nothing(
    value: Any, edit: Any, error: type[Exception]
) -> None:
    kd = KeyDoc(1)
    set_(kd, A, value)
    before = kd.diff(A, EMPTY_STATE_VECTOR)
    with pytest.raises(error):
        edit(kd)
    assert kd.diff(A, EMPTY_STATE_VECTOR) == before
    assert fresh_read(kd, A) == value


def test_containers_appended_to_a_packed_list_are_counted_and_a_refusal_changes_nothing() -> None:
    a, b = replicas({"l": [{}] * values.MAX_LIST_CONTAINERS})
    before = a.state_vector(A)
    with pytest.raises(InvalidValue):
        a.append(A, ["l"], {}, MAX)
    assert a.state_vector(A) == before  # nothing written that no delta carries
    delta = a.append(A, ["l"], 1, MAX)  # scalars are not counted
    assert delta is not None
    b.apply(B, delta)  # applies at once: no operation of a's is missing before it
    assert fresh_read(a, A)["l"][-1] == fresh_read(b, B)["l"][-1] == 1


def foreign(entries: dict[str, bytes], registered: tuple[str, ...] = ()) -> bytes:
    """An update from some other program, writing raw entries of a value document."""
    doc = YDoc(999, "value")
    txn = doc.begin(LOCAL)
    try:
        for name, raw in entries.items():
            doc.root.insert(txn, name, raw)
        for name in registered:
            doc.root_map(txn, "m").insert(txn, name, True)
    finally:
        delta = doc.end(txn)
    assert delta is not None
    return delta


GOOD = b"P" + (5).to_bytes(8, "big") + b"n" * 8 + values.pack({"l": [1]}, MAX)


@pytest.mark.parametrize(
    ("entries", "registered", "reads"),
    [
        ({"w\u00b2": GOOD}, (), MISSING),  # not a client id: not a writer's entry
        ({"w7": GOOD[:1] + b"\xff" * 8 + GOOD[9:]}, (), {"l": [1]}),  # the greatest clock
        ({"w7": GOOD[:17] + b"\xc1"}, (), None),  # no msgpack: the nearest JSON value
        ({"w7": GOOD}, ("zz", "6e6e6e6e6e6e6e6e" + "91cd0100"), {"l": [1]}),  # bad paths
    ],
)
def test_entries_pydds_never_writes_read_as_absent_and_a_set_still_wins(
    entries: dict[str, bytes], registered: tuple[str, ...], reads: Any
) -> None:
    kd = KeyDoc(1)
    kd.apply(A, foreign(entries, registered))
    assert fresh_read(kd, A) == reads if reads is not MISSING else kd.read(A) is MISSING
    set_(kd, A, {"mine": True})
    assert fresh_read(kd, A) == {"mine": True}
    kd.update(A, {"more": 1}, MAX)
    assert fresh_read(kd, A) == {"mine": True, "more": 1}


PATHS: list[list[str | int]] = [[], ["l"], ["l", 0], ["l", -1], ["d", "l"], [0], [-1], [1]]
VALUES: list[Any] = [{"l": [[1]], "d": {"l": []}}, [[1], [2]], {"x": 1}, 5, [{"l": []}]]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 4), st.integers(0, 7)), max_size=25))
def test_replicas_editing_packed_values_converge(ops: list[tuple[int, int, int]]) -> None:
    """Three replicas edit one key in random interleavings and deliveries: each
    decodes what its cache says, and all decode the same once every delta is in."""
    docs = [KeyDoc(1) for _ in range(3)]
    cids = [11, 22, 33]
    sent: list[list[bytes]] = [[], [], []]
    delivered = [[0, 0, 0] for _ in range(3)]
    for n, (who, kind, arg) in enumerate(ops):
        kd, cid = docs[who], cids[who]
        delta: bytes | None = None
        try:
            if kind == 0:
                delta = set_(kd, cid, VALUES[arg % len(VALUES)])
            elif kind == 1:
                delta = kd.update(cid, {"x": n, "l": [n]} if arg % 2 else {"y": n}, MAX)
            elif kind == 2:
                delta = kd.append(cid, PATHS[arg], [n] if arg % 3 == 0 else n, MAX)
            elif kind == 4:
                delta, _ = kd.incr(cid, arg - 3)
            else:  # deliver what one other replica sent since the last delivery
                src = (who + 1 + arg % 2) % 3
                pending = sent[src][delivered[who][src] :]
                for d in reversed(pending) if arg >= 4 else pending:  # out of order too
                    kd.apply(cid, d)
                delivered[who][src] = len(sent[src])
        except (WrongType, PathNotFound):
            pass
        if delta is not None:
            sent[who].append(delta)
        cached = kd.read(cid)
        assert fresh_read(kd, cid) == cached
    for i, kd in enumerate(docs):
        for src in range(3):
            for d in sent[src]:
                kd.apply(cids[i], d)
    reads = [fresh_read(kd, cid) for kd, cid in zip(docs, cids, strict=True)]
    assert reads[0] == reads[1] == reads[2]
