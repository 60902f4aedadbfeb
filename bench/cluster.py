"""Cluster benchmark: two processes on 127.0.0.1, pydds beside the bare transport.

Prints one JSON object. For 100-byte values, node to node (issue "Cluster"):

* latency of a write on one node -> its change event on the other (p50, p99);
* streamed replicated writes per second;
* custom events streamed per second;
* seconds until a joining node knows a directory of N keys (100,000 by default).

With ``--read-values`` each receiver also reads the value of every change it gets
(pydds from the event, the bare path from its document), as a service would.

The bare path (aiohttp WebSocket + msgpack frames + pycrdt updates, no pydds) is
measured in the same run between the same two kinds of process (its latency writes
take turns with pydds's, so that both meet the same moments of the machine), and
each pydds figure is printed with the bare figure and their ratio. Every process
runs on one event loop: uvloop when installed, as for ``pydds serve``
(``PYDDS_LOOP=asyncio`` for asyncio's own).

    python bench/cluster.py [--writes 60000] [--latency-writes 5000] [--keys 100000]
        [--read-values]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import msgpack

import pydds
import pydds.loops

T = TypeVar("T")

VALUE = {"payload": "x" * 80, "n": 0}  # about 100 bytes packed
# The gap between the writes whose latency is measured: one write at a time. (uvloop's
# timers count whole milliseconds, so a shorter sleep would not pace at all there.)
PACE = 0.001
# Every process of the benchmark runs on this event loop (PYDDS_LOOP: auto, uvloop or
# asyncio; auto is uvloop when installed, as for `pydds serve`).
LOOP = pydds.loops.resolve_loop(os.environ.get("PYDDS_LOOP", "auto"))
#: Receivers read the value of every change they get (``--read-values``).
READ_VALUES = "--read-values" in sys.argv


def run(main: Coroutine[Any, Any, T]) -> T:
    """``main`` on the benchmark's event loop (``LOOP``)."""
    return pydds.run(main, loop=LOOP)


def now_ns() -> int:
    return time.monotonic_ns()  # one clock for every process of this machine


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the receiving process ------------------------------------------------------------


async def node_receiver(port: int, join: str | None, expect: int) -> None:
    node = pydds.Node("receiver", listen=f"127.0.0.1:{port}", join=[join] if join else [])
    times: list[int] = []
    changed = node.events(kinds={"changed", "custom", "created"}, maxsize=1_000_000)
    started_seconds = 0.0
    if join is not None:
        start = now_ns()
        await node.start()
        db = node.database("big")
        async for _ in changed:  # every created event: is the directory complete?
            if len(db) >= expect:
                break
        started_seconds = (now_ns() - start) / 1e9
    async with node:
        if join is not None:  # the join benchmark: time until the directory is complete
            print(json.dumps({"directory_seconds": started_seconds}), flush=True)
            return
        pydds.tune_gc()  # as `pydds serve` does once started
        print(json.dumps({"address": node.address}), flush=True)
        async for event in changed:
            if event.origin == node.name:
                continue  # its own answers
            if event.name == "done":
                await node.emit("results", times)
                times = []
            elif event.name == "hold":
                for key in event.payload:
                    await node.database("bench").get(key)
                await node.emit("held", True)
            elif event.kind == "changed" or event.name == "tick":
                if READ_VALUES and event.kind == "changed":
                    event.value  # noqa: B018 - read, as a service would
                times.append(now_ns())


async def bare_receiver(port: int) -> None:
    from aiohttp import web
    from pycrdt import Doc, Map

    doc = Doc()
    root = doc.get("bench", type=Map)
    times: list[int] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        async for message in ws:
            for item in msgpack.unpackb(message.data):
                if item[0] == "done":
                    await ws.send_bytes(msgpack.packb(times))
                    times.clear()
                else:
                    doc.apply_update(item[1])
                    if READ_VALUES:
                        root[item[2]].to_py()
                    times.append(now_ns())
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    host, bound = runner.addresses[0][:2]
    pydds.tune_gc()  # the collector set up as in the node processes
    print(json.dumps({"address": f"ws://{host}:{bound}/"}), flush=True)
    await asyncio.Event().wait()


# -- the writing process ----------------------------------------------------------------


async def spawn(
    *args: str, script: str = __file__
) -> tuple[asyncio.subprocess.Process, dict[str, Any]]:
    """``script`` (this file by default) as a process in its own process group; its
    first line of output, as JSON."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        script,
        *args,
        *(["--read-values"] if READ_VALUES and script == __file__ else []),
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,
        limit=1 << 26,  # result lines of many timestamps
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 120)
    return proc, json.loads(line)


def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)


# Latency writes per path: a p99 of 2,000 samples is the 20th slowest, and a single
# burst of the VM's noise can decide it; 5,000 samples spread over more of its moods.
LATENCY_WRITES = 5000
# The latency writes go in blocks of this many per path, the paths taking turns: each
# receiver sees writes PACE apart (as it would alone: on a VM a longer idle gap makes
# every wake-up slower), and bursts of the machine's noise fall on both paths alike.
BLOCK = 100
# The first writes of each block wake a receiver that sat idle through the other
# path's block; they are sent and not counted (a run of one path alone has one such
# write in all, not one per block).
WARM = 3


def measured(sent: list[int], received: list[int]) -> list[float]:
    """Latencies in microseconds, without each block's warm-up writes."""
    pairs = zip(sent, received, strict=False)
    return [(r - s) / 1000 for n, (s, r) in enumerate(pairs) if n % BLOCK >= WARM]


async def paths(writes: int, latency_writes: int = LATENCY_WRITES) -> dict[str, float]:
    """pydds and the bare path, each to its own receiving process.

    The latency writes of the two paths take turns in blocks (``BLOCK``), so that
    both meet the same moments of this machine (its noise comes in bursts); the
    streamed measures run one after the other. Keys ``bare_*`` are the bare path's.
    """
    import aiohttp
    from pycrdt import Doc, Map

    node_proc, node_info = await spawn("--role", "node")
    bare_proc, bare_info = await spawn("--role", "bare")
    results: asyncio.Queue[Any] = asyncio.Queue()
    doc = Doc()
    root = doc.get("bench", type=Map)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    try:
        async with (
            pydds.Node("writer", listen="127.0.0.1:0", join=[node_info["address"]]) as node,
            aiohttp.ClientSession() as session,
            session.ws_connect(bare_info["address"]) as ws,
        ):
            pydds.tune_gc()  # as `pydds serve` does once started
            node.on("results", lambda event: results.put_nowait(event.payload))
            node.on("held", lambda event: results.put_nowait(True))
            db = node.database("bench")
            keys = [f"k{i}" for i in range(100)]
            for key in keys:
                await db.set(key, VALUE)
            await asyncio.sleep(0.2)  # the receiver learns the keys
            await node.emit("hold", keys)  # it reads them: it holds them from now on
            await asyncio.wait_for(results.get(), 30)

            sent, bare_sent = [], []
            for i in range(0, latency_writes, BLOCK):  # latency: one write at a time
                for n in range(i, i + BLOCK):
                    sent.append(now_ns())
                    await db.set(keys[n % 100], {"payload": "x" * 80, "n": n})
                    await asyncio.sleep(PACE)
                for n in range(i, i + BLOCK):
                    bare_sent.append(now_ns())
                    root[f"k{n % 100}"] = Map({"payload": "x" * 80, "n": n})
                    await ws.send_bytes(msgpack.packb([["u", updates.pop(), f"k{n % 100}"]]))
                    await asyncio.sleep(PACE)
            await node.emit("done", None)
            received = await asyncio.wait_for(results.get(), 60)
            latencies = measured(sent, received)
            await ws.send_bytes(msgpack.packb([["done"]]))
            received = msgpack.unpackb((await ws.receive()).data)
            bare_latencies = measured(bare_sent, received)

            start = now_ns()  # throughput: writes as fast as they go
            for i in range(writes):
                await db.set(keys[i % 100], {"payload": "x" * 80, "n": i})
            await node.emit("done", None)
            received = await asyncio.wait_for(results.get(), 120)
            write_rate = len(received) / ((received[-1] - start) / 1e9)

            start = now_ns()  # custom events
            for i in range(writes):
                await node.emit("tick", i)
            await node.emit("done", None)
            received = await asyncio.wait_for(results.get(), 120)
            event_rate = len(received) / ((received[-1] - start) / 1e9)

            start = now_ns()  # the bare path streamed: 100 updates a frame
            batch: list[list[Any]] = []
            for i in range(writes):
                root[f"k{i % 100}"] = Map({"payload": "x" * 80, "n": i})
                batch.append(["u", updates.pop(), f"k{i % 100}"])
                if len(batch) == 100:
                    await ws.send_bytes(msgpack.packb(batch))
                    batch = []
            await ws.send_bytes(msgpack.packb([*batch, ["done"]]))
            received = msgpack.unpackb((await ws.receive()).data)
            bare_rate = len(received) / ((received[-1] - start) / 1e9)
        return {
            "latency_p50_us": percentile(latencies, 0.5),
            "latency_p99_us": percentile(latencies, 0.99),
            "writes_per_s": write_rate,
            "custom_events_per_s": event_rate,
            "bare_latency_p50_us": percentile(bare_latencies, 0.5),
            "bare_latency_p99_us": percentile(bare_latencies, 0.99),
            "bare_writes_per_s": bare_rate,
        }
    finally:
        for proc in (node_proc, bare_proc):
            stop(proc)
            await proc.wait()


async def join_path(keys: int) -> float:
    async with pydds.Node("big", listen="127.0.0.1:0") as node:
        db = node.database("big")
        for i in range(keys):
            await db.set(f"key:{i}", i)
        proc, info = await spawn(
            "--role", "node", "--join", node.address or "", "--expect", str(keys)
        )
        stop(proc)
        await proc.wait()
        return float(info["directory_seconds"])


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", choices=["node", "bare"], default=None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--join", default=None)
    parser.add_argument("--expect", type=int, default=0)
    parser.add_argument("--writes", type=int, default=60_000)
    parser.add_argument("--latency-writes", type=int, default=LATENCY_WRITES)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--read-values", action="store_true")
    args = parser.parse_args()
    if args.role == "node":
        await node_receiver(args.port, args.join, args.expect)
        return
    if args.role == "bare":
        await bare_receiver(args.port)
        return
    measured = await paths(args.writes, args.latency_writes)
    join_seconds = await join_path(args.keys)
    result: dict[str, Any] = {
        "value_bytes": len(msgpack.packb(VALUE)),
        "writes": args.writes,
        "latency_writes": args.latency_writes,
        "loop": LOOP,
        "read_values": READ_VALUES,
    }
    for name in ("latency_p50_us", "latency_p99_us", "writes_per_s"):
        result[name] = {
            "pydds": round(measured[name], 1),
            "bare": round(measured[f"bare_{name}"], 1),
            "ratio": round(measured[name] / measured[f"bare_{name}"], 2),
        }
    result["custom_events_per_s"] = {
        "pydds": round(measured["custom_events_per_s"]),
        "bare_writes_per_s": round(measured["bare_writes_per_s"]),
        "ratio": round(measured["custom_events_per_s"] / measured["bare_writes_per_s"], 2),
    }
    result["join_directory_seconds"] = {"keys": args.keys, "pydds": round(join_seconds, 3)}
    result["targets"] = {
        "latency_p50_us": 200,
        "latency_p99_us": 300,
        "writes_per_s": 100_000,
        "custom_events_per_s": 100_000,
        "join_directory_seconds": 1.0,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    run(main())
