"""A cluster of many ``pydds serve`` processes on this machine: how long it takes to
form, majority writes spread over it, and what it costs when idle.

N processes on 127.0.0.1 (``--memory``), started as the README starts a cluster: the
first with no ``--join``, every other joining the first (one seed). Measured:

- the seconds from the first start until every node lists N alive members;
- ``--writes`` writes with ``ack=majority``, each to a random node over HTTP, to
  ``--keys`` keys; then every key read from every node: all must be identical
  (the JSON says how many differ, and how many writes timed out);
- RSS per node (min, median, max), and the CPU the whole cluster takes idle
  (heartbeats, anti-entropy) over ``--idle`` seconds, as a share of one core.

Prints one JSON object.

    python bench/membership.py [--nodes 32] [--writes 500] [--keys 100] [--idle 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import time
from typing import Any

import aiohttp

from processes import rss, serve, stop

#: Clock ticks a second, for /proc/PID/stat.
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds process ``pid`` used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def alive(session: aiohttp.ClientSession, node: str) -> int:
    async with session.get(f"http://{node}/v1/cluster") as response:
        members = (await response.json())["members"]
    return sum(m["state"] in ("self", "alive") for m in members)


async def run(nodes: int, writes: int, keys: int, idle: float) -> dict[str, Any]:
    procs: list[asyncio.subprocess.Process] = []
    addresses: list[str] = []
    began = time.monotonic()
    try:
        first, seed = await serve("m00", "--memory")
        procs.append(first)
        addresses.append(seed)
        started = await asyncio.gather(
            *(serve(f"m{i:02}", "--memory", "--join", seed) for i in range(1, nodes))
        )
        for proc, address in started:
            procs.append(proc)
            addresses.append(address)
        all_started = time.monotonic() - began
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            formed = None
            for _ in range(1200):  # bounded: 120 s
                counts = await asyncio.gather(*(alive(session, a) for a in addresses))
                if all(c == nodes for c in counts):
                    formed = time.monotonic() - began
                    break
                await asyncio.sleep(0.1)  # other processes: nothing to await here
            if formed is None:
                raise RuntimeError(f"not every node lists {nodes} alive members: {counts}")
            rng = random.Random(1)
            timeouts = 0
            write_began = time.monotonic()

            async def write(i: int) -> None:
                nonlocal timeouts
                node = rng.choice(addresses)
                url = f"http://{node}/v1/databases/bench/keys/k{i % keys}?ack=majority"
                async with session.put(url, json={"i": i, "by": node}) as response:
                    if response.status == 504:
                        timeouts += 1
                    elif response.status not in (200, 201):
                        raise RuntimeError(f"write {i}: {response.status} {await response.text()}")

            for start in range(0, writes, 10):  # ten at a time
                await asyncio.gather(*(write(i) for i in range(start, min(writes, start + 10))))
            write_seconds = time.monotonic() - write_began
            wanted = [f"k{i}" for i in range(min(keys, writes))]

            async def read(node: str) -> dict[str, Any]:
                url = f"http://{node}/v1/databases/bench/get-many"
                async with session.post(url, json=wanted) as response:
                    return dict((await response.json())["values"])

            converged = None
            differing = -1
            for _ in range(300):  # bounded: 30 s
                seen = await asyncio.gather(*(read(a) for a in addresses))
                differing = sum(1 for s in seen if s != seen[0])
                if differing == 0 and len(seen[0]) == len(wanted):
                    converged = time.monotonic() - write_began - write_seconds
                    break
                await asyncio.sleep(0.1)
            sizes = [rss(p.pid) for p in procs]
            before = sum(cpu_seconds(p.pid) for p in procs)
            idle_began = time.monotonic()
            await asyncio.sleep(idle)  # idle: what the cluster does by itself
            idle_cpu = sum(cpu_seconds(p.pid) for p in procs) - before
            idle_wall = time.monotonic() - idle_began
    finally:
        for proc in procs:
            stop(proc)
        for proc in procs:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 20)
    return {
        "nodes": nodes,
        "all_started_s": round(all_started, 2),
        "formed_s": round(formed, 2),
        "writes": writes,
        "keys": keys,
        "write_s": round(write_seconds, 2),
        "majority_writes_per_s": round(writes / write_seconds, 1),
        "ack_timeouts": timeouts,
        "nodes_differing": differing,
        "identical_after_s": None if converged is None else round(converged, 2),
        "rss_mb": {
            "min": round(min(sizes) / 1e6, 1),
            "median": round(statistics.median(sizes) / 1e6, 1),
            "max": round(max(sizes) / 1e6, 1),
        },
        "idle_cpu_cores": round(idle_cpu / idle_wall, 3),
        "idle_cpu_per_node_pct": round(100 * idle_cpu / idle_wall / nodes, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=32)
    parser.add_argument("--writes", type=int, default=500)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.nodes, args.writes, args.keys, args.idle))))


if __name__ == "__main__":
    main()
