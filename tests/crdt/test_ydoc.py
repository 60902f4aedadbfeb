"""The surface of pycrdt's binding that pydds relies on (crdt/ydoc.py)."""

import pytest

from pydds.crdt.ydoc import ARRAY_TYPE, MAP_TYPE, YDoc
from pydds.errors import InvalidUpdate


def write(doc: YDoc, key: str, value: object) -> bytes | None:
    txn = doc.begin(1)
    try:
        doc.root.insert(txn, key, value)
    finally:
        return doc.end(txn)  # noqa: B012


def test_end_returns_the_exact_delta_of_the_transaction() -> None:
    a, b = YDoc(1, "r"), YDoc(2, "r")
    delta = write(a, "k", "v")
    assert delta is not None
    assert b.apply(delta, 2) is not None
    txn = b.read()
    assert b.root.get(txn, "k") == "v"
    txn.drop()
    assert b.state_vector() == a.state_vector()


def test_a_transaction_that_changes_nothing_has_no_delta() -> None:
    doc = YDoc(1, "r")
    txn = doc.begin(1)
    assert doc.end(txn) is None
    txn = doc.read()
    txn.drop()
    assert doc.end(doc.begin(1)) is None


def test_applying_a_known_update_again_changes_nothing() -> None:
    a, b = YDoc(1, "r"), YDoc(2, "r")
    delta = write(a, "k", 1.5)
    assert delta is not None
    assert b.apply(delta, 2) is not None
    assert b.apply(delta, 2) is None


def test_prelim_types_and_buffers_round_trip() -> None:
    doc = YDoc(1, "r")
    txn = doc.begin(1)
    m = doc.root.insert_map_prelim(txn, "m")
    m.insert(txn, "i", b"i5")
    arr = m.insert_array_prelim(txn, "a")
    arr.insert(txn, 0, -0.0)
    doc.end(txn)
    txn = doc.read()
    m = doc.root.get(txn, "m")
    assert type(m) is MAP_TYPE
    assert bytes(m.get(txn, "i")) == b"i5"
    a = m.get(txn, "a")
    assert type(a) is ARRAY_TYPE
    assert str(a.get(txn, 0)) == "-0.0"
    txn.drop()


def test_out_of_order_updates_wait_for_their_dependencies() -> None:
    a, b = YDoc(1, "r"), YDoc(2, "r")
    first, second = write(a, "k", "1"), write(a, "k", "2")
    assert first is not None
    assert second is not None
    b.apply(second, 2)
    b.apply(first, 2)
    txn = b.read()
    assert b.root.get(txn, "k") == "2"
    txn.drop()


@pytest.mark.parametrize("garbage", [b"", b"\x01", b"\xff" * 20, b"\x01\x02\x03garbage"])
def test_garbage_raises_invalid_update_and_the_doc_keeps_working(garbage: bytes) -> None:
    doc = YDoc(1, "r")
    write(doc, "k", "v")
    with pytest.raises(InvalidUpdate):
        doc.apply(garbage, 2)
    assert write(doc, "k2", "v2") is not None
    txn = doc.read()
    assert doc.root.get(txn, "k") == "v"
    txn.drop()


def test_diff_against_a_state_vector_is_the_missing_part() -> None:
    a, b = YDoc(1, "r"), YDoc(2, "r")
    first = write(a, "x", "1")
    assert first is not None
    b.apply(first, 2)
    write(a, "y", "2")
    missing = a.diff(b.state_vector())
    b.apply(missing, 2)
    assert b.state_vector() == a.state_vector()
    with pytest.raises(InvalidUpdate):
        a.diff(b"\xff\xff")


def test_reloading_encoded_state_keeps_writing_with_the_same_client() -> None:
    a = YDoc(7, "r")
    write(a, "x", "1")
    state = a.diff()
    a.close()
    again = YDoc(7, "r", state)
    delta = write(again, "x", "2")
    assert delta is not None
    assert again.client_id == 7
    other = YDoc(8, "r", state)
    other.apply(delta, 2)
    txn = other.read()
    assert other.root.get(txn, "x") == "2"
    txn.drop()
