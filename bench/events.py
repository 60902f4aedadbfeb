"""The event log's cost and speed, on one embedded node.

Prints one JSON object:

* custom events emitted per second to a subscriber, with the log on (the default)
  and off (``Limits(event_log=0)``), and the cost of the log as a fraction;
* the same for ``set`` (each makes a data event);
* replay: events per second a subscription reads back from ``since=0``;
* the log's bytes per event (its estimate).

    python bench/events.py [--events 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import pydds


def rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def emit_rate(events: int, log: bool) -> float:
    limits = pydds.Limits(event_log=1_000_000 if log else 0, event_queue=events + 10)
    async with pydds.Node("bench", limits=limits) as node:
        subscription = node.events(kinds=["custom"])
        began = time.perf_counter()
        for i in range(events):
            await node.emit("tick", i)
        subscription.ready(events)
        return events / (time.perf_counter() - began)


async def set_rate(events: int, log: bool) -> float:
    limits = pydds.Limits(event_log=1_000_000 if log else 0, event_queue=events + 10)
    async with pydds.Node("bench", limits=limits) as node:
        db = node.database("db")
        subscription = node.events(database="db")
        began = time.perf_counter()
        for i in range(events):
            await db.set(f"k{i % 1000}", i)
        subscription.ready(events)
        return events / (time.perf_counter() - began)


async def replay(events: int) -> dict[str, Any]:
    limits = pydds.Limits(event_queue=10)
    async with pydds.Node("bench", limits=limits) as node:
        for i in range(events):
            await node.emit("tick", {"n": i, "name": "x" * 20})
        log = node.event_log
        assert log is not None
        began = time.perf_counter()
        read = 0
        async with node.events(since=0, maxsize=10) as subscription:
            while read < events:
                read += len(subscription.ready(10_000))
        seconds = time.perf_counter() - began
        return {
            "replay_events_per_s": round(events / seconds),
            "log_bytes_per_event_estimate": round(log.used / len(log)),
        }


async def main(events: int) -> dict[str, Any]:
    out: dict[str, Any] = {"events": events}
    # Alternate the two, twice, and keep each one's best (the VM is noisy).
    for name, measure in (("emit", emit_rate), ("set", set_rate)):
        on = max([await measure(events, True) for _ in range(2)])
        off = max([await measure(events, False) for _ in range(2)])
        out[f"{name}_per_s_log_on"] = round(on)
        out[f"{name}_per_s_log_off"] = round(off)
        out[f"{name}_log_cost"] = round(1 - on / off, 3)
    out.update(await replay(events))
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    print(json.dumps(asyncio.run(main(parser.parse_args().events))))
