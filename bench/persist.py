"""Persistence benchmark: durable acknowledgements per second, raw SQLite batched
inserts on the same disk (the limit), and the restart time of a node holding many
keys.

Prints one JSON object. Targets (issue "Modules"): durable acks >= 20,000/s with
group commit; a node holding 100,000 keys ready <= 2 s after a restart.

    python bench/persist.py [--writes 20000] [--keys 100000] [--writers 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import tempfile
import time
from pathlib import Path

import pydds
from pydds.modules.persist import Persistence

VALUE = "x" * 100


def sqlite_limit(directory: Path, rows: int) -> float:
    """Rows per second into a WAL, synchronous=FULL SQLite file, 1000 per commit."""
    db = sqlite3.connect(directory / "limit.sqlite3", isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT, v BLOB)")
    blob = VALUE.encode()
    start = time.perf_counter()
    for i in range(0, rows, 1000):
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO t (k, v) VALUES (?, ?)", [(f"k{j}", blob) for j in range(i, i + 1000)]
        )
        db.execute("COMMIT")
    seconds = time.perf_counter() - start
    db.close()
    return rows / seconds


async def durable_acks(directory: Path, writes: int, writers: int) -> dict[str, float]:
    store = Persistence(path=str(directory))
    async with pydds.Node("bench", modules=[store]) as node:
        db = node.database("db")
        keys = iter(range(writes))

        async def writer() -> None:
            for i in keys:
                await db.set(f"k{i}", VALUE, ack="durable")

        start = time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(writers)))
        seconds = time.perf_counter() - start
        commits = store.commits
    return {
        "durable_acks_per_s": round(writes / seconds),
        "commits": commits,
        "updates_per_commit": round(store.written / max(commits, 1), 1),
    }


async def restart(directory: Path, keys: int) -> dict[str, float]:
    store = Persistence(path=str(directory))
    async with pydds.Node("before", modules=[store]) as node:
        db = node.database("db")
        for i in range(keys):
            await db.set(f"key:{i}", VALUE)
        await db.set("last", 1, ack="durable")
        await store.compact()
    start = time.perf_counter()
    store = Persistence(path=str(directory))
    node = pydds.Node("after", modules=[store])
    await node.start()
    ready = time.perf_counter() - start
    db = node.database("db")
    assert len(db) == keys + 1, len(db)
    assert await db.get(f"key:{keys - 1}") == VALUE
    await node.close()
    size = (directory / "pydds.sqlite3").stat().st_size
    return {"restart_ready_s": round(ready, 3), "restored": store.restored, "file_bytes": size}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--writes", type=int, default=20_000)
    parser.add_argument("--writers", type=int, default=64)
    parser.add_argument("--keys", type=int, default=100_000)
    args = parser.parse_args()
    results: dict[str, object] = {"writes": args.writes, "writers": args.writers, "keys": args.keys}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite_batched_rows_per_s"] = round(
            sqlite_limit(Path(tmp), max(args.writes, 10_000))
        )
    with tempfile.TemporaryDirectory() as tmp:
        results.update(await durable_acks(Path(tmp), args.writes, args.writers))
    with tempfile.TemporaryDirectory() as tmp:
        results.update(await restart(Path(tmp), args.keys))
    print(json.dumps(results))


if __name__ == "__main__":
    pydds.run(main())
