"""Embedded-store benchmark: get and set throughput on one core, memory per key.

Prints one JSON object. Targets (issue "Embedded store"): get of a held 5-field dict
>= 500,000/s; set of a small dict >= 100,000/s; <= 1 KB per key beyond the value at
100,000 keys. Sets rotate over 1, 100 and 1000 keys (more keys: more CPU cache
misses inside Yrs). The same run measures pycrdt's own Map read and scalar set, and
the very same dict set through pycrdt's binding alone over 1000 documents: the limit
under pydds's own work. ``*_ttl_*``: the same get and set of keys with a time to
live (each such set writes the key's directory entry too: the cost of TTLs).

    python bench/embedded.py [--keys 100000]
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from typing import Any

import pycrdt

import pydds
import pydds.crdt.values

VALUE = {"name": "Ada", "age": 36, "langs": ["en"], "score": 1.5, "admin": False}


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def rate(n: int, seconds: float) -> float:
    return round(n / seconds)


async def bench_get(db: pydds.Database, n: int, ttl: float | None = None) -> float:
    await db.set("k", VALUE, ttl=ttl)
    get = db.get
    start = time.perf_counter()
    for _ in range(n):
        await get("k")
    return rate(n, time.perf_counter() - start)


async def bench_set(db: pydds.Database, n: int, keys: int, ttl: float | None = None) -> float:
    names = [f"s:{i}" for i in range(keys)]
    set_ = db.set
    for name in names:  # the keys exist; this measures replacing a value
        await set_(name, VALUE, ttl=ttl)
    start = time.perf_counter()
    for i in range(n):
        await set_(names[i % keys], VALUE, ttl=ttl)
    return rate(n, time.perf_counter() - start)


def bench_pycrdt(n: int) -> dict[str, float]:
    doc = pycrdt.Doc()
    m = doc.get("m", type=pycrdt.Map)
    m["k"] = "v"
    start = time.perf_counter()
    for _ in range(n):
        m["k"]
    read = rate(n, time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(n):
        m["k"] = i
    write = rate(n, time.perf_counter() - start)
    return {"pycrdt_map_read_per_s": read, "pycrdt_map_set_per_s": write}


def bench_binding(n: int, docs: int) -> float:
    """The same set through pycrdt's binding alone (the limit under pydds's own work)."""
    from pycrdt import _pycrdt

    held = []
    for _ in range(docs):
        doc = _pycrdt.Doc(7, False, None)
        txn = doc.create_transaction()
        root = doc.get_or_insert_map(txn, "value")
        txn.commit()
        txn.drop()
        sink: list[bytes] = []
        sub = doc.observe(lambda event, sink=sink: sink.append(event.update))
        held.append((doc, root, sub, sink))
    start = time.perf_counter()
    for i in range(n):
        doc, root, _, sink = held[i % docs]
        txn = doc.create_transaction_with_origin(1)
        m = root.insert_map_prelim(txn, "v")
        m.insert(txn, "name", "Ada")
        m.insert(txn, "age", b"i36")
        m.insert_array_prelim(txn, "langs").insert(txn, 0, "en")
        m.insert(txn, "score", 1.5)
        m.insert(txn, "admin", False)
        txn.commit()
        txn.drop()
        sink.clear()
    return rate(n, time.perf_counter() - start)


async def bench_memory(keys: int) -> dict[str, Any]:
    gc.collect()
    before = rss()
    node = pydds.Node()
    db = node.database("mem")
    for i in range(keys):
        await db.set(f"user:{i}", {"name": f"user {i}", "age": i, "on": True})
    gc.collect()
    used = rss() - before
    sample = {"name": "user 99999", "age": 99999, "on": True}
    value_bytes = len(pydds.crdt.values.pack(sample, 1 << 20))
    await node.close()
    return {
        "memory_keys": keys,
        "memory_bytes_per_key": round(used / keys),
        "memory_value_bytes_packed": value_bytes,
        "memory_bytes_per_key_beyond_value": round(used / keys) - value_bytes,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ops", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=100_000)
    args = parser.parse_args()
    memory = await bench_memory(args.keys)  # first, before other work leaves freed memory
    async with pydds.Node() as node:
        db = node.database("bench")
        result: dict[str, Any] = {
            "get_small_dict_per_s": await bench_get(db, args.ops),
            "set_small_dict_per_s": await bench_set(db, args.ops // 2, 100),
            "set_small_dict_1_key_per_s": await bench_set(db, args.ops // 2, 1),
            "set_small_dict_1000_keys_per_s": await bench_set(db, args.ops // 2, 1000),
            "get_small_dict_ttl_per_s": await bench_get(db, args.ops, ttl=3600),
            "set_small_dict_ttl_per_s": await bench_set(db, args.ops // 2, 100, ttl=3600),
        }
    result.update(bench_pycrdt(args.ops // 2))
    result["binding_set_small_dict_1000_docs_per_s"] = bench_binding(args.ops // 2, 1000)
    result.update(memory)
    result["targets"] = {
        "get_small_dict_per_s": 500_000,
        "set_small_dict_per_s": 100_000,
        "memory_bytes_per_key_beyond_value": 1024,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    pydds.run(main())
