"""Values: exact round trips through the CRDT and through the packed cache."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pydds.crdt import values
from pydds.crdt.keydoc import KeyDoc
from pydds.crdt.ydoc import YDoc
from pydds.errors import InvalidValue

from ..helpers import exact

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=values.INT_MIN, max_value=values.INT_MAX)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0.0, -0.0, 1.0, 2.0**60, 1e308, 5e-324])
    | st.text()
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


def through_crdt(value: Any) -> Any:
    values.check(value, 64)
    doc = YDoc(1, "r")
    txn = doc.begin(1)
    values.write(txn, doc.root, "v", value)
    delta = doc.end(txn)
    other = YDoc(2, "r")
    assert delta is not None
    other.apply(delta, 2)
    txn = other.read()
    try:
        return values.read(txn, other.root.get(txn, "v"))
    finally:
        txn.drop()


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_crdt_round_trip_is_exact(value: Any) -> None:
    assert exact(through_crdt(value)) == exact(value)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_packed_round_trip_is_exact(value: Any) -> None:
    assert exact(values.unpack(values.pack(value, 1 << 30))) == exact(value)


def test_tuples_come_back_as_lists() -> None:
    assert through_crdt((1, (2.0, "x"))) == [1, [2.0, "x"]]


class Thing:
    pass


@pytest.mark.parametrize(
    "bad",
    [
        {1, 2},
        b"bytes",
        bytearray(b"x"),
        {1: "int key"},
        {"ok": {(1, 2): "tuple key"}},
        Thing(),
        math.nan,
        math.inf,
        [-math.inf],
        2**64,
        -(2**63) - 1,
        {"deep": [{"x": object()}]},
        complex(1, 2),
    ],
)
def test_bad_values_are_refused(bad: Any) -> None:
    with pytest.raises(InvalidValue):
        values.check(bad, 64)


def test_the_error_says_where() -> None:
    with pytest.raises(InvalidValue) as info:
        values.check({"a": [1, {"b": b"x"}]}, 64)
    assert info.value.path == "$.a[1].b"


def test_subclasses_are_refused_rather_than_read_back_as_their_base() -> None:
    import enum
    from collections import OrderedDict

    class Colour(enum.IntEnum):
        RED = 1

    for bad in (Colour.RED, OrderedDict(a=1)):
        with pytest.raises(InvalidValue):
            values.check(bad, 64)


def test_depth_limit() -> None:
    value: Any = "leaf"
    for _ in range(10):
        value = [value]
    values.check(value, 10)
    with pytest.raises(InvalidValue):
        values.check([value], 10)


def test_invalid_unicode_is_refused_when_packed() -> None:
    values.check("\ud800", 64)  # a lone surrogate: the type is right...
    with pytest.raises(InvalidValue):
        values.pack("\ud800", 1 << 20)  # ...but it cannot be encoded


def test_size_limit() -> None:
    with pytest.raises(InvalidValue):
        values.pack("x" * 100, 50)


def test_unknown_items_read_as_something_json_like() -> None:
    doc = YDoc(1, "r")
    txn = doc.begin(1)
    doc.root.insert(txn, "native", 5)
    doc.root.insert(txn, "buffer", b"zzz")
    doc.end(txn)
    txn = doc.read()
    assert values.read(txn, doc.root.get(txn, "native")) == 5
    assert values.read(txn, doc.root.get(txn, "buffer")) is None
    txn.drop()


# -- long lists --------------------------------------------------------------------------


def through_crdt_in_steps(value: Any) -> tuple[Any, bytes, int]:
    """``value`` written in steps as a node writes it, read back on another replica;
    with the delta and how many steps the write took."""
    values.check(value, 64)
    doc = YDoc(1, "r")
    steps = 0
    renew = doc.renew

    def counting(txn: Any) -> Any:
        nonlocal steps
        steps += 1
        return renew(txn)

    txn = doc.begin(1)
    try:
        txn = values.write(txn, doc.root, "v", value, counting)
    finally:
        delta = doc.end(txn)
    assert delta is not None
    replica = YDoc(2, "r")
    replica.apply(delta, 0)
    txn = replica.read()
    try:
        return values.read(txn, replica.root.get(txn, "v")), delta, steps
    finally:
        txn.drop()


def test_a_long_list_is_written_in_steps_and_reads_back_exactly() -> None:
    n = 100_000
    value = list(range(n))
    got, delta, steps = through_crdt_in_steps(value)
    assert exact(got) == exact(value)
    assert steps == n // values.STEP  # one commit per step of a run
    # Each step's items merged into one block: a few bytes an item (item by item,
    # inserted at the front, it takes 14).
    assert len(delta) < 8 * n


def test_runs_of_scalars_between_containers_read_back_exactly() -> None:
    value: list[Any] = []
    for i in range(3000):
        value.append(i * 7 - 5000)
        if i % 97 == 0:
            value.append({"i": i, "list": [i, -0.0, "x", None, [True, 2**63 - 1]]})
        if i % 211 == 0:
            value += [[], {}, (1.5, "t")]
        value.append(-0.0 if i % 5 == 0 else float(i))
    value.append({"end": list(range(500))})
    got, _, steps = through_crdt_in_steps({"outer": value, "n": 1})
    assert exact(got) == exact(
        {"outer": [list(v) if type(v) is tuple else v for v in value], "n": 1}
    )
    assert steps > 0


@settings(max_examples=200, deadline=None)
@given(st.lists(json_values, max_size=80))
def test_lists_in_steps_round_trip_exactly(value: list[Any]) -> None:
    assert exact(through_crdt_in_steps(value)[0]) == exact(through_crdt(value))


def test_a_list_holds_a_bounded_number_of_containers() -> None:
    values.check([{"i": i} for i in range(values.MAX_LIST_CONTAINERS)] + [1] * 50_000, 64)
    with pytest.raises(InvalidValue, match="more than 10000 dicts and lists") as info:
        values.check({"a": [[i] for i in range(values.MAX_LIST_CONTAINERS + 1)]}, 64)
    assert info.value.path == "$.a"  # type: ignore[attr-defined]


def test_an_append_counts_containers_without_the_cached_value() -> None:
    bound = values.MAX_LIST_CONTAINERS
    items = [[i] for i in range(bound)]
    doc = KeyDoc(1)
    doc.set(7, items, values.pack(items, 1 << 30))
    doc.append(7, [], 1, 1 << 30)
    doc.packed = None  # as after an update from elsewhere: the list is read once
    with pytest.raises(InvalidValue, match="dicts and lists"):
        doc.append(7, [], [bound], 1 << 30)
    assert len(doc.read(7)) == bound + 1
