"""Persistence: what a node writes or learns is there after a restart, damaged
files are detected and salvaged, a full disk fails durable writes cleanly."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiohttp
import pytest

import pydds
from pydds.acks import parse_ack
from pydds.clock import FakeClock
from pydds.modules.persist import Persistence
from pydds.storage import FILE_NAME, SqliteStore

from .helpers import start_serve, stop_process
from .memcluster import Cluster, names, until


async def test_every_kind_of_write_survives_a_restart(tmp_path: Path) -> None:
    async with pydds.Node("a", modules=[Persistence(path=str(tmp_path))]) as node:
        db = node.database("db")
        await db.set("doc", {"a": 1, "list": [1, 2]}, ack="durable")
        await db.update("doc", {"b": {"c": None}})
        await db.append("doc", ["list"], 3.5)
        await db.incr("hits", 5)
        await db.incr("hits", -2)
        await db.set("gone", "x")
        await db.delete("gone")
        await db.set("again", 1)
        await db.delete("again")
        await db.set("again", "second life", ack="durable")
        await node.database("other").set("k", True, ack="durable")
    store = Persistence(path=str(tmp_path))
    async with pydds.Node("a2", modules=[store]) as node:
        assert store.restored == 4
        db = node.database("db")
        assert sorted(db.keys()) == ["again", "doc", "hits"]
        assert await db.get("doc") == {"a": 1, "list": [1, 2, 3.5], "b": {"c": None}}
        assert await db.get("hits") == 3
        assert await db.get("again") == "second life"
        assert await node.database("other").get("k") is True
        assert node.event_counts == {}  # restoring is no change: no events
        # Writes after a restore merge with what was restored.
        await db.incr("hits", 1, ack="durable")
        await db.update("doc", {"a": 2}, ack="durable")
    async with pydds.Node("a3", modules=[Persistence(path=str(tmp_path))]) as node:
        db = node.database("db")
        assert await db.get("hits") == 4
        assert (await db.get("doc"))["a"] == 2


def test_ack_levels_parse() -> None:
    assert parse_ack("local") == (False, "local")
    assert parse_ack(2) == (False, 2)
    assert parse_ack("durable") == (True, "local")
    assert parse_ack("durable+majority") == (True, "majority")
    assert parse_ack("durable+all") == (True, "all")
    assert parse_ack("durable+3") == (True, 3)
    for bad in ("durable+", "durable+0", "durablemajority", "majority+durable", 0, True, None):
        with pytest.raises(pydds.InvalidValue):
            parse_ack(bad)


async def test_durable_needs_a_store() -> None:
    async with pydds.Node() as node:
        with pytest.raises(pydds.InvalidValue, match="needs a store"):
            await node.database("db").set("k", 1, ack="durable")
        assert "k" not in node.database("db")  # refused before anything changed


async def test_values_from_peers_and_pulled_values_are_kept(
    cluster: Cluster, tmp_path: Path
) -> None:
    a, b = await cluster.pair([Persistence(path=str(tmp_path))])
    db_a, db_b = a.database("db"), b.database("db")
    await db_b.set("pulled", {"v": 1})
    await db_b.set("known", "only the directory")
    await until(lambda: "known" in db_a and "pulled" in db_a)
    assert await db_a.get("pulled") == {"v": 1}  # a holds it now
    await db_b.update("pulled", {"w": 2})  # pushed to a, a holder
    await until(lambda: db_a._keyspace.read("pulled") == {"v": 1, "w": 2})
    await a.close()
    await b.close()
    store = Persistence(path=str(tmp_path))
    async with pydds.Node("a-again", modules=[store]) as node:
        db = node.database("db")
        assert sorted(db.keys()) == ["known", "pulled"]
        assert db.holds("pulled")
        assert await db.get("pulled") == {"v": 1, "w": 2}
        assert not db.holds("known")  # known, never held here: pulled on read
        with pytest.raises(pydds.Unavailable):
            await db.get("known")


async def test_stale_keys_stay_on_disk(tmp_path: Path) -> None:
    clock = FakeClock()
    async with pydds.Node(clock=clock, modules=[Persistence(path=str(tmp_path))]) as node:
        db = node.database("db", stale_after=10)
        await db.set("k", "v", ack="durable")
        await clock.advance(11, step=1.0)
        assert db.is_stale("k")
    async with pydds.Node(modules=[Persistence(path=str(tmp_path))]) as node:
        assert await node.database("db").get("k") == "v"


async def test_compaction_folds_the_log(tmp_path: Path) -> None:
    store = Persistence(path=str(tmp_path), compact_at=50)
    async with pydds.Node(modules=[store]) as node:
        db = node.database("db")
        for i in range(200):
            await db.set(f"k{i % 10}", i)
        await db.delete("k0")
        await db.incr("n", 1, ack="durable")  # its commit makes the log pass compact_at
        for _ in range(100):
            await db.incr("n", 1)
        await db.set("last", 1, ack="durable")  # after the compaction: one writer
        assert store.compactions >= 1
        assert store._store is not None
        assert store._store.log_size() < 150  # of 300+ updates
        await store.compact()  # the rest, on demand
        assert store._store.log_size() == 0
    raw = sqlite3.connect(tmp_path / FILE_NAME)
    states = dict(raw.execute("SELECT key, gen FROM state WHERE db = 'db'").fetchall())
    raw.close()
    assert "k0" not in states  # a deleted key's value is gone from the file
    assert states["k1"] == 1
    async with pydds.Node(modules=[Persistence(path=str(tmp_path))]) as node:
        db = node.database("db")
        assert sorted(db.keys()) == sorted([f"k{i}" for i in range(1, 10)] + ["n", "last"])
        assert await db.get("k9") == 199
        assert await db.get("n") == 101


async def test_a_row_failing_its_checksum_is_not_loaded(tmp_path: Path) -> None:
    async with pydds.Node(modules=[Persistence(path=str(tmp_path))]) as node:
        db = node.database("db")
        await db.set("good", 1, ack="durable")
        await db.set("bad", 2, ack="durable")
    raw = sqlite3.connect(tmp_path / FILE_NAME)
    (rowid,) = raw.execute("SELECT max(id) FROM log WHERE key = 'bad'").fetchone()
    raw.execute("UPDATE log SET data = ? WHERE id = ?", (b"\x01\x02rot", rowid))  # bit rot
    raw.commit()
    raw.close()
    store = Persistence(path=str(tmp_path))
    async with pydds.Node(modules=[store]) as node:
        db = node.database("db")
        assert store._store is not None
        assert store._store.recovery.lost_rows == 1
        assert await db.get("good") == 1
        assert sorted(db.keys()) == ["bad", "good"]  # the directory still knows it
        assert not db.holds("bad")  # its value re-syncs from peers


@pytest.mark.parametrize("damage", ["truncate", "garbage", "overwrite"])
async def test_a_damaged_file_is_moved_aside_and_salvaged(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with pydds.Node(modules=[Persistence(path=str(tmp_path), compact_at=100)]) as node:
        db = node.database("db")
        for i in range(300):
            await db.set(f"k{i}", "x" * 200, ack="durable")
    path = tmp_path / FILE_NAME
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw.close()
    data = path.read_bytes()
    assert len(data) > 8192
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    else:  # pages in the middle overwritten
        middle = len(data) // 2
        path.write_bytes(data[:middle] + b"\xff" * 4096 + data[middle + 4096 :])
    store = Persistence(path=str(tmp_path))
    async with pydds.Node(modules=[store]) as node:
        assert store._store is not None
        recovery = store._store.recovery
        assert recovery.damaged
        assert recovery.moved_to is not None
        kept = await asyncio.to_thread(Path(recovery.moved_to).exists)
        assert kept  # for a human to look at
        db = node.database("db")
        # Whatever was recovered is intact; nothing half-loaded.
        for key in db.keys(prefix="k"):
            if db.holds(key):
                assert await db.get(key) == "x" * 200
        await db.set("after", 1, ack="durable")  # the new file works
    assert "damaged" in caplog.text
    async with pydds.Node(modules=[Persistence(path=str(tmp_path))]) as node:
        assert await node.database("db").get("after") == 1


async def test_a_full_disk_fails_durable_writes_and_corrupts_nothing(tmp_path: Path) -> None:
    store = Persistence(path=str(tmp_path), max_page_count=12, retry=0.01)
    async with pydds.Node(modules=[store]) as node:
        db = node.database("db")
        await db.set("small", 1, ack="durable")

        async def fill() -> None:
            for i in range(200):  # bounded: the cap is reached long before
                await db.set(f"big{i}", "y" * 2000, ack="durable")

        with pytest.raises(pydds.StorageError, match="full"):
            await fill()
        assert await db.get("small") == 1  # the node goes on, in memory
        await db.set("in memory", 2)
        assert store.failures >= 1
        assert store._store is not None
        assert store._executor is not None
        # Space again: the queued updates are written at the next attempt.
        await asyncio.get_running_loop().run_in_executor(
            store._executor,
            store._store._db.execute,
            "PRAGMA max_page_count = 1000000",
        )
        await db.set("after", 3, ack="durable")
    async with pydds.Node(modules=[Persistence(path=str(tmp_path))]) as node:
        db = node.database("db")
        assert await db.get("small") == 1
        assert await db.get("in memory") == 2
        assert await db.get("after") == 3
        assert await db.get("big0") == "y" * 2000


async def test_one_process_per_data_directory(tmp_path: Path) -> None:
    async with pydds.Node(modules=[Persistence(path=str(tmp_path))]):
        second = pydds.Node(modules=[Persistence(path=str(tmp_path))])
        with pytest.raises(pydds.ModuleError, match="in use by another pydds process"):
            await second.start()


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="compact_at must be a number"):
        Persistence(compact_at="often")
    with pytest.raises(ValueError, match="retry must be positive"):
        Persistence(retry=0)


def test_the_store_alone(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    try:
        store.append([("db", "", 0, b"\x00\x00")])
        assert store.log_size() == 1
        loaded = store.load()
        assert loaded.directories == {"db": [b"\x00\x00"]}
        assert loaded.values == {}
    finally:
        store.close()
    store.close()  # idempotent


async def test_a_restarted_node_catches_up_with_the_cluster(
    cluster: Cluster, tmp_path: Path
) -> None:
    a, b = await cluster.pair([Persistence(path=str(tmp_path))])
    await a.database("db").set("k", {"v": 1}, ack="durable")
    await until(lambda: "k" in b.database("db"))
    assert await b.database("db").get("k") == {"v": 1}
    await a.close()
    await until(lambda: names(b) == ["b"])
    await b.database("db").update("k", {"w": 2})  # while a is down
    await b.database("db").set("new", 1)
    again = await cluster.start_with(
        "a2", join=["mem://b"], modules=[Persistence(path=str(tmp_path))]
    )
    db = again.database("db")
    assert db.holds("k")  # restored before the link opened
    await until(lambda: "new" in db and db._keyspace.read("k") == {"v": 1, "w": 2})


def store_bytes(directory: Path) -> int:
    """The store's file and its WAL, as they take room on disk."""
    return sum(
        (directory / name).stat().st_size
        for name in (FILE_NAME, f"{FILE_NAME}-wal")
        if (directory / name).exists()
    )


async def test_compaction_gives_back_the_room_of_overwritten_values(tmp_path: Path) -> None:
    """20,000 whole-value sets over 10 keys: once compacted, the file holds about what
    the 10 live values take, and a `pydds serve` started on it reads them back."""
    store = Persistence(path=str(tmp_path), compact_at=1_000_000)
    async with pydds.Node("a", modules=[store]) as node:
        db = node.database("db")
        for i in range(20_000):
            value = {"n": i, "name": "x" * 40, "tags": ["a", "b"], "ok": True, "f": 0.5}
            await db.set(f"k{i % 10}", value, ack="durable" if i % 1000 == 999 else "local")
        written = store_bytes(tmp_path)
        await store.compact()
        compacted = store_bytes(tmp_path)
    assert written > 2_000_000  # the log holds every set
    assert compacted < 64 * 1024
    served = await start_serve(
        "--port", "0", "--data-dir", str(tmp_path), "--log-level", "warning",
        env={"PYDDS_MEMORY": ""},
    )  # fmt: skip
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{served.http}/v1/databases/db/keys/k9") as response,
        ):
            assert response.status == 200
            value = await response.json()
    finally:
        await stop_process(served.proc)
    assert value == {"f": 0.5, "n": 19_999, "name": "x" * 40, "ok": True, "tags": ["a", "b"]}


def test_a_store_made_before_incremental_vacuum_is_converted(tmp_path: Path) -> None:
    raw = sqlite3.connect(tmp_path / FILE_NAME)
    raw.executescript(
        "CREATE TABLE log (id INTEGER PRIMARY KEY, db TEXT NOT NULL, key TEXT NOT NULL,"
        " gen INTEGER NOT NULL, data BLOB NOT NULL, crc INTEGER NOT NULL);"
        "CREATE TABLE state (db TEXT NOT NULL, key TEXT NOT NULL, gen INTEGER NOT NULL,"
        " data BLOB NOT NULL, crc INTEGER NOT NULL, PRIMARY KEY (db, key)) WITHOUT ROWID;"
    )
    assert raw.execute("PRAGMA auto_vacuum").fetchone() == (0,)
    raw.close()
    store = SqliteStore(tmp_path)
    store.close()
    raw = sqlite3.connect(tmp_path / FILE_NAME)
    assert raw.execute("PRAGMA auto_vacuum").fetchone() == (2,)  # incremental
    raw.close()


async def test_a_node_offline_while_others_compact_comes_back_and_merges(
    tmp_path: Path,
) -> None:
    """b is cut off while a overwrites a key 2,000 times and compacts its store (the
    history Yrs collected is gone from a's memory and file); b's own writes made
    meanwhile merge by the rules of docs/semantics.md when the partition heals."""
    c = Cluster()
    store = Persistence(path=str(tmp_path), compact_at=1_000_000)
    a = await c.start_with("a", modules=[store])
    b = await c.start("b", ["mem://a"])
    try:
        await a.database("db").set("doc", {"v": 0, "tags": ["x"]})
        await until(lambda: "doc" in b.database("db"))
        assert await b.database("db").get("doc") == {"tags": ["x"], "v": 0}  # b holds it
        await c.network.partition(["mem://b"], ["mem://a"])
        await until(lambda: names(b) == ["b"])
        for i in range(1, 2001):
            await a.database("db").set("doc", {"v": i, "tags": ["x"]})
        await store.compact()
        assert store_bytes(tmp_path) < 64 * 1024
        # b, offline: edits inside the value a replaced 2,000 times, a set of a key a
        # sets too, and a key of its own.
        await b.database("db").update("doc", {"offline": True})
        await b.database("db").append("doc", ["tags"], "y")
        await b.database("db").set("both", "from b")
        await a.database("db").set("both", "from a")
        await b.database("db").set("from-b", 1)
        c.network.heal()
        await c.clock.advance(10, step=0.5)
        await until(lambda: len(names(b)) == 2)
        await until(lambda: "from-b" in a.database("db"), rounds=5000)
        # Rule 6: edits made inside a value that a concurrent set replaced are lost
        # with it (a's 2,000 sets replaced the value b edited), as they would be online.
        want = {"tags": ["x"], "v": 2000}
        await until(lambda: b.database("db")._keyspace.read("doc") == want, rounds=5000)
        assert await a.database("db").get("doc") == want
        # Rule 1: concurrent sets of one key, one winner, the same on both.
        await until(
            lambda: (
                b.database("db")._keyspace.read("both") == a.database("db")._keyspace.read("both")
            ),
            rounds=5000,
        )
        assert await a.database("db").get("both") in ("from a", "from b")
        assert await a.database("db").get("from-b") == 1
    finally:
        for node in (b, a):
            await node.close()
