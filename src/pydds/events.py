"""Events: what happened, and bounded queues that deliver it to subscribers.

Every change to a database, local or applied from elsewhere, becomes one ``Event``;
so does every custom event. Subscribers (``Node.events``) each get a bounded queue.

Overflow policy: when a subscriber's queue is full, the oldest event is dropped and
counted (``Subscription.dropped``), and before the next event it reads the subscriber
receives one ``overflow`` event whose payload says how many were dropped
(``{"dropped": n}``). A slow consumer thus loses old events, never memory, and knows it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from enum import StrEnum
from types import TracebackType
from typing import Any, NamedTuple, Self

from .crdt import values

__all__ = ["ClosedOnExit", "Event", "EventKind", "Subscription"]


class EventKind(StrEnum):
    """What an event records."""

    CREATED = "created"  # a key appeared (set, update, append or incr of an absent key)
    CHANGED = "changed"  # a key's value changed
    DELETED = "deleted"  # a key was deleted
    EXPIRED = "expired"  # a key's time to live ran out (each node says so by its clock)
    CUSTOM = "custom"  # a custom event (``Node.emit``)
    OVERFLOW = "overflow"  # this subscriber's queue overflowed; payload {"dropped": n}
    JOINED = "joined"  # a node joined the cluster (``member`` says which)
    LEFT = "left"  # a node left the cluster (it closed, or was unreachable for too long)
    UNREACHABLE = "unreachable"  # the link to a member closed (it is indirect or suspect)
    REACHABLE = "reachable"  # an indirect or suspect member is linked again
    STALE = "stale"  # this node's copy of a key went stale (no longer replicated here)
    WARMED = "warmed"  # warm-up after a join finished; payload {"pulled": n, "failed": n}
    GAP = "gap"  # a replay (``since``) reached offsets the log no longer holds: {"from", "to"}
    EVICTED = "evicted"  # this node evicted its copy of a key (its memory limit)
    MEMORY_FULL = "memory_full"  # past its memory limit, nothing could be evicted

    def __repr__(self) -> str:
        return repr(self.value)  # 'created', as it compares and prints


#: Reads a data event's key's value now (``Event.value``).
Loader = Callable[[], Any]


class _EventFields(NamedTuple):
    kind: EventKind
    database: str | None = None  # the database, for data events
    key: str | None = None  # the key, for data events
    origin: str = ""  # the name of the node where the change was made
    delta: bytes | None = None  # the CRDT delta (a Yjs update)
    name: str | None = None  # the name of a custom event
    member: str | None = None  # the node that joined or left
    time: float = 0.0  # when this node recorded it (Unix seconds)
    packed_payload: bytes | None = None  # the payload, packed
    loader: Loader | None = None  # reads the key's value now (``value()``)
    offset: int = 0  # its place in this node's event log (0: not logged, as ``overflow``)
    #: A custom event's id across the cluster (``node:incarnation:counter``, the node
    #: that gave it); None for other events and for those of a node with no links yet
    id: str | None = None


_tuple_new = tuple.__new__
_now = time.time
_COMPARED = slice(0, 9)  # every field but the loader and the offset


class Event(_EventFields):
    """A record of something that happened: an immutable named tuple, one object
    shared by every subscriber that receives it.

    Example::

        async for event in node.events(database="cache"):
            print(event.kind, event.key, event.origin)
            if event.kind == "changed":
                print(event.value())
    """

    __slots__ = ()

    # A tuple is made in a third of the time of a frozen dataclass, and a node makes
    # one per change it applies.
    def __new__(
        cls,
        kind: EventKind,
        database: str | None = None,
        key: str | None = None,
        origin: str = "",
        delta: bytes | None = None,
        name: str | None = None,
        member: str | None = None,
        time: float | None = None,
        packed_payload: bytes | None = None,
        loader: Loader | None = None,
        offset: int = 0,
        id: str | None = None,
    ) -> Event:
        """``time`` defaults to now."""
        stamp = _now() if time is None else time
        fields = (
            kind,
            database,
            key,
            origin,
            delta,
            name,
            member,
            stamp,
            packed_payload,
            loader,
            offset,
            id,
        )
        event: Event = _tuple_new(cls, fields)
        return event

    def __repr__(self) -> str:
        return (
            f"Event(kind={self.kind!r}, database={self.database!r}, key={self.key!r}, "
            f"origin={self.origin!r}, name={self.name!r}, member={self.member!r}, "
            f"time={self.time!r}, offset={self.offset!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return self[_COMPARED] == other[_COMPARED]

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash(self[_COMPARED])

    @property
    def payload(self) -> Any:
        """The payload of a custom or overflow event, as a fresh copy (None otherwise)."""
        return None if self.packed_payload is None else values.unpack(self.packed_payload)

    def _repr_html_(self) -> str:
        """Jupyter's rich display: the event as a one-row table."""
        from .display import event_html

        return event_html(self)

    def value(self) -> Any:
        """The key's value now (after this change and any later ones), as a fresh copy.

        Raises:
            KeyNotFound: the key does not exist now.
            Unavailable: this node does not hold the key's value (the event only says
                that it changed elsewhere); ``await db.get(key)`` pulls it.
            ValueError: the event is not about a key.
        """
        if self.loader is None:
            raise ValueError(f"a {self.kind} event has no value")
        return self.loader()


def change_event(
    kind: EventKind,
    database: str,
    key: str,
    origin: str,
    delta: bytes | None,
    loader: Loader,
    offset: int = 0,
    when: float | None = None,
) -> Event:
    """``Event(kind, database, key, origin, delta, loader=loader)`` made the short way
    (a node makes one per change it applies: half the time of the keyword call)."""
    fields = (
        kind,
        database,
        key,
        origin,
        delta,
        None,
        None,
        _now() if when is None else when,
        None,
        loader,
        offset,
        None,
    )
    event: Event = _tuple_new(Event, fields)
    return event


class ClosedOnExit:
    """``async with`` it, and it is closed on the way out (its ``close``)."""

    def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Subscription(ClosedOnExit):
    """A bounded stream of the events that match a filter.

    Iterate it with ``async for``; use it with ``async with`` (or call ``close``) to
    stop receiving. See the module docstring for the overflow policy.
    """

    def __init__(
        self,
        detach: Callable[[Subscription], None],
        *,
        database: str | None = None,
        prefix: str | None = None,
        kinds: Iterable[str] | None = None,
        names: Iterable[str] | None = None,
        maxsize: int = 10_000,
        replay: Callable[[], list[Event]] | None = None,
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.database = database  # only events of this database (None: any)
        self.prefix = prefix  # only events of keys with this prefix (None: any)
        self.kinds = None if kinds is None else frozenset(EventKind(k) for k in kinds)
        self.names = None if names is None else frozenset(names)  # custom event names
        self.maxsize = maxsize  # the queue's bound
        self.dropped = 0  # events dropped because the queue was full, in total
        self._unreported = 0  # drops not yet reported by an overflow event
        self._queue: deque[Event] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._detach = detach
        #: The logged events to deliver first (``since``), a batch a call; an empty
        #: batch: the replay has caught up with the live events queued meanwhile.
        self._replay = replay
        self._replayed: deque[Event] = deque()

    def matches(self, event: Event) -> bool:
        """Whether ``event`` passes this subscription's filter."""
        if self.kinds is not None and event.kind not in self.kinds:
            return False
        if self.database is not None and event.database != self.database:
            return False
        if self.prefix is not None and (event.key is None or not event.key.startswith(self.prefix)):
            return False
        return self.names is None or event.name in self.names

    def wants(self, kind: EventKind, database: str, key: str) -> bool:
        """``matches`` for a data event not made yet (so that none is made for
        nobody)."""
        if self.kinds is not None and kind not in self.kinds:
            return False
        if self.database is not None and database != self.database:
            return False
        if self.prefix is not None and not key.startswith(self.prefix):
            return False
        return self.names is None

    def push(self, event: Event) -> None:
        """Queue ``event`` (the bus calls this for matching events)."""
        if self._closed:
            return
        queue = self._queue
        if len(queue) >= self.maxsize:
            queue.popleft()
            self.dropped += 1
            self._unreported += 1
        queue.append(event)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __len__(self) -> int:
        return len(self._queue)

    def ready(self, limit: int) -> list[Event]:
        """Up to ``limit`` events that are ready now, without waiting (to batch the
        work of a consumer that has just read one with ``get``)."""
        out: list[Event] = []
        while len(out) < limit:
            event = self._next_ready()
            if event is None:
                break
            out.append(event)
        return out

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop receiving; events already queued can still be read."""
        if not self._closed:
            self._closed = True
            self._detach(self)
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def _next_ready(self) -> Event | None:
        if self._unreported:
            n, self._unreported = self._unreported, 0
            return Event(EventKind.OVERFLOW, packed_payload=values.pack({"dropped": n}, 64))
        if self._replay is not None:
            while not self._replayed:
                batch = self._replay()
                if not batch:
                    self._replay = None
                    break
                self._replayed.extend(batch)
            if self._replayed:
                return self._replayed.popleft()
        if self._queue:
            return self._queue.popleft()
        return None

    async def get(self, timeout: float | None = None) -> Event:  # noqa: ASYNC109
        """The next event.

        Raises:
            TimeoutError: none came within ``timeout`` seconds.
            StopAsyncIteration: the subscription is closed and drained.
        """
        if timeout is None:
            return await self.__anext__()
        async with asyncio.timeout(timeout):
            return await self.__anext__()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._queue and not self._unreported and self._replay is None:  # the common case
                return self._queue.popleft()
            event = self._next_ready()
            if event is not None:
                return event
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
