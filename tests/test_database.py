"""The database API on one node: exact values, partial edits, errors that change nothing."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

import pydds

from .crdt.test_values import json_values
from .helpers import exact


@pytest.fixture
async def node():
    async with pydds.Node("n1") as n:
        yield n


@pytest.fixture
def db(node: pydds.Node) -> pydds.Database:
    return node.database("cache", stale_after=300)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=json_values)
async def test_set_then_get_is_exact(db: pydds.Database, value: Any) -> None:
    await db.set("k", value)
    assert exact(await db.get("k")) == exact(value)


@settings(max_examples=50, deadline=None)
@given(value=json_values)
async def test_exact_after_the_document_was_suspended_and_reloaded(value: Any) -> None:
    async with pydds.Node(limits=pydds.Limits(live_docs=1)) as node:
        db = node.database("d")
        await db.set("a", value)
        await db.set("b", 1)  # suspends "a"'s document
        db._keyspace._keys["a"].packed = None  # force a decode from the CRDT
        assert exact(await db.get("a")) == exact(value)


async def test_the_quickstart(db: pydds.Database, node: pydds.Node) -> None:
    await db.set("user:1", {"name": "Ada", "langs": ["en"], "age": 36})
    assert await db.get("user:1") == {"name": "Ada", "langs": ["en"], "age": 36}
    assert await db.get("nope", None) is None
    await db.update("user:1", {"age": 37})
    await db.append("user:1", ["langs"], "fr")
    assert await db.get("user:1") == {"name": "Ada", "langs": ["en", "fr"], "age": 37}
    assert await db.incr("hits", 1) == 1
    assert await db.incr("hits", 41) == 42
    assert "user:1" in db
    assert db.keys(prefix="user:") == ["user:1"]
    assert len(db) == 2
    assert await db.delete("user:1") is True
    assert await db.delete("user:1") is False
    assert "user:1" not in db
    assert node.databases() == ["cache"]
    assert db.stale_after == 300


async def test_absent_key_raises_key_not_found(db: pydds.Database) -> None:
    with pytest.raises(pydds.KeyNotFound):
        await db.get("nope")
    with pytest.raises(KeyError):
        await db.get("nope")
    assert await db.get("nope", "default") == "default"


async def test_returned_values_never_alias_stored_state(db: pydds.Database) -> None:
    await db.set("k", {"a": [1, 2], "b": {"c": 1}})
    got = await db.get("k")
    got["a"].append(3)
    got["b"]["c"] = 99
    got["new"] = True
    assert await db.get("k") == {"a": [1, 2], "b": {"c": 1}}


async def test_mutating_the_written_value_changes_nothing_stored(db: pydds.Database) -> None:
    value = {"a": [1]}
    await db.set("k", value)
    value["a"].append(2)
    assert await db.get("k") == {"a": [1]}


@pytest.mark.parametrize("bad", [{1, 2}, b"x", {1: 2}, float("nan"), object(), 2**70])
async def test_a_bad_value_changes_nothing(db: pydds.Database, bad: Any) -> None:
    await db.set("k", {"ok": 1})
    for op in (
        db.set("k", bad),
        db.set("new", bad),
        db.update("k", {"x": bad}),
        db.append("l", [], bad),
    ):
        with pytest.raises(pydds.InvalidValue):
            await op
    assert await db.get("k") == {"ok": 1}
    assert db.keys() == ["k"]


@pytest.mark.parametrize("key", ["", 5, None, "x" * 1025, "\ud800"])
async def test_bad_keys_are_refused(db: pydds.Database, key: Any) -> None:
    with pytest.raises(pydds.InvalidName):
        await db.set(key, 1)
    assert len(db) == 0


async def test_any_unicode_key_is_fine(db: pydds.Database) -> None:
    for key in ["a/b/../c", "ключ", "emoji 🎉", " spaced ", "x" * 1024, "\x00nul"]:
        await db.set(key, key)
        assert await db.get(key) == key


@pytest.mark.parametrize("name", ["", "../etc", "a/b", ".hidden", "-x", "x" * 129, 5, "a b"])
def test_bad_database_names_are_refused(node: pydds.Node, name: Any) -> None:
    with pytest.raises(pydds.InvalidName):
        node.database(name)
    assert node.databases() == []


@pytest.mark.parametrize("seconds", [0, -1, float("nan"), float("inf"), "10", True, 10**400])
def test_bad_stale_after_is_refused(node: pydds.Node, seconds: Any) -> None:
    with pytest.raises(pydds.InvalidValue):
        node.database("d", stale_after=seconds)


def test_stale_after_can_be_changed_and_is_kept_otherwise(node: pydds.Node) -> None:
    assert node.database("d", stale_after=10).stale_after == 10
    assert node.database("d").stale_after == 10
    assert node.database("d", stale_after=None).stale_after is None


def test_expire_is_the_former_name_of_stale_after(node: pydds.Node) -> None:
    """It reads like a Redis TTL, and is not one: it still works, and warns."""
    with pytest.warns(DeprecationWarning, match="now called stale_after") as caught:
        db = node.database("d", expire=10)
    assert caught[0].filename == __file__  # the warning names the caller's line
    assert db.stale_after == 10
    with (
        pytest.raises(pydds.InvalidValue),
        pytest.warns(DeprecationWarning, match="expire is deprecated"),
    ):
        node.database("d", expire=5, stale_after=5)
    with (
        pytest.raises(pydds.InvalidValue),
        pytest.warns(DeprecationWarning, match="expire is deprecated"),
    ):
        node.database("d", expire=-1)


async def test_update(db: pydds.Database) -> None:
    await db.update("u", {"a": 1})  # an absent key becomes a dict
    await db.update("u", {"b": {"c": [1]}})
    await db.update("u", {"a": 2.0})
    assert exact(await db.get("u")) == exact({"a": 2.0, "b": {"c": [1]}})
    await db.set("s", "string")
    with pytest.raises(pydds.WrongType):
        await db.update("s", {"a": 1})
    with pytest.raises(pydds.InvalidValue):
        await db.update("u", ["not", "a", "dict"])  # type: ignore[arg-type]
    assert await db.get("s") == "string"


async def test_append(db: pydds.Database) -> None:
    await db.append("l", [], 1)  # an absent key with an empty path becomes [item]
    await db.append("l", [], {"x": []})
    await db.append("l", [1, "x"], "deep")
    await db.append("l", [-1, "x"], ("t", 1))
    assert await db.get("l") == [1, {"x": ["deep", ["t", 1]]}]
    with pytest.raises(pydds.KeyNotFound):
        await db.append("absent", ["x"], 1)
    with pytest.raises(pydds.PathNotFound):
        await db.append("l", [5], 1)
    with pytest.raises(pydds.PathNotFound):
        await db.append("l", [1, "nope"], 1)
    with pytest.raises(pydds.WrongType):
        await db.append("l", [0], 1)  # 1 is not a list
    with pytest.raises(pydds.InvalidValue):
        await db.append("l", "x", 1)  # type: ignore[arg-type]
    assert await db.get("l") == [1, {"x": ["deep", ["t", 1]]}]
    assert "absent" not in db


async def test_append_keeps_a_list_within_its_container_bound(db: pydds.Database) -> None:
    bound = pydds.crdt.values.MAX_LIST_CONTAINERS
    await db.set("l", [{"i": i} for i in range(bound)] + [0])
    await db.append("l", [], 1)  # scalars are not counted
    with pytest.raises(pydds.InvalidValue, match=f"more than {bound} dicts and lists"):
        await db.append("l", [], {"i": bound})
    await db.set("nested", {"in": [[i] for i in range(bound)]})
    with pytest.raises(pydds.InvalidValue, match="dicts and lists"):
        await db.append("nested", ["in"], [bound])
    value = await db.get("l")
    assert len(value) == bound + 2  # the refused append changed nothing
    assert value[-1] == 1


async def test_incr(db: pydds.Database) -> None:
    assert await db.incr("c") == 1
    assert await db.incr("c", -5) == -4
    assert await db.incr("c", 0) == -4
    await db.set("n", 10)
    assert await db.incr("n", 5) == 15  # an int value becomes a counter
    assert await db.get("n") == 15
    await db.set("s", "x")
    with pytest.raises(pydds.WrongType):
        await db.incr("s")
    for bad in (1.5, True, "1", 2**63):
        with pytest.raises(pydds.InvalidValue):
            await db.incr("c", bad)  # type: ignore[arg-type]
    await db.set("big", 2**63 - 1)
    assert await db.incr("big", 2**63 - 1) == 2**64 - 2
    with pytest.raises(pydds.InvalidValue):
        await db.incr("big", 2**63 - 1)  # 3 * (2**63 - 1) > 2**64 - 1
    assert await db.get("big") == 2**64 - 2
    assert await db.get("c") == -4
    assert await db.get("s") == "x"


async def test_set_replaces_a_counter_and_incr_starts_again(db: pydds.Database) -> None:
    await db.incr("c", 5)
    await db.set("c", {"now": "a dict"})
    assert await db.get("c") == {"now": "a dict"}
    with pytest.raises(pydds.WrongType):
        await db.incr("c")


async def test_delete_and_set_again_starts_a_fresh_value_document(db: pydds.Database) -> None:
    await db.set("k", {"a": 1})
    ks = db._keyspace
    first = ks._keys["k"]
    assert first.gen == 1
    await db.delete("k")
    await db.update("k", {"b": 2})
    assert ks._keys["k"].gen == 2
    assert ks._keys["k"] is not first
    assert await db.get("k") == {"b": 2}  # nothing of the old value comes back


async def test_many_keys_with_few_live_documents(node: pydds.Node) -> None:
    async with pydds.Node(limits=pydds.Limits(live_docs=8)) as small:
        db = small.database("d")
        for i in range(100):
            await db.set(f"k{i}", {"i": i})
        for i in range(0, 100, 7):
            await db.update(f"k{i}", {"j": -i})
        assert len(small._live) <= 8
        for i in range(100):
            expected = {"i": i, "j": -i} if i % 7 == 0 else {"i": i}
            assert await db.get(f"k{i}") == expected


async def test_a_closed_node_refuses_work() -> None:
    node = pydds.Node()
    db = node.database("d")
    await db.set("k", 1)
    await node.close()
    await node.close()  # idempotent
    with pytest.raises(pydds.NodeClosed):
        await db.set("k", 2)
    with pytest.raises(pydds.NodeClosed):
        await db.get("k")
    with pytest.raises(pydds.NodeClosed):
        node.database("d")
    with pytest.raises(pydds.NodeClosed):
        await node.emit("x")


async def test_a_none_value_is_a_value_not_an_absence(db: pydds.Database) -> None:
    await db.set("k", None)
    db._keyspace._keys["k"].packed = None  # decode from the CRDT
    assert "k" in db
    assert await db.get("k", "default") is None
    with pytest.raises(pydds.WrongType):
        await db.update("k", {"a": 1})
    with pytest.raises(pydds.WrongType):
        await db.append("k", [], 1)
    with pytest.raises(pydds.WrongType):
        await db.incr("k")
    assert await db.get("k", "default") is None
