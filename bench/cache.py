"""Cache benchmark: ``@db.cached`` hits beside a plain ``get``; ``get_many`` of keys
held on another node beside one ``get`` each; ``pydds.sync`` beside the async API.

Prints one JSON object. The two nodes of ``get_many`` are in this process, linked
over WebSockets on 127.0.0.1 (random ports).

    python bench/cache.py [--ops 50000] [--keys 1000]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import pydds
import pydds.sync

VALUE = {"name": "Ada", "age": 36, "langs": ["en"], "score": 1.5, "admin": False}


def us(seconds: float, n: int) -> float:
    return round(seconds / n * 1e6, 2)


async def bench_cached_hit(ops: int) -> dict[str, float]:
    async with pydds.Node() as node:
        db = node.database("bench")

        @db.cached(ttl=3600, key="user:{user_id}")
        async def load(user_id: int) -> dict[str, Any]:
            return VALUE

        await load(1)
        await db.set("plain", VALUE)
        start = time.perf_counter()
        for _ in range(ops):
            await db.get("plain")
        get = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(ops):
            await load(1)
        hit = time.perf_counter() - start
    return {"get_us": us(get, ops), "cached_hit_us": us(hit, ops)}


async def bench_get_many(keys: int) -> dict[str, float]:
    async with (
        pydds.Node("a", listen="127.0.0.1:0") as a,
        pydds.Node("b", listen="127.0.0.1:0") as b,
    ):
        assert a.address is not None
        await b.join(a.address)
        db_a, db_b = a.database("bench"), b.database("bench")
        batches = {name: {f"{name}:{i}": VALUE for i in range(keys)} for name in ("many", "one")}
        async with b.events(database="bench", kinds=["created"]) as created:
            for items in batches.values():
                await db_a.set_many(items)  # b learns the keys, holds no value
            for _ in range(2 * keys):
                await created.get(timeout=30)
        assert not any(db_b.holds(key) for key in batches["many"])
        start = time.perf_counter()
        got = await db_b.get_many(list(batches["many"]))
        many = time.perf_counter() - start
        assert len(got) == keys
        start = time.perf_counter()
        for key in batches["one"]:
            await db_b.get(key)
        one = time.perf_counter() - start
    return {
        "get_many_keys": keys,
        "get_many_not_held_ms": round(many * 1e3, 1),
        "gets_one_by_one_not_held_ms": round(one * 1e3, 1),
    }


async def bench_async(ops: int) -> tuple[float, float]:
    async with pydds.Node() as node:
        db = node.database("bench")
        await db.set("k", VALUE)
        start = time.perf_counter()
        for _ in range(ops):
            await db.get("k")
        get = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(ops):
            await db.set("k", VALUE)
        return us(get, ops), us(time.perf_counter() - start, ops)


def bench_sync(ops: int) -> dict[str, float]:
    with pydds.sync.Node() as node:
        db = node.database("bench")
        db.set("k", VALUE)
        start = time.perf_counter()
        for _ in range(ops):
            db.get("k")
        get = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(ops):
            db.set("k", VALUE)
        set_ = time.perf_counter() - start
    return {"sync_get_us": us(get, ops), "sync_set_us": us(set_, ops)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ops", type=int, default=50_000)
    parser.add_argument("--keys", type=int, default=1000)
    args = parser.parse_args()
    result: dict[str, Any] = {}
    result.update(pydds.run(bench_cached_hit(args.ops)))
    result.update(pydds.run(bench_get_many(args.keys)))
    get, set_ = pydds.run(bench_async(args.ops // 5))
    result.update({"async_get_us": get, "async_set_us": set_})
    result.update(bench_sync(args.ops // 5))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
