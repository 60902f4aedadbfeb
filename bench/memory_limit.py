"""A node with a memory limit on a three-node cluster: a stream of distinct 5-field
values written through it, its RSS over time, its evictions, every key read back.

Three ``pydds serve`` processes on 127.0.0.1: ``a`` and ``b`` without a limit, and
``c`` with ``--max-memory``. The values go to ``c`` over HTTP (``set-many``, 1,000 a
request, ``ack=majority``: ``a`` and ``b`` get every value too); ``c`` evicts the
copies that ``a`` holds (it sorts first), or with ``--disk`` those its own store
keeps. Then every key is read back from ``c`` (``get-many``) and compared.

Prints one JSON object: ``c``'s RSS at start and at its peak, the RSS growth beside
the limit, what ``c`` counts as held, evictions and reloads, write and read rates,
and the growth beside the held values per key (what the keys themselves take: the
directory, holder tables, bookkeeping, which no limit evicts). With matplotlib (``pip install
-e '.[bench]'``) it draws ``bench/memory-limit.png``: RSS and held bytes over time.

    python bench/memory_limit.py [--values 1000000] [--limit 100MB] [--disk]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from processes import rss, serve, stop
from pydds.config import parse_bytes

HERE = Path(__file__).resolve().parent
BATCH = 1000


def value(i: int) -> dict[str, Any]:
    return {
        "name": f"user-{i}",
        "email": f"u{i}@example.com",
        "age": i % 90,
        "score": i / 7,
        "active": i % 2 == 0,
    }


async def until_members(session: aiohttp.ClientSession, http: str, count: int) -> None:
    for _ in range(600):
        async with session.get(f"{http}/v1/cluster") as response:
            members = (await response.json())["members"]
        if sum(m["state"] in ("self", "alive") for m in members) == count:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the cluster did not form")


async def run(values: int, limit: int, disk: bool) -> dict[str, Any]:
    data = tempfile.mkdtemp(prefix="pydds-bench-")
    a, a_address = await serve("a", "--memory")
    procs = [a]
    try:
        join = a_address
        b, _ = await serve("b", "--memory", "--join", join)
        procs.append(b)
        store = ("--data-dir", data) if disk else ("--memory",)
        c, c_address = await serve("c", "--join", join, "--max-memory", str(limit), *store)
        c_http = f"http://{c_address}"
        procs.append(c)
        async with aiohttp.ClientSession() as session:
            await until_members(session, c_http, 3)
            start_rss = rss(c.pid)
            samples: list[tuple[float, int, int]] = []
            began = time.monotonic()

            async def stats() -> dict[str, Any]:
                async with session.get(f"{c_http}/v1/stats") as response:
                    return dict((await response.json())["memory"])

            async def sample() -> None:
                memory = await stats()
                samples.append((time.monotonic() - began, rss(c.pid) - start_rss, memory["used"]))

            last = 0.0
            ack_timeouts = 0
            for first in range(0, values, BATCH):
                batch = {f"user:{i}": value(i) for i in range(first, min(values, first + BATCH))}
                url = f"{c_http}/v1/databases/users/set-many"
                async with session.post(url, params={"ack": "majority"}, json=batch) as response:
                    if response.status == 504:  # the batch stands, and goes on replicating
                        ack_timeouts += 1
                    elif response.status != 200:
                        raise RuntimeError(f"set-many: {response.status} {await response.text()}")
                if time.monotonic() - last >= 1.0:
                    last = time.monotonic()
                    await sample()
            await sample()
            wrote = time.monotonic() - began
            after_writes = await stats()
            peak = max(growth for _, growth, _ in samples)

            read_began = time.monotonic()
            wrong = read_errors = 0
            for first in range(0, values, BATCH):
                keys = [f"user:{i}" for i in range(first, min(values, first + BATCH))]
                url = f"{c_http}/v1/databases/users/get-many"
                got: dict[str, Any] = {}
                for _ in range(3):  # a pull that timed out on the busy machine: again
                    async with session.post(url, json=keys) as response:
                        if response.status == 200:
                            got = (await response.json())["values"]
                            break
                        read_errors += 1
                wrong += sum(
                    got.get(f"user:{i}") != value(i) for i in range(first, first + len(keys))
                )
                if time.monotonic() - last >= 1.0:
                    last = time.monotonic()
                    await sample()
            read = time.monotonic() - read_began
            await sample()
            end = await stats()
    finally:
        for proc in procs:
            stop(proc)
        for proc in procs:
            await proc.wait()
    result = {
        "values": values,
        "limit_bytes": limit,
        "evict_to": "disk" if disk else "peer",
        "c_rss_start_mb": round(start_rss / 1e6, 1),
        "c_rss_growth_peak_mb": round(peak / 1e6, 1),
        "c_rss_growth_end_mb": round(samples[-1][1] / 1e6, 1),
        "growth_vs_limit": round(peak / limit, 2),
        "held_bytes_after_writes": after_writes["used"],
        "held_values_after_writes": after_writes["held"],
        "held_within_limit": after_writes["used"] <= limit,
        "evicted": end["evicted"],
        "reloaded": end["reloaded"],
        "full": end["full"],
        "writes_per_s": round(values / wrote),
        "reads_per_s": round(values / read),
        "wrong_reads": wrong,
        "ack_timeouts": ack_timeouts,
        "read_errors": read_errors,
        "growth_beside_held_per_key_bytes": round((peak - after_writes["used"]) / values),
        "samples": len(samples),
    }
    plot(samples, limit, result)
    return result


def plot(samples: list[tuple[float, int, int]], limit: int, result: dict[str, Any]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    seconds = [s for s, _, _ in samples]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(seconds, [g / 1e6 for _, g, _ in samples], label="RSS of c minus RSS at start")
    ax.plot(seconds, [u / 1e6 for _, _, u in samples], label="held values (c's estimate)")
    ax.axhline(limit / 1e6, color="grey", linestyle="--", label="--max-memory")
    ax.set_xlabel("seconds (writes, then reads of every key)")
    ax.set_ylabel("MB")
    ax.set_title(
        f"{result['values']:,} distinct values through c, evicting to {result['evict_to']}"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(HERE / "memory-limit.png", dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--values", type=int, default=1_000_000)
    parser.add_argument("--limit", default="100MB")
    parser.add_argument("--disk", action="store_true", help="evict to c's store, not to a")
    args = parser.parse_args()
    result = asyncio.run(run(args.values, parse_bytes(args.limit), args.disk))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
