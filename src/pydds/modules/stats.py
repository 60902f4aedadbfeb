"""Statistics: event counts per database and kind, hot keys by reads and by writes
over a sliding window, and replication traffic.

Readable from Python (``Statistics.snapshot()``), in ``GET /metrics``
(``pydds_db_events_total``, ``pydds_hot_key_reads``, ``pydds_hot_key_writes``) and
``GET /v1/stats``, and shown by ``pydds status``.

The window is ``window`` seconds in 12 buckets; a key's count is the sum over the
buckets still in the window (so the window slides by a twelfth). Memory is
bounded: a bucket tracks at most ``max_keys`` distinct keys; reads and writes of
other keys in that bucket are counted as ``untracked``. Writes are the changes this
node sees (local or from peers); reads are ``get`` calls on this node.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..events import Event, EventKind
from .base import EventFilter, Module

if TYPE_CHECKING:
    from ..node import Node

__all__ = ["SlidingCounts", "Statistics"]

_WRITES = {EventKind.CREATED, EventKind.CHANGED, EventKind.DELETED}
BUCKETS = 12


class SlidingCounts:
    """Counts of keys over a sliding window of time, bounded in memory."""

    def __init__(self, window: float, max_keys: int, now: Callable[[], float]) -> None:
        self.window = window
        self.max_keys = max_keys
        self.untracked = 0  # counts dropped because a bucket was full
        self._width = window / BUCKETS
        self._now = now
        self._buckets: deque[tuple[int, Counter[tuple[str, str]]]] = deque()

    def add(self, item: tuple[str, str]) -> None:
        """Count ``item`` once, now."""
        slot = int(self._now() // self._width)
        buckets = self._buckets
        if not buckets or buckets[-1][0] != slot:
            buckets.append((slot, Counter()))
            while buckets[0][0] <= slot - BUCKETS:
                buckets.popleft()
        counts = buckets[-1][1]
        if item in counts or len(counts) < self.max_keys:
            counts[item] += 1
        else:
            self.untracked += 1

    def top(self, n: int) -> list[tuple[str, str, int]]:
        """The ``n`` items counted most within the window: (database, key, count)."""
        slot = int(self._now() // self._width)
        total: Counter[tuple[str, str]] = Counter()
        for start, counts in self._buckets:
            if start > slot - BUCKETS:
                total.update(counts)
        return [(db, key, count) for (db, key), count in total.most_common(n)]


class Statistics(Module):
    """Counts what happens on its node (see the module docstring).

    Example::

        stats = Statistics(window=60, top=10)
        async with pydds.Node(modules=[stats]) as node:
            ...
            stats.snapshot()["hot_writes"]   # [{"database": ..., "key": ..., "count": n}]

    Args:
        window: seconds of the sliding window of hot keys.
        top: how many hot keys to report.
        max_keys: distinct keys tracked per twelfth of the window, at most.
    """

    name = "stats"
    events = EventFilter()  # every event

    def __init__(
        self, window: float | str = 60.0, top: int | str = 10, max_keys: int | str = 10_000
    ) -> None:
        self.window = float(window)
        self.top = int(top)
        self.max_keys = int(max_keys)
        if self.window <= 0 or self.top < 1 or self.max_keys < 1:
            raise ValueError("window must be > 0, top and max_keys >= 1")
        self.events_by_database: Counter[tuple[str, str]] = Counter()  # (database, kind)
        self._node: Node | None = None
        self._reads: SlidingCounts | None = None
        self._writes: SlidingCounts | None = None
        self._unlisten: Callable[[], None] | None = None

    async def start(self, node: Node) -> None:
        self._node = node
        self._reads = SlidingCounts(self.window, self.max_keys, node.clock.now)
        self._writes = SlidingCounts(self.window, self.max_keys, node.clock.now)
        reads = self._reads

        def read(database: str, key: str) -> None:
            reads.add((database, key))

        self._unlisten = node.add_read_listener(read)

    async def on_event(self, event: Event) -> None:
        self.events_by_database[(event.database or "", event.kind.value)] += 1
        if event.kind in _WRITES and self._writes is not None:
            assert event.database is not None
            assert event.key is not None
            self._writes.add((event.database, event.key))

    async def stop(self) -> None:
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None

    def snapshot(self) -> dict[str, Any]:
        """Everything counted, as JSON-ready data."""
        events: dict[str, dict[str, int]] = {}
        for (database, kind), count in sorted(self.events_by_database.items()):
            events.setdefault(database, {})[kind] = count
        out: dict[str, Any] = {"window": self.window, "events": events}
        for name, counts in (("hot_reads", self._reads), ("hot_writes", self._writes)):
            top = counts.top(self.top) if counts is not None else []
            out[name] = [{"database": db, "key": key, "count": n} for db, key, n in top]
        out["untracked"] = sum(c.untracked for c in (self._reads, self._writes) if c)
        t = self._node.traffic_total() if self._node is not None else None
        out["replication"] = {
            "bytes_in": t.bytes_in if t else 0,
            "bytes_out": t.bytes_out if t else 0,
            "messages_in": t.messages_in if t else 0,
            "messages_out": t.messages_out if t else 0,
        }
        return out

    def collect_metrics(self) -> Iterator[Metric]:
        """Prometheus metrics (``GET /metrics`` adds them)."""
        events = CounterMetricFamily(
            "pydds_db_events",
            "Events by database (empty: none) and kind.",
            None,
            ["database", "kind"],
        )
        for (database, kind), count in sorted(self.events_by_database.items()):
            events.add_metric([database, kind], count)
        yield events
        for name, counts in (("reads", self._reads), ("writes", self._writes)):
            family = GaugeMetricFamily(
                f"pydds_hot_key_{name}",
                f"The {self.top} keys with the most {name} in the last {self.window:g}s.",
                None,
                ["database", "key"],
            )
            for db, key, n in counts.top(self.top) if counts is not None else []:
                family.add_metric([db, key], n)
            yield family
        t = self._node.traffic_total() if self._node is not None else None
        traffic = CounterMetricFamily(
            "pydds_replication_bytes", "Bytes over every link.", None, ["direction"]
        )
        traffic.add_metric(["in"], t.bytes_in if t else 0)
        traffic.add_metric(["out"], t.bytes_out if t else 0)
        yield traffic
