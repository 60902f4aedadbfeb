"""``pydds.sync``: the blocking API, on a node's loop in a thread of its own."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import pydds
import pydds.sync


def test_the_blocking_api_reads_and_writes() -> None:
    with pydds.sync.Node("s1") as node:
        db = node.database("cache", ttl=60)
        db.set("user:1", {"name": "Ada", "langs": ["en"]})
        db.update("user:1", {"age": 36})
        db.append("user:1", ["langs"], "fr")
        assert db.get("user:1") == {"name": "Ada", "langs": ["en", "fr"], "age": 36}
        assert db.get("nope", None) is None
        with pytest.raises(pydds.KeyNotFound):
            db.get("nope")
        assert db.incr("hits", 2) == 2
        assert 59 < (db.ttl("hits") or 0) <= 60
        assert db.persist("hits") is True
        assert db.expire("hits", 5) is True
        db.set_many({"a": 1, "b": 2})
        assert db.get_many(["a", "b", "c"]) == {"a": 1, "b": 2}
        assert db.keys(pattern="?") == ["a", "b"]
        assert "a" in db
        assert len(db) == 4
        assert list(db) == ["a", "b", "hits", "user:1"]
        assert db.delete_many(["a", "b"]) == 2
        assert db.delete("user:1") is True
        assert db.holds("hits")
        assert node.databases() == ["cache"]
        assert [m.name for m in node.members()] == ["s1"]
    assert node.closed
    with pytest.raises(pydds.NodeClosed):
        db.get("hits")
    node.close()  # again: nothing to do


def test_calls_from_many_threads_are_safe() -> None:
    with pydds.sync.Node() as node:
        db = node.database("d")

        def work(i: int) -> None:
            for _ in range(100):
                db.incr("n")
            db.set(f"k{i}", i)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(work, range(8)))
        assert db.get("n") == 800
        assert db.get_many([f"k{i}" for i in range(8)]) == {f"k{i}": i for i in range(8)}


def test_events_are_read_from_a_thread() -> None:
    with pydds.sync.Node() as node:
        db = node.database("d")
        with node.events(kinds=["created", "custom"]) as events:
            db.set("k", 1)
            node.emit("deploy", {"v": 3})
            first, second = events.get(timeout=5), events.get(timeout=5)
            assert (first.kind, first.key) == ("created", "k")
            assert (second.name, second.payload) == ("deploy", {"v": 3})
            with pytest.raises(TimeoutError):
                events.get(timeout=0.01)


def test_a_call_from_the_nodes_own_loop_says_so() -> None:
    with pydds.sync.Node() as node:
        db = node.database("d")
        with pytest.raises(RuntimeError, match="use the async API"):
            node._loop.call(lambda: db.get("k"))


def test_a_blocking_client_joins_a_blocking_node() -> None:
    with (
        pydds.sync.Node("n1", listen="127.0.0.1:0") as node,
        pydds.sync.Client("c1", join=[node.address or ""]) as client,
    ):
        client.database("cache").set("k", {"v": 1}, ack=1)
        assert node.database("cache").get("k") == {"v": 1}
        assert [m.name for m in client.members()] == ["n1"]


def test_a_node_that_cannot_start_ends_its_thread() -> None:
    with pytest.raises(pydds.InvalidName):
        pydds.sync.Node("bad name")


def test_a_cached_plain_function_runs_once_for_many_threads() -> None:
    with pydds.sync.Node() as node:
        db = node.database("cache")
        calls: list[int] = []
        started = threading.Event()
        release = threading.Event()

        @db.cached(ttl=60, key="user:{user_id}")
        def load(user_id: int) -> dict[str, int]:
            calls.append(user_id)
            started.set()
            assert release.wait(10)
            return {"id": user_id}

        with ThreadPoolExecutor(8) as pool:
            results = [pool.submit(load, 7) for _ in range(8)]
            assert started.wait(10)
            release.set()
            assert [r.result(10) for r in results] == [{"id": 7}] * 8
        assert calls == [7]
        assert threading.current_thread().name == "MainThread"
        assert db.get("user:7") == {"id": 7}
        assert load.invalidate(7) is True
        assert db.invalidate("user:7", "nope") == 0
