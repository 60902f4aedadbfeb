"""The checker: replicas waited on until identical, then losses, surprises and counters counted."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .plan import DB, Report
from .processes import NodeProcess
from .workload import CREATE, DELETE, _Write

#: What a key reads as when no node holds its value (503): no value a write made.
UNREADABLE = "<no node holds its value>"


async def _compactions(http: Any, node: NodeProcess) -> int:
    """How many compaction chunks ``node``'s store did since the process started."""
    try:
        async with http.get(f"{node.http}/v1/stats") as response:
            stats = await response.json()
        return int(stats["modules"]["persist"]["compactions"])
    except (OSError, TimeoutError, Exception):
        return 0


async def _tombstones(http: Any, node: NodeProcess) -> int:
    """How many tombstones ``node`` keeps in the chaos database."""
    try:
        async with http.get(f"{node.http}/v1/databases/{DB}") as response:
            return int((await response.json())["tombstones"])
    except (OSError, TimeoutError, Exception):
        return -1


async def _state(
    http: Any, node: NodeProcess, why: list[str] | None = None
) -> dict[str, Any] | None:
    """Every key of the chaos database and its value, read from ``node`` (None: some
    read failed, said in ``why`` when given)."""
    try:
        async with http.get(f"{node.http}/v1/databases/{DB}/keys") as response:
            if response.status != 200:
                if why is not None:
                    why.append(f"{node.name}: keys {response.status}")
                return {}
            keys = await response.json()
        out = {}
        for key in keys:
            async with http.get(f"{node.http}/v1/databases/{DB}/keys/{key}") as response:
                if response.status == 503:  # listed, and no node holds its value
                    out[key] = UNREADABLE  # the same everywhere: checked as lost
                    continue
                if response.status != 200:
                    if why is not None:
                        text = (await response.text())[:120]
                        why.append(f"{node.name}: {key} {response.status} {text}")
                    return None
                out[key] = await response.json()
        return out
    except (OSError, TimeoutError, Exception) as exc:
        if why is not None:
            why.append(f"{node.name}: {type(exc).__name__} {exc!s:.120}")
        return None


async def _converge(
    http: Any, nodes: dict[str, NodeProcess], seconds: float
) -> dict[str, Any] | None:
    """Wait (bounded) until every node holds the same data; that data."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        states = [await _state(http, node) for node in nodes.values()]
        if all(s is not None for s in states) and all(s == states[0] for s in states):
            return states[0]
        await asyncio.sleep(0.2)
    return None


def _check(
    report: Report, writes: list[_Write], state: dict[str, Any], received: dict[str, list[int]]
) -> None:
    report.attempted = len(writes)
    _check_sessions(report, writes, state)
    writes = [w for w in writes if not w.key.startswith("session:")]
    written = {w.item for w in writes if w.item != "+1"}
    present: set[str] = set()
    for key, value in state.items():
        if key.startswith("set:") and isinstance(value, dict):  # not the heal markers
            present |= set(value)
    for write in writes:
        if write.ok:
            report.acknowledged[write.level] = report.acknowledged.get(write.level, 0) + 1
        else:
            report.failed += 1
        if write.ok and write.item != "+1" and write.item not in present:
            report.lost[write.level] = report.lost.get(write.level, 0) + 1
            if len(report.lost_examples) < 10:
                report.lost_examples.append(
                    f"{write.key}/{write.item} via {write.via} ({write.level})"
                )
    report.unexpected += len(present - written)
    by_key: dict[str, list[_Write]] = {}
    for write in writes:
        if write.item == "+1":
            by_key.setdefault(write.key, []).append(write)
    for key, increments in by_key.items():
        acked = sum(1 for w in increments if w.ok)
        maybe = sum(1 for w in increments if w.ok is None)
        final = state.get(key, 0)
        exact = isinstance(final, int) and acked <= final <= acked + maybe
        report.counters[key] = {
            "value": final if isinstance(final, int) else -1,
            "acked": acked,
            "unknown": maybe,
        }
        report.counters_exact = report.counters_exact and exact
    report.events_received = sum(len(ids) for ids in received.values())
    report.events_delivered_twice = sum(len(ids) - len(set(ids)) for ids in received.values())


def _check_sessions(report: Report, writes: list[_Write], state: dict[str, Any]) -> None:
    """Session keys: one created and not deleted (as far as anyone knows) is there
    with its value; one whose delete was acknowledged beyond "local" is not, pruned
    or not (it would be resurrected); nothing else is."""
    created = {w.key: w for w in writes if w.item == CREATE}
    deleted = {w.key: w for w in writes if w.item == DELETE}
    report.sessions["created"] = sum(1 for w in created.values() if w.ok)
    report.sessions["deleted"] = sum(1 for w in deleted.values() if w.ok)
    for key, create in created.items():
        delete = deleted.get(key)
        if create.ok:
            report.acknowledged[create.level] = report.acknowledged.get(create.level, 0) + 1
        else:
            report.failed += 1
        if delete is not None:
            if delete.ok:
                report.acknowledged[delete.level] = report.acknowledged.get(delete.level, 0) + 1
            else:
                report.failed += 1
        if delete is not None and delete.ok and delete.level != "local":
            if key in state:
                report.resurrected += 1
                if len(report.lost_examples) < 10:
                    report.lost_examples.append(f"{key} deleted via {delete.via}, back")
        elif (
            create.ok
            and (delete is None or delete.ok is False)
            and state.get(key) != {"session": key}
        ):
            report.lost[create.level] = report.lost.get(create.level, 0) + 1
            if len(report.lost_examples) < 10:
                report.lost_examples.append(f"{key} via {create.via} ({create.level})")
    report.unexpected += sum(
        1 for key in state if key.startswith("session:") and key not in created
    )
