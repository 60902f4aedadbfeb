"""A node's log of the events it recorded, with offsets, for subscribers to replay.

Theory of operation
-------------------
Every event the node records (``EventBus.publish``, ``publish_custom`` and
``publish_change``) gets the next offset and goes into the log. Offsets increase for
as long as the node's data lives: a node starts its numbering at the greatest of one
past what its store kept and ``now_ms * 1000`` (Unix milliseconds times a thousand),
so that a restart never hands out an offset a consumer saw before, with or without a
store. Offsets are not dense across restarts.

The log keeps two tracks, merged by offset when read:

* the events of a key (``created``, ``changed``, ..., ``stale``) in columns, one per
  field: appending makes no object the collector tracks (a record per change would,
  and set off collections in a stream of writes), and no ``Event`` is made for a
  change nobody subscribed to;
* every other event (custom, membership, ...) as the ``Event`` itself, which was
  made anyway: appending it is two appends.

The log is bounded by count, bytes (each event counts ``RECORD_COST`` plus its delta
and payload) and age; past a bound the oldest events go. What the log cannot vouch
for is a *hole*: the events trimmed (everything up to ``horizon``), and at each start
the offsets between the last event the store kept and the first of this process
(events recorded in the last moments before a crash, never written).
``after(offset)`` returns the events after ``offset`` and ``gaps_after`` the holes
after it, so that a replay says ``gap`` exactly where something may be missing.
"""

from __future__ import annotations

import bisect
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .events import Event, EventKind
from .net.messages import event_id_parts

__all__ = ["RECORD_COST", "EventLog", "Record", "Resent"]

#: What an event takes besides its delta and payload (its slots, the objects they hold).
RECORD_COST = 160

#: An event as a store keeps it:
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
#: Events a lazy read (``customs_after``) takes at a time.
_BATCH = 512
#: A dropped head is cut off in one go once it is this long and the larger part.
_CUT = 1024
_tuple_new = tuple.__new__


def is_keyed(database: str | None, key: str | None, name: str | None) -> bool:
    """Whether an event is of a key (kept in the log's columns)."""
    return database is not None and key is not None and name is None


class EventLog:
    """The node's recorded events, by offset, bounded.

    Example::

        log = EventLog(count=1000, size=1 << 20, age=60.0)
        offset = log.append(EventKind.CREATED, "db", "k", "a", None, None, None, t, None)
        log.keep(Event(EventKind.CUSTOM, origin="a", name="ping", offset=log.next))
        events = log.after(0)   # Records of keys' events, and Events
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
        # The keys' events: one column per field, with a moving head.
        self._offsets = array("q")
        self._times = array("d")
        self._kinds: list[EventKind] = []
        self._databases: list[str] = []
        self._keys: list[str] = []
        self._origins: list[str] = []
        self._deltas: list[bytes | None] = []
        self._head = 0
        # The other events, as they are, with a moving head.
        self._event_offsets = array("q")
        self._events: list[Event | None] = []
        self._event_head = 0
        self._bytes = 0
        first = int(now() * 1_000_000) if start is None else start
        self.next = max(1, first)  # the offset the next event gets
        #: Ranges of offsets the log cannot vouch for, (first, last), oldest first:
        #: at first, every offset before this process's (``load`` says better).
        self.holes: deque[tuple[int, int]] = deque([(1, self.next - 1)] if self.next > 1 else [])
        self.horizon = 0  # every offset up to this one is gone from the log
        self.trimmed = 0  # events dropped past a bound, in total
        #: Told of every event appended (a store keeps them: ``load`` at start).
        self.journal: Callable[[Record], None] | None = None

    def __len__(self) -> int:
        return len(self._offsets) - self._head + len(self._event_offsets) - self._event_head

    @property
    def used(self) -> int:
        """Bytes the events take (an estimate)."""
        return self._bytes

    @property
    def first(self) -> int | None:
        """The offset of the oldest event held (None: none)."""
        heads = []
        if self._head < len(self._offsets):
            heads.append(self._offsets[self._head])
        if self._event_head < len(self._event_offsets):
            heads.append(self._event_offsets[self._event_head])
        return min(heads, default=None)

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
        if database is None or key is None or name is not None:  # not ``is_keyed``, inline
            fields = (kind, database, key, origin, delta, name, member, when, payload, None)
            self.keep(_tuple_new(Event, (*fields, offset, ident)))
            return offset
        self.next = offset + 1
        # ``_put_keyed``, inline: this runs for every change a node records.
        self._offsets.append(offset)
        self._times.append(when)
        self._kinds.append(kind)
        self._databases.append(database)
        self._keys.append(key)
        self._origins.append(origin)
        self._deltas.append(delta)
        self._bytes += RECORD_COST + len(delta) if delta else RECORD_COST
        if self.journal is not None:
            self.journal((offset, kind, database, key, origin, delta, None, None, when, None, None))
        if len(self) > self.count or self._bytes > self.size:
            self.trim()
        return offset

    def keep(self, event: Event) -> None:
        """Log an event that is not of a key, made with its offset: ``self.next``."""
        offset = event[10]
        assert offset == self.next, (offset, self.next)
        self.next = offset + 1
        self._event_offsets.append(offset)
        self._events.append(event)
        payload = event[8]
        self._bytes += RECORD_COST + len(payload) if payload else RECORD_COST
        if self.journal is not None:
            self.journal(_stored(event))
        if len(self) > self.count or self._bytes > self.size:
            self.trim()

    def _put(self, record: Record) -> None:
        offset, kind, database, key, origin, delta, name, member, when, payload, ident = record
        if database is None or key is None or name is not None:  # not ``is_keyed``
            fields = (kind, database, key, origin, delta, name, member, when, payload, None)
            self._event_offsets.append(offset)
            self._events.append(_tuple_new(Event, (*fields, offset, ident)))
        else:
            self._offsets.append(offset)
            self._times.append(when)
            self._kinds.append(kind)
            self._databases.append(database)
            self._keys.append(key)
            self._origins.append(origin)
            self._deltas.append(delta)
        self._bytes += _cost(delta, payload)

    def _record(self, i: int) -> Record:
        """The keys' event at column index ``i``."""
        return (
            self._offsets[i],
            self._kinds[i],
            self._databases[i],
            self._keys[i],
            self._origins[i],
            self._deltas[i],
            None,
            None,
            self._times[i],
            None,
            None,
        )

    def _held(self) -> list[Record]:
        """Every event held, as records, oldest first."""
        keyed = [self._record(i) for i in range(self._head, len(self._offsets))]
        others = [_stored(e) for e in self._events[self._event_head :] if e is not None]
        return sorted((*keyed, *others), key=lambda record: record[0])

    def _clear(self) -> None:
        columns: tuple[Any, ...] = (
            self._offsets,
            self._times,
            self._kinds,
            self._databases,
            self._keys,
            self._origins,
            self._deltas,
            self._event_offsets,
            self._events,
        )
        for column in columns:
            del column[:]
        self._head = self._event_head = self._bytes = 0

    def load(self, records: Iterable[Record], last: int) -> None:
        """Take the events a store kept (oldest first, all before what this log
        holds; ``last``: the greatest offset the store wrote): numbering goes on
        past them, and the offsets between ``last`` and this process's first are a
        hole (events of the last moments before a stop the disk never had)."""
        kept = [r for r in records if r[0] <= last]
        ours = self._held()
        self.next = max(self.next, last + 1)
        first_here = ours[0][0] if ours else self.next
        self._clear()
        for record in (*kept, *ours):
            self._put(record)
        self.horizon = kept[0][0] - 1 if kept else last
        self.holes.clear()
        if last + 1 <= first_here - 1:
            self.holes.append((last + 1, first_here - 1))
        self.trim()

    def trim(self) -> int:
        """Drop the events past the bounds (count, bytes, age), oldest first; how
        many went."""
        offsets, times, deltas = self._offsets, self._times, self._deltas
        event_offsets, events = self._event_offsets, self._events
        oldest = self._now() - self.age
        head, end = self._head, len(offsets)
        event_head, event_end = self._event_head, len(event_offsets)
        held = end - head + event_end - event_head
        dropped = 0
        while held:
            keyed = head < end and (
                event_head >= event_end or offsets[head] < event_offsets[event_head]
            )
            event = None if keyed else events[event_head]
            when = times[head] if keyed else event[7]  # type: ignore[index]
            if held <= self.count and self._bytes <= self.size and when >= oldest:
                break
            if keyed:
                self._bytes -= _cost(deltas[head], None)
                deltas[head] = None  # its bytes go now
                self.horizon = offsets[head]
                head += 1
            else:
                self._bytes -= _cost(None, event[8])  # type: ignore[index]
                events[event_head] = None
                self.horizon = event_offsets[event_head]
                event_head += 1
            held -= 1
            dropped += 1
        if head > _CUT and head * 2 > end:
            for column in (offsets, times, self._kinds, self._databases, self._keys):
                del column[:head]
            del self._origins[:head], deltas[:head]
            head = 0
        if event_head > _CUT and event_head * 2 > event_end:
            del event_offsets[:event_head], events[:event_head]
            event_head = 0
        self._head, self._event_head = head, event_head
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
        """The keys of ``database`` with an event of one of ``kinds`` after ``offset``
        (one pass over the columns from there, no record made)."""
        low = bisect.bisect_right(self._offsets, offset, self._head)
        databases, keys, found = self._databases, self._keys, self._kinds
        out: set[str] = set()
        for i in range(low, len(databases)):
            if databases[i] == database and found[i] in kinds:
                out.add(keys[i])
        return out

    def after(self, offset: int, limit: int = 1000) -> list[Record | Event]:
        """Up to ``limit`` events after ``offset``, oldest first: a key's as a
        ``Record``, any other as its ``Event``."""
        offsets, event_offsets, events = self._offsets, self._event_offsets, self._events
        i = bisect.bisect_right(offsets, offset, self._head)
        j = bisect.bisect_right(event_offsets, offset, self._event_head)
        end, event_end = len(offsets), len(event_offsets)
        out: list[Record | Event] = []
        while len(out) < limit and (i < end or j < event_end):
            if j >= event_end or (i < end and offsets[i] < event_offsets[j]):
                out.append(self._record(i))
                i += 1
            else:
                event = events[j]
                assert event is not None  # only dropped heads are None
                out.append(event)
                j += 1
        return out

    def custom_ids(self) -> list[str]:
        """The ids of the custom events held, oldest first."""
        events = self._events[self._event_head :]
        return [event[11] for event in events if event is not None and event[11] is not None]

    def customs_after(self, last: dict[str, str]) -> Iterator[Resent]:
        """The custom events held whose ids some node in ``last`` gave, after the one
        ``last`` names for it, oldest first. An id the log no longer holds (older
        than the log, or a node's ``node:incarnation:0``, before its first) resumes
        at the first id held of the same incarnation with a greater counter, or, with
        none of that incarnation held (the node restarted), at the first of that
        node's. Up to what the log holds now (what is logged later is sent as it
        comes), read lazily, a batch at a time, from the log as it is then."""
        return self._customs(self._resume_points(last), self.next)

    def _resume_points(self, last: dict[str, str]) -> dict[str, int]:
        """For each node of ``last``: the offset after which its events are sent."""
        events, offsets = self._events, self._event_offsets
        after = dict.fromkeys(last, self.horizon)  # node -> resend after this offset
        wanted = {ident: node for node, ident in last.items()}  # ids not met yet
        marks = {node: event_id_parts(ident)[1:] for node, ident in last.items()}
        for i in range(len(events) - 1, self._event_head - 1, -1):
            if not wanted:
                break
            event = events[i]
            ident = event[11] if event is not None else None
            if ident is None:
                continue
            node = wanted.pop(ident, None)
            if node is not None:  # the very id: after it
                after[node] = offsets[i]
                continue
            node, incarnation, counter = event_id_parts(ident)
            mark = marks.get(node)
            if mark is None or mark[0] != incarnation or last[node] not in wanted:
                continue
            if counter > mark[1]:  # a later one of that incarnation: from it, so far
                after[node] = offsets[i] - 1
            else:  # an earlier one: the id itself is not held
                wanted.pop(last[node], None)
        return after

    def _customs(self, after: dict[str, int], stop: int) -> Iterator[Resent]:
        cursor = min(after.values(), default=stop)
        while True:
            # A batch, taken at once: the log may cut its head between two messages.
            offsets, events = self._event_offsets, self._events
            low = bisect.bisect_right(offsets, cursor, self._event_head)
            batch = [(offsets[i], events[i]) for i in range(low, min(len(offsets), low + _BATCH))]
            if not batch:
                return
            for offset, event in batch:
                if offset >= stop:
                    return
                if event is None or event[11] is None or event[8] is None:
                    continue
                ident = event[11]
                since = after.get(ident.rsplit(":", 2)[0])
                if since is not None and offset > since:
                    yield ident, event[5] or "", event[8], event[3]
            cursor = batch[-1][0]


def _stored(event: Event) -> Record:
    """An event not of a key, as a store keeps it."""
    kind, database, key, origin, delta, name, member, when, payload, _, offset, ident = event
    return (offset, kind, database, key, origin, delta, name, member, when, payload, ident)


def _cost(delta: bytes | None, payload: bytes | None) -> int:
    return RECORD_COST + (len(delta) if delta else 0) + (len(payload) if payload else 0)
