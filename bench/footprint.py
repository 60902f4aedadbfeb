"""Footprint benchmark: what memory, disk and anti-entropy cost against live data.

Prints one JSON object. Targets (issue "A footprint bounded by live data"):

* ``sets``: 1,000,000 whole-value sets of a 5-field dict over 100 keys, on an
  embedded node with the persistence module: RSS growth at most 10 MB over the same
  100 keys written once; the store file after compaction at most 2x the compacted
  size of the live data alone (a store holding only the 100 final values).
* ``anti_entropy``: an idle 3-node cluster (in memory, fake clock) where every node
  holds 100,000 values: CPU time and bytes of one anti-entropy period (30 s of the
  fake clock, heartbeats included).
* ``sessions``: 1,000,000 keys created and deleted on a 3-node cluster (in memory,
  fake clock), none live at the end but one: once the horizon has passed and they are
  pruned, each node's RSS within 20 MB of what it was fresh, and a fourth node
  joining receives under 10 KB.
* ``join``: a node joining one that has a directory of 100,000 keys (in memory):
  seconds until its first key is usable, and until it knows the whole directory;
  the bytes it received (``--join-keys 1000000`` for the larger case). The
  collector is set up as ``pydds serve`` sets it (``pydds.tune_gc()``).

    python bench/footprint.py [--sets 1000000] [--keys 100000] [--join-keys 100000]
        [--sessions 1000000] [--only sets|anti_entropy|join|sessions]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pydds
from pydds.clock import FakeClock
from pydds.modules.persist import Persistence
from pydds.net.memory import MemoryNetwork
from pydds.storage import FILE_NAME

KEYS = 100


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def value(i: int) -> dict[str, Any]:
    return {"n": i, "name": "user", "tags": ["a", "b"], "score": 1.5, "ok": True}


def store_bytes(directory: Path) -> int:
    return sum(
        (directory / name).stat().st_size
        for name in (FILE_NAME, f"{FILE_NAME}-wal")
        if (directory / name).exists()
    )


async def written(directory: Path, sets: int, event_log: bool = True) -> dict[str, float]:
    """``sets`` writes over ``KEYS`` keys; RSS and store bytes after compaction.
    Without ``event_log``, the node keeps no log of its events (a bounded buffer of
    its own: 64 MiB of records by default, about 110 MB of RSS when full)."""
    store = Persistence(path=str(directory))
    limits = pydds.Limits() if event_log else pydds.Limits(event_log=0)
    async with pydds.Node("bench", modules=[store], limits=limits) as node:
        db = node.database("db")
        for i in range(KEYS):
            await db.set(f"k{i}", value(i))
        await store.compact()
        gc.collect()
        base = rss()
        start = time.perf_counter()
        for i in range(KEYS, sets):
            # Every 1,000th write waits for its commit, as a service's would: the
            # writes in between never yield, and the log's queue would only grow.
            ack = "durable" if i % 1000 == 0 else "local"
            await db.set(f"k{i % KEYS}", value(i), ack=ack)
        seconds = time.perf_counter() - start
        await store.compact()
        gc.collect()
        return {
            "rss_growth_bytes": rss() - base,
            "store_bytes": store_bytes(directory),
            "sets_per_s": round((sets - KEYS) / seconds),
        }


async def bench_sets(sets: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as many, tempfile.TemporaryDirectory() as once:
        result = await written(Path(many), sets)
        live = await written(Path(once), KEYS)
    with tempfile.TemporaryDirectory() as bare:
        unlogged = await written(Path(bare), sets, event_log=False)
    return {
        "sets": sets,
        "keys": KEYS,
        "rss_growth_mb": round(result["rss_growth_bytes"] / 1e6, 1),
        "rss_growth_mb_without_event_log": round(unlogged["rss_growth_bytes"] / 1e6, 1),
        "sets_per_s": result["sets_per_s"],
        "store_bytes_compacted": result["store_bytes"],
        "live_data_store_bytes_compacted": live["store_bytes"],
        "store_ratio": round(result["store_bytes"] / live["store_bytes"], 2),
    }


def mem_node(
    network: MemoryNetwork,
    clock: FakeClock,
    name: str,
    join: list[str],
    limits: pydds.Limits | None = None,
) -> pydds.Node:
    """A node listening at ``mem://name`` on ``network``, on ``clock``."""
    return pydds.Node(
        name,
        listen=f"mem://{name}",
        join=join,
        transport=network.transport(),
        clock=clock,
        limits=limits,
    )


async def three(
    network: MemoryNetwork, clock: FakeClock, limits: pydds.Limits | None = None
) -> tuple[pydds.Node, pydds.Node, pydds.Node]:
    """Nodes a, b and c (b and c joined through a) on ``network``, started."""
    a = mem_node(network, clock, "a", [], limits)
    b = mem_node(network, clock, "b", ["mem://a"], limits)
    c = mem_node(network, clock, "c", ["mem://a"], limits)
    for n in (a, b, c):
        await n.start()
    return a, b, c


async def bench_anti_entropy(keys: int) -> dict[str, float]:
    network, clock = MemoryNetwork(), FakeClock()
    a, b, c = await three(network, clock)
    try:
        await clock.advance(1)
        db = a.database("db")
        for i in range(keys):
            await db.set(f"k{i}", value(i))
        for reader in (b, c):
            rdb = reader.database("db")
            for i in range(keys):
                await rdb.get(f"k{i}")
        await clock.advance(31)  # the first period after the writes, not measured
        held = [n.database("db").keyspace.counts()[1] for n in (a, b, c)]
        before = [n.traffic_total() for n in (a, b, c)]
        cpu = time.process_time()
        await clock.advance(30, step=1.0)
        for _ in range(200):  # let the answers finish
            await asyncio.sleep(0)
        cpu = time.process_time() - cpu
        after = [n.traffic_total() for n in (a, b, c)]
    finally:
        for n in (c, b, a):
            await n.close()
    sent = sum(x.bytes_out - y.bytes_out for x, y in zip(after, before, strict=True))
    messages = sum(x.messages_out - y.messages_out for x, y in zip(after, before, strict=True))
    return {
        "held_values_per_node": min(held),
        "period_cpu_s": round(cpu, 3),
        "period_bytes_sent": sent,
        "period_messages_sent": messages,
    }


async def _quiet(clock: FakeClock) -> None:
    """Let what is in flight between the in-memory nodes arrive (bounded)."""
    for _ in range(50):
        await clock.advance(0.1)


async def bench_sessions(keys: int) -> dict[str, float]:
    """``keys`` session keys created and deleted on a 3-node cluster (in memory, fake
    clock), pruned after the horizon: the memory left, and what a fourth node joining
    then receives."""
    network, clock = MemoryNetwork(), FakeClock()
    # Without the event log: it keeps an hour of events (and 64 MiB at most), by the
    # real clock, which this fake clock does not move; by the default horizon (six
    # hours) the events of the creates and deletes have left it.
    horizon = 600.0
    limits = pydds.Limits(tombstone_horizon=horizon, event_log=0)
    a, b, c = await three(network, clock, limits)
    try:
        await clock.advance(1)
        db = a.database("sessions")
        await db.set("live", 1)
        await _quiet(clock)
        gc.collect()
        fresh = rss()
        start = time.perf_counter()
        batch = 1000
        for first in range(0, keys, batch):
            await db.set_many({f"session:{i}": {"user": i} for i in range(first, first + batch)})
            await clock.advance(0)
        await _quiet(clock)
        created_s = time.perf_counter() - start
        gc.collect()
        peak = rss()
        held = [len(n.database("sessions")) for n in (a, b, c)]
        for first in range(0, keys, batch):
            await db.delete_many(f"session:{i}" for i in range(first, first + batch))
            await clock.advance(0)
        await _quiet(clock)
        tombstones = [len(n.database("sessions").keyspace.directory) - 1 for n in (a, b, c)]
        await clock.advance(horizon + 61, step=1.0)  # past the horizon: pruned
        gc.collect()
        pruned = rss()
        left = [len(n.database("sessions").keyspace.directory) for n in (a, b, c)]
        d = mem_node(network, clock, "d", ["mem://a"], limits)
        await d.start()
        for _ in range(100):
            if "live" in d.database("sessions"):
                break
            await clock.advance(0.1)
        received = d.traffic_total().bytes_in
        await d.close()
    finally:
        for n in (c, b, a):
            await n.close()
    return {
        "keys": keys,
        "created_and_replicated_s": round(created_s, 1),
        "keys_per_node_at_peak": min(held),
        "rss_growth_at_peak_mb": round((peak - fresh) / 1e6, 1),
        "tombstones_per_node_before_the_horizon": min(tombstones),
        "directory_entries_per_node_after": max(left),
        "rss_growth_after_prune_mb_3_nodes": round((pruned - fresh) / 1e6, 1),
        "rss_growth_after_prune_mb_per_node": round((pruned - fresh) / 3e6, 1),
        "fourth_node_received_bytes": received,
    }


async def bench_join(keys: int) -> dict[str, Any]:
    """A node joining ``keys`` keys, twice over the same seed: with no subscriber
    (the join alone: the first key and the whole directory found by looking), and
    with a subscriber of every ``created`` event, read in batches as a consumer of
    a million events would."""
    network = MemoryNetwork()
    a = pydds.Node("a", listen="mem://a", transport=network.transport())
    await a.start()
    out: dict[str, Any] = {"keys": keys}
    try:
        db = a.database("big")
        for i in range(keys):
            await db.set(f"key:{i}", i)
        pydds.tune_gc()  # as ``pydds serve`` does once started
        for name, subscribed in (("b", False), ("c", True)):
            joiner = pydds.Node(
                name, listen=f"mem://{name}", join=["mem://a"], transport=network.transport()
            )
            first: float | None = None
            start = time.perf_counter()
            created = joiner.events(kinds={"created"}, maxsize=keys + 10) if subscribed else None
            await joiner.start()
            jdb = joiner.database("big")
            seen = 0
            while len(jdb) < keys:  # a benchmark may look: nothing in a test does this
                if created is not None:
                    seen += len(created.ready(10_000))
                if first is None and len(jdb):
                    first = time.perf_counter() - start
                await asyncio.sleep(0)
            whole = time.perf_counter() - start
            label = "with_subscriber" if subscribed else "alone"
            out[label] = {
                "first_key_s": round(first or whole, 3),
                "whole_directory_s": round(whole, 3),
                "bytes_received": joiner.traffic_total().bytes_in,
            }
            if created is not None:
                created.close()
            await joiner.close()
    finally:
        await a.close()
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--join-keys", type=int, default=100_000)
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--only", choices=("sets", "anti_entropy", "join", "sessions"))
    args = parser.parse_args()
    out: dict[str, Any] = {}
    if args.only in (None, "sets"):
        out["sets"] = await bench_sets(args.sets)
    if args.only in (None, "anti_entropy"):
        out["anti_entropy"] = await bench_anti_entropy(args.keys)
    if args.only in (None, "join"):
        out["join"] = await bench_join(args.join_keys)
    if args.only in (None, "sessions"):
        out["sessions"] = await bench_sessions(args.sessions)
    out["targets"] = {
        "sets_rss_growth_mb": 10,
        "store_ratio": 2.0,
        "join_1m_whole_s": 3.0,
        "sessions_rss_after_prune_mb_per_node": 20,
        "sessions_fourth_node_received_bytes": 10_000,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
