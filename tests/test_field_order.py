"""A dict's fields read back sorted by name: on the node that wrote it, on a replica,
and after a restart from the store (Yrs maps keep no order of their own: a decoded
map lists its fields in an order that changes from one process to the next)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydds
from pydds.modules.persist import Persistence

from .memcluster import Cluster, until

#: Enough fields that an order left to chance is sorted once in 12! reads.
FIELDS = ["z", "a", "m", "name", "b", "y", "c", "Z", "é", "10", "2", ""]
VALUE = {
    **{field: i for i, field in enumerate(FIELDS)},
    "nested": {"y": 1, "b": {"q": 1, "c": 2}},
    "list": [{"q": 1, "c": 2}, 3],
}


def in_order(value: Any) -> bool:
    """Whether every dict in ``value`` lists its fields sorted by name."""
    return json.dumps(value) == json.dumps(value, sort_keys=True)


async def writes(db: pydds.Database) -> None:
    await db.set("set", VALUE)
    await db.update("updated", {"z": 1, "a": {"y": 2, "b": 3}})
    await db.update("updated", {"m": 4, "0": 5})
    await db.set("appended", {"items": []})
    await db.append("appended", ["items"], {"z": 1, "a": 2})


async def assert_sorted(db: pydds.Database) -> None:
    for key in ("set", "updated", "appended"):
        value = await db.get(key)
        assert in_order(value), (key, value)
    assert await db.get("updated") == {"0": 5, "a": {"b": 3, "y": 2}, "m": 4, "z": 1}


async def test_the_writer_reads_fields_sorted() -> None:
    async with pydds.Node("a") as node:
        db = node.database("db")
        await writes(db)
        await assert_sorted(db)  # from the cache of the packed value
        for keydoc in db._keyspace._keys.values():
            keydoc.packed = None  # decoded from the document again
        await assert_sorted(db)


async def test_fields_read_back_sorted_after_a_restart(tmp_path: Path) -> None:
    async with pydds.Node("a", modules=[Persistence(path=str(tmp_path))]) as node:
        db = node.database("db")
        await writes(db)
        await db.set("flush", 1, ack="durable")
    async with pydds.Node("a", modules=[Persistence(path=str(tmp_path))]) as node:
        db = node.database("db")
        assert await db.get("set") == VALUE
        await assert_sorted(db)


async def test_a_replica_reads_fields_sorted(cluster: Cluster) -> None:
    a, b = await cluster.pair()
    db_a, db_b = a.database("db"), b.database("db")
    await writes(db_b)
    await until(lambda: all(key in db_a for key in ("set", "updated", "appended")))
    await assert_sorted(db_a)  # pulled on first read
    await db_b.update("updated", {"1": 6})  # pushed to a, a holder now
    await until(lambda: "1" in db_a._keyspace.read("updated"))
    value = await db_a.get("updated")
    assert list(value) == ["0", "1", "a", "m", "z"]


def test_sort_fields_copies_only_what_it_changes() -> None:
    from pydds.crdt.values import sort_fields

    done = {"a": [1, {"b": 2, "c": 3}], "d": (4,)}
    assert sort_fields(done) is done
    value = {"z": [1, {"c": 3, "b": 2}], "a": (4, {"y": 1, "x": 2}), "m": {"k": 1}}
    ordered = sort_fields(value)
    assert ordered == {"a": [4, {"x": 2, "y": 1}], "m": {"k": 1}, "z": [1, {"b": 2, "c": 3}]}
    assert in_order(ordered)
    assert ordered["m"] is value["m"]  # already in order: shared, not copied
    assert list(value) == ["z", "a", "m"]  # the value given is not changed
    assert list(value["z"][1]) == ["c", "b"]
