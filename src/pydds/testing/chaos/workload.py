"""The workload: paced writes and events, each outcome recorded, and the event receivers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from dataclasses import dataclass
from typing import Any

from .plan import DB, LEVELS, Plan, Report
from .processes import NodeProcess

#: The items of a session key's two writes.
CREATE, DELETE = "create", "delete"


@dataclass
class _Write:
    via: str
    key: str
    item: str  # the unique field, "+1" for a counter, CREATE or DELETE for a session
    level: str
    ok: bool | None = None  # True acknowledged, False refused, None unknown (timed out)


async def _listen(
    http: Any,
    nodes: dict[str, NodeProcess],
    name: str,
    received: dict[str, list[int]],
    stop: asyncio.Event,
) -> None:
    """Receive custom events from one node's stream; a new stream after each restart
    is a new receiver (events are not stored, so none is redelivered)."""
    generation = 0
    while not stop.is_set():
        generation += 1
        receiver = f"{name}#{generation}"
        seen = received.setdefault(receiver, [])
        with contextlib.suppress(Exception):
            async with http.get(
                f"{nodes[name].http}/v1/events",
                params={"kinds": "custom"},
                timeout=_stream_timeout(),
            ) as response:
                async for line in response.content:
                    if line.startswith(b"data:"):
                        seen.append(json.loads(line[5:])["payload"]["id"])
                    if stop.is_set():
                        return
        await asyncio.sleep(0.2)


def _stream_timeout() -> Any:
    import aiohttp

    return aiohttp.ClientTimeout(total=None, sock_read=None)


async def _writer(
    http: Any,
    nodes: dict[str, NodeProcess],
    client: Any,
    rng: random.Random,
    counter: Any,
    writes: list[_Write],
    plan: Plan,
    rate: float,
    stop: asyncio.Event,
    report: Report,
) -> None:
    import pydds

    names = sorted(nodes)
    next_at = time.monotonic()
    sessions: list[str] = []  # this writer's session keys created and not yet deleted
    while not stop.is_set():
        # Paced: the next write is due an exponential gap after the last one was due,
        # so slow writes (ack waits) do not lower the rate.
        next_at += rng.expovariate(rate) if rate > 0 else 0.01
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        if stop.is_set():
            return
        n = next(counter)
        level = rng.choice(LEVELS)
        roll = rng.random()
        via = client.name if client is not None else rng.choice(names)
        if roll < 0.1:  # a custom event
            report.events_sent += 1
            with contextlib.suppress(Exception):
                await http.post(f"{nodes[rng.choice(names)].http}/v1/events/chaos", json={"id": n})
        elif roll < 0.2:  # a session: created, and later deleted by the same writer
            if sessions and rng.random() < 0.6:
                write = _Write(via, sessions.pop(rng.randrange(len(sessions))), DELETE, level)
            else:
                write = _Write(via, f"session:{n}", CREATE, level)
                sessions.append(write.key)
            writes.append(write)
            await _attempt(write, http, nodes, client, report, pydds)
        elif roll < 0.4:
            write = _Write(via, f"counter:{rng.randrange(plan.counters)}", "+1", level)
            writes.append(write)
            await _attempt(write, http, nodes, client, report, pydds)
        else:
            write = _Write(via, f"set:{rng.randrange(plan.keys)}", f"w{n}", level)
            writes.append(write)
            await _attempt(write, http, nodes, client, report, pydds)


async def _attempt(
    write: _Write,
    http: Any,
    nodes: dict[str, NodeProcess],
    client: Any,
    report: Report,
    pydds: Any,
) -> None:
    ack = write.level if client is None or "durable" not in write.level else "majority"
    write.level = ack
    try:
        if client is not None:
            db = client.database(DB)
            if write.item == "+1":
                await asyncio.wait_for(db.incr(write.key, 1, ack=ack), 10)
            elif write.item == CREATE:
                await asyncio.wait_for(db.set(write.key, {"session": write.key}, ack=ack), 10)
            elif write.item == DELETE:
                await asyncio.wait_for(db.delete(write.key, ack=ack), 10)
            else:
                await asyncio.wait_for(db.update(write.key, {write.item: True}, ack=ack), 10)
            write.ok = True
            return
        base = f"{nodes[write.via].http}/v1/databases/{DB}/keys/{write.key}"
        if write.item == "+1":
            response = await http.post(f"{base}/incr", params={"ack": ack})
        elif write.item == CREATE:
            response = await http.put(base, json={"session": write.key}, params={"ack": ack})
        elif write.item == DELETE:
            response = await http.delete(base, params={"ack": ack})
        else:
            response = await http.patch(base, json={write.item: True}, params={"ack": ack})
        async with response:
            write.ok = response.status in (200, 201) or None
            if write.ok is None:
                report.errors[str(response.status)] = report.errors.get(str(response.status), 0) + 1
    except (pydds.PyddsError, TimeoutError, OSError, Exception) as exc:  # outcome unknown
        name = type(exc).__name__
        report.errors[name] = report.errors.get(name, 0) + 1
        write.ok = None
