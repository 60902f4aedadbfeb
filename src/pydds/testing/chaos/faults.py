"""The faults: partitions, one-way drops, delays, kills, pauses and graceful leaves
followed by a rejoin, spread over the run."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from typing import Any

from .plan import DB, Plan, Report
from .processes import NodeProcess
from .proxy import Network


async def _faults(
    net: Network,
    nodes: dict[str, NodeProcess],
    rng: random.Random,
    plan: Plan,
    report: Report,
    http: Any,
) -> None:
    """Spread the planned faults over the run, one at a time, each healed after."""
    names = sorted(nodes)
    faults = ["partition"] * plan.partitions + ["kill"] * plan.kills + ["pause"] * plan.pauses
    faults += ["leave"] * plan.leaves
    rng.shuffle(faults)
    slot = plan.seconds / (len(faults) + 1)
    started = time.monotonic()
    for i, kind in enumerate(faults):
        await asyncio.sleep(max(0.0, started + slot * (i + 0.5) - time.monotonic()))
        length = min(slot * 0.8, rng.uniform(1.0, 4.0))
        if kind == "partition":
            victim = rng.choice(names)
            style = rng.choice(["isolate", "split", "one-way", "delay"])
            if style == "isolate":
                net.partition({victim}, set(names) - {victim})
            elif style == "split" and len(names) > 2:
                shuffled = names[:]
                rng.shuffle(shuffled)
                half = len(names) // 2
                net.partition(set(shuffled[:half]), set(shuffled[half:]))
            elif style == "one-way":
                other = rng.choice([n for n in names if n != victim])
                net.drop.add((victim, other))
            else:
                other = rng.choice([n for n in names if n != victim])
                net.delay[frozenset((victim, other))] = rng.uniform(0.05, 0.3)
            report.faults.append(f"partition {style} {victim} {length:.1f}s")
            await asyncio.sleep(length)
            marker = f"heal:{i}"
            written = set()
            for side in (victim, rng.choice([n for n in names if n != victim])):
                # A write on each side, made while they are apart (one that failed
                # is not waited for).
                with contextlib.suppress(Exception):
                    async with http.patch(
                        f"{nodes[side].http}/v1/databases/{DB}/keys/{marker}", json={side: True}
                    ) as response:
                        if response.status in (200, 201):
                            written.add(side)
            net.heal()
            report.heal_seconds.append(await _spread(http, nodes, marker, written))
        elif kind == "kill":
            node = nodes[rng.choice(names)]
            await node.kill()
            report.faults.append(f"kill {node.name}")
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            await node.start(net.owners)
        elif kind == "leave":
            # SIGTERM: the node says it leaves and its peers stop counting it; it
            # joins again, from its data directory, as a new member.
            node = nodes[rng.choice(names)]
            await node.stop()
            report.faults.append(f"leave {node.name} {length:.1f}s")
            await asyncio.sleep(length)
            await node.start(net.owners)
        else:
            node = nodes[rng.choice(names)]
            pause = min(length * 2, rng.uniform(2.0, 8.0), slot)
            node.signal(signal.SIGSTOP)
            node.paused = True
            report.faults.append(f"pause {node.name} {pause:.1f}s")
            await asyncio.sleep(pause)
            node.signal(signal.SIGCONT)
            node.paused = False
    await asyncio.sleep(max(0.0, started + plan.seconds - time.monotonic()))


async def _spread(
    http: Any, nodes: dict[str, NodeProcess], key: str, fields: set[str]
) -> float | None:
    """Seconds until every node reads ``key`` with all of ``fields`` (None: not in 30 s)."""
    start = time.monotonic()
    while time.monotonic() - start < 30:
        done = True
        for node in nodes.values():
            try:
                async with http.get(f"{node.http}/v1/databases/{DB}/keys/{key}") as response:
                    value = await response.json() if response.status == 200 else {}
            except Exception:
                value = {}
            if not isinstance(value, dict) or not fields <= set(value):
                done = False
                break
        if done:
            return round(time.monotonic() - start, 3)
        await asyncio.sleep(0.02)
    return None
