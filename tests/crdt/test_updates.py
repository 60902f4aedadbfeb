"""Reading what a Yjs update writes without applying it (crdt/updates.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Array, Doc, Map, Text

from pydds.crdt.directory import ROOT, Directory, Entry
from pydds.crdt.updates import MapItem, map_items
from pydds.errors import InvalidUpdate


def test_a_directorys_updates_are_read_as_they_are_written() -> None:
    d = Directory(7)
    created = d.put("user:1", Entry(1), 0)
    deleted = d.put("user:1", Entry(1, True), 0)
    other = d.put("é/ü", Entry(2), 0)
    assert map_items(created, ROOT) == [MapItem("user:1", (Entry(1).encode(),))]
    # An entry written again follows the one before it: no key of its own.
    assert map_items(deleted, ROOT) == [MapItem(None, (Entry(1, True).encode(),))]
    assert map_items(other, ROOT) == [MapItem("é/ü", (Entry(2).encode(),))]
    whole = map_items(d.doc.diff(b"\x00"), ROOT)  # the replaced entry: deleted content
    assert [item.key for item in whole] == ["user:1", None, "é/ü"]
    assert whole[0].values == ()


def test_values_of_every_kind_are_read() -> None:
    doc = Doc()
    doc["keys"] = root = Map()
    value = {"a": [1, -70000, 2.5, None, True, False, "s", {"b": b"\x00"}], "big": 2**62}
    root["k"] = value
    (item,) = map_items(doc.get_update(), ROOT)
    assert item.key == "k"
    assert item.values == (
        {"a": [1, -70000, 2.5, None, True, False, "s", {"b": b"\x00"}], "big": 2**62},
    )


def refused(update: bytes, match: str) -> None:
    with pytest.raises(InvalidUpdate, match=match):
        map_items(update, ROOT)


def test_anything_but_entries_of_the_root_map_is_refused() -> None:
    other = Doc()
    other["other"] = Map({"k": 1})
    refused(other.get_update(), "outside the root map")
    text = Doc()
    text["keys"] = Text("hi")
    refused(text.get_update(), "as a list, not a map")
    listed = Doc()
    listed["keys"] = Array([1])
    refused(listed.get_update(), "as a list, not a map")
    nested = Doc()
    nested["keys"] = root = Map()
    root["k"] = Map({"a": 1})
    refused(nested.get_update(), "content of type 7")


def test_damaged_updates_are_refused() -> None:
    d = Directory(7)
    update = d.put("user:1", Entry(1), 0)
    for cut in range(len(update)):
        with pytest.raises(InvalidUpdate):
            map_items(update[:cut], ROOT)
    refused(update + b"\x00", "trailing bytes")
    refused(b"\x80" * 20, "too long")
    deep = b"\x01\x01\x07\x00\x28\x01\x04keys\x01k\x01" + b"\x75\x01" * 40 + b"\x7e\x00"
    refused(deep, "nested too deeply")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_read_or_refused(data: bytes) -> None:
    try:
        items = map_items(data, ROOT)
    except InvalidUpdate:
        return
    assert all(isinstance(item, MapItem) for item in items)
