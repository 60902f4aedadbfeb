"""A node's log of the events it recorded, with offsets, for subscribers to replay.

Theory of operation
-------------------
Every event the node records (``EventBus.publish`` and ``publish_change``) gets the
next offset and goes into the log as a compact record (no ``Event`` is made for a
data event nobody subscribed to). Offsets increase for as long as the node's data
lives: a node starts its numbering at the greatest of one past what its store kept
and ``now_ms * 1000`` (Unix milliseconds times a thousand), so that a restart never
hands out an offset a consumer saw before, with or without a store. Offsets are not
dense across restarts.

The log is bounded by count, bytes (each record counts ``RECORD_COST`` plus its
delta and payload) and age; past a bound the oldest records go. What the log cannot
vouch for is a *hole*: the records trimmed (everything up to ``horizon``), and at
each start the offsets between the last record the store kept and the first of
this process (events recorded in the last moments before a crash, never written).
``after(offset)`` returns the records after ``offset`` and the holes after it, in
order, so that a replay says ``gap`` exactly where something may be missing.
"""

from __future__ import annotations

import bisect
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .events import EventKind

__all__ = ["RECORD_COST", "EventLog", "Record", "Resent"]

#: What a record takes besides its delta and payload (its slots in the columns,
#: the objects they hold).
RECORD_COST = 160

#: (offset, kind, database, key, origin, delta, name, member, time, payload, id)
Record = tuple[
    int,
    EventKind,
    str | None,
    str | None,
    str,
    bytes | None,
    str | None,
    str | None,
    float,
    bytes | None,
    str | None,
]
#: A custom event to send again: (id, name, payload, origin).
Resent = tuple[str, str, bytes, str]
#: Records a lazy read (``customs_after``) takes at a time.
_BATCH = 512


class EventLog:
    """The node's recorded events, by offset, bounded.

    Example::

        log = EventLog(count=1000, size=1 << 20, age=60.0)
        offset = log.append(EventKind.CUSTOM, None, None, "a", None, "ping", None, t, b"")
        records, holes = log.after(0)
    """

    def __init__(
        self,
        *,
        count: int,
        size: int,
        age: float,
        start: int | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.count, self.size, self.age = count, size, age  # the bounds
        self._now = now
        # One column per field, with a moving head: appending makes no object the
        # collector tracks (a record per event would, and set off collections in a
        # stream of writes), and access by index is O(1) for the bisection. The
        # dropped head is cut off in one go once it is the larger part.
        self._offsets = array("q")
        self._times = array("d")
        self._kinds: list[EventKind] = []
        self._databases: list[str | None] = []
        self._keys: list[str | None] = []
        self._origins: list[str] = []
        self._deltas: list[bytes | None] = []
        self._names: list[str | None] = []
        self._members: list[str | None] = []
        self._payloads: list[bytes | None] = []
        self._ids: list[str | None] = []  # custom events' ids across the cluster
        self._head = 0
        self._bytes = 0
        first = int(now() * 1_000_000) if start is None else start
        self.next = max(1, first)  # the offset the next event gets
        #: Ranges of offsets the log cannot vouch for, (first, last), oldest first:
        #: at first, every offset before this process's (``load`` says better).
        self.holes: deque[tuple[int, int]] = deque([(1, self.next - 1)] if self.next > 1 else [])
        self.horizon = 0  # every offset up to this one is gone from the log
        self.trimmed = 0  # records dropped past a bound, in total
        #: Told of every record appended (a store keeps them: ``load`` at start).
        self.journal: Callable[[Record], None] | None = None

    def _columns(self) -> tuple[Any, ...]:
        return (
            self._offsets,
            self._kinds,
            self._databases,
            self._keys,
            self._origins,
            self._deltas,
            self._names,
            self._members,
            self._times,
            self._payloads,
            self._ids,
        )

    def __len__(self) -> int:
        return len(self._offsets) - self._head

    @property
    def used(self) -> int:
        """Bytes the records take (an estimate)."""
        return self._bytes

    @property
    def first(self) -> int | None:
        """The offset of the oldest record held (None: none)."""
        return self._offsets[self._head] if len(self) else None

    def append(
        self,
        kind: EventKind,
        database: str | None,
        key: str | None,
        origin: str,
        delta: bytes | None,
        name: str | None,
        member: str | None,
        when: float,
        payload: bytes | None,
        ident: str | None = None,
    ) -> int:
        """Log an event (``ident``: a custom event's id); its offset."""
        offset = self.next
        self.next = offset + 1
        # ``_put``, inline: this runs for every event a node records.
        self._offsets.append(offset)
        self._kinds.append(kind)
        self._databases.append(database)
        self._keys.append(key)
        self._origins.append(origin)
        self._deltas.append(delta)
        self._names.append(name)
        self._members.append(member)
        self._times.append(when)
        self._payloads.append(payload)
        self._ids.append(ident)
        cost = RECORD_COST
        if delta:
            cost += len(delta)
        if payload:
            cost += len(payload)
        self._bytes += cost
        if self.journal is not None:
            self.journal(
                (offset, kind, database, key, origin, delta, name, member, when, payload, ident)
            )
        if len(self._offsets) - self._head > self.count or self._bytes > self.size:
            self.trim()
        return offset

    def _put(
        self,
        offset: int,
        kind: EventKind,
        database: str | None,
        key: str | None,
        origin: str,
        delta: bytes | None,
        name: str | None,
        member: str | None,
        when: float,
        payload: bytes | None,
        ident: str | None = None,
    ) -> None:
        self._offsets.append(offset)
        self._kinds.append(kind)
        self._databases.append(database)
        self._keys.append(key)
        self._origins.append(origin)
        self._deltas.append(delta)
        self._names.append(name)
        self._members.append(member)
        self._times.append(when)
        self._payloads.append(payload)
        self._ids.append(ident)
        self._bytes += _cost(delta, payload)

    def _record(self, i: int) -> Record:
        return (
            self._offsets[i],
            self._kinds[i],
            self._databases[i],
            self._keys[i],
            self._origins[i],
            self._deltas[i],
            self._names[i],
            self._members[i],
            self._times[i],
            self._payloads[i],
            self._ids[i],
        )

    def load(self, records: Iterable[Record], last: int) -> None:
        """Take the records a store kept (oldest first, all before what this log
        holds; ``last``: the greatest offset the store wrote): numbering goes on
        past them, and the offsets between ``last`` and this process's first are a
        hole (events of the last moments before a stop the disk never had)."""
        kept = [r for r in records if r[0] <= last]
        ours = [self._record(i) for i in range(self._head, len(self._offsets))]
        self.next = max(self.next, last + 1)
        first_here = ours[0][0] if ours else self.next
        for column in self._columns():
            del column[:]
        self._head = self._bytes = 0
        for record in (*kept, *ours):
            self._put(*record)
        self.horizon = kept[0][0] - 1 if kept else last
        self.holes.clear()
        if last + 1 <= first_here - 1:
            self.holes.append((last + 1, first_here - 1))
        self.trim()

    def trim(self) -> int:
        """Drop the records past the bounds (count, bytes, age); how many went."""
        times, deltas, payloads = self._times, self._deltas, self._payloads
        oldest = self._now() - self.age
        head, end = self._head, len(self._offsets)
        while head < end and (
            end - head > self.count or self._bytes > self.size or times[head] < oldest
        ):
            self._bytes -= _cost(deltas[head], payloads[head])
            deltas[head] = payloads[head] = None  # their bytes go now
            head += 1
        dropped = head - self._head
        if dropped:
            self.horizon = self._offsets[head - 1]
        if head > 1024 and head * 2 > end:
            for column in self._columns():
                del column[:head]
            head = 0
        self._head = head
        if dropped:
            self.trimmed += dropped
            while self.holes and self.holes[0][1] <= self.horizon:
                self.holes.popleft()
        return dropped

    def gaps_after(self, offset: int) -> list[tuple[int, int]]:
        """The ranges after ``offset`` the log cannot vouch for, oldest first; none
        after 0 (a consumer from the start wants what there is, not what is not)."""
        if offset <= 0:
            return []
        out = []
        if offset < self.horizon:
            out.append((offset + 1, self.horizon))
        out.extend((max(first, offset + 1), last) for first, last in self.holes if last > offset)
        return out

    def keys_after(self, offset: int, database: str, kinds: frozenset[EventKind]) -> set[str]:
        """The keys of ``database`` with a record of one of ``kinds`` after ``offset``
        (one pass over the columns from there, no record made)."""
        low = bisect.bisect_right(self._offsets, offset, self._head)
        databases, keys, found = self._databases, self._keys, self._kinds
        out: set[str] = set()
        for i in range(low, len(databases)):
            key = keys[i]
            if key is not None and databases[i] == database and found[i] in kinds:
                out.add(key)
        return out

    def custom_ids(self) -> list[str]:
        """The ids of the custom events held, oldest first."""
        return [ident for ident in self._ids[self._head :] if ident is not None]

    def customs_after(self, last: dict[str, str]) -> Iterator[Resent]:
        """The custom events held whose ids some node in ``last`` gave, after the one
        ``last`` names for it, oldest first. An id the log no longer holds (older
        than the log, or a node's ``node:incarnation:0``, before its first) resumes
        at the first id held of the same incarnation with a greater counter, or, with
        none of that incarnation held (the node restarted), at the first of that
        node's. Read lazily, a batch at a time, from the log as it is then."""
        ids, offsets = self._ids, self._offsets
        after = dict.fromkeys(last, self.horizon)  # node -> resend after this offset
        wanted = {ident: node for node, ident in last.items()}  # ids not met yet
        marks = {node: _parts(ident)[1:] for node, ident in last.items()}
        for i in range(len(ids) - 1, self._head - 1, -1):
            ident = ids[i]
            if not wanted:
                break
            if ident is None:
                continue
            node = wanted.pop(ident, None)
            if node is not None:  # the very id: after it
                after[node] = offsets[i]
                continue
            node, incarnation, counter = _parts(ident)
            mark = marks.get(node)
            if mark is None or mark[0] != incarnation or last[node] not in wanted:
                continue
            if counter > mark[1]:  # a later one of that incarnation: from it, so far
                after[node] = offsets[i] - 1
            else:  # an earlier one: the id itself is not held
                wanted.pop(last[node], None)
        cursor = min(after.values(), default=self.next)
        while True:
            offsets, ids = self._offsets, self._ids  # trimmed meanwhile: cut anew
            low = bisect.bisect_right(offsets, cursor, self._head)
            high = min(len(offsets), low + _BATCH)
            if low >= high:
                return
            names, payloads, origins = self._names, self._payloads, self._origins
            for i in range(low, high):
                ident = ids[i]
                if ident is None:
                    continue
                since = after.get(ident.rsplit(":", 2)[0])
                payload = payloads[i]
                if since is not None and offsets[i] > since and payload is not None:
                    yield ident, names[i] or "", payload, origins[i]
            cursor = offsets[high - 1]

    def after(self, offset: int, limit: int = 1000) -> list[Record]:
        """Up to ``limit`` records after ``offset``, oldest first."""
        offsets = self._offsets
        low = bisect.bisect_right(offsets, offset, self._head)
        return [self._record(i) for i in range(low, min(len(offsets), low + limit))]


def _parts(ident: str) -> tuple[str, str, int]:
    """A custom event id's node, incarnation and counter (``node:incarnation:n``;
    an id of another shape: its node, no incarnation, -1)."""
    parts = ident.rsplit(":", 2)
    if len(parts) == 3 and parts[2].isdigit() and len(parts[2]) < 19:
        return parts[0], parts[1], int(parts[2])
    return parts[0], "", -1


def _cost(delta: bytes | None, payload: bytes | None) -> int:
    return RECORD_COST + (len(delta) if delta else 0) + (len(payload) if payload else 0)
