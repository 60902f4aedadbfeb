"""A node's event bus: its subscriptions, what it has recorded, and the events of
the changes its databases make (sync: publishing never waits)."""

from __future__ import annotations

import functools
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from time import time
from typing import Any

from .changes import Change
from .crdt import values
from .errors import InvalidValue, Unavailable
from .eventlog import EventLog, Record, is_keyed
from .events import Event, EventKind, Subscription, change_event
from .keyspace import NOT_HELD, Keyspace

__all__ = ["RECENT_EVENTS", "EventBus"]

#: Events kept for display (``recent``).
RECENT_EVENTS = 20
#: Logged records a replaying subscription takes from the log at a time.
REPLAY_BATCH = 1000
_tuple_new = tuple.__new__
#: Events a subscriber gets that are its own, never logged.
_UNLOGGED = frozenset({EventKind.OVERFLOW, EventKind.GAP})

#: A change's kind -> its event kind (a keyspace's changes carry the kind itself).
_KIND = {str(kind): kind for kind in EventKind}


def _offset(item: Record | Event) -> int:
    """A logged item's offset (``EventLog.after``)."""
    return item.offset if isinstance(item, Event) else item[0]


def _event_value(keyspace: Keyspace, key: str) -> Any:
    """``Event.value``: the key's value here now, without pulling it."""
    value = keyspace.read(key, fresh=False)
    if value is NOT_HELD:
        raise Unavailable(
            f"{key!r} of {keyspace.name!r} is not held on this node (the event says only that "
            "it changed); await db.get(key) pulls it"
        )
    return value


class EventBus:
    """Delivers every event a node records to the subscriptions that want it, counts
    events by kind, and keeps the last few for display.

    Example::

        bus = EventBus(event_queue=1000, keyspaces={})
        events = bus.subscribe(kinds=["custom"])
        bus.publish(Event(EventKind.CUSTOM, origin="a", name="ping"))
        events.ready(10)[0].name   # 'ping'
    """

    def __init__(
        self, event_queue: int, keyspaces: Mapping[str, Keyspace], log: EventLog | None = None
    ) -> None:
        self.event_queue = event_queue  # a subscription's bound unless it says otherwise
        self._keyspaces = keyspaces  # the node's, by database name: events read values
        self.log = log  # every event recorded, by offset (None: no log)
        #: Events recorded, by kind (whether or not anyone subscribed).
        self.counts: Counter[str] = Counter()
        self.subscriptions: list[Subscription] = []
        #: The last events: events, or (kind, database, key, origin, time) of data
        #: events nobody subscribed to (an Event is made on demand).
        self._recent: deque[Event | tuple[EventKind, str, str, str, float]] = deque(
            maxlen=RECENT_EVENTS
        )

    def subscribe(
        self,
        *,
        database: str | None = None,
        prefix: str | None = None,
        kinds: Iterable[str] | None = None,
        names: Iterable[str] | None = None,
        maxsize: int | None = None,
        since: int | None = None,
        origin: str = "",
    ) -> Subscription:
        """A new subscription (see ``Node.events``); ``overflow`` and ``gap`` always
        pass. With ``since``, the logged events after that offset come first.

        Raises:
            InvalidValue: an unknown kind, ``maxsize`` < 1, or ``since`` < 0.
        """
        if kinds is not None:
            kinds = [*kinds, EventKind.OVERFLOW, EventKind.GAP]
        if since is not None and (
            isinstance(since, bool) or not isinstance(since, int) or since < 0
        ):
            raise InvalidValue(f"since is an offset (an int >= 0), not {since!r}")
        try:
            subscription = Subscription(
                self.subscriptions.remove,
                database=database,
                prefix=prefix,
                kinds=kinds,
                names=names,
                maxsize=maxsize or self.event_queue,
            )
        except ValueError as exc:
            raise InvalidValue(str(exc)) from None
        log = self.log
        if since is not None and log is None:
            raise InvalidValue("this node keeps no event log (Limits.event_log=0): no since")
        if since is not None and log is not None and since < log.next - 1:
            subscription._replay = self._replayer(subscription, since, log.next, origin)
        self.subscriptions.append(subscription)
        return subscription

    def _replayer(
        self, subscription: Subscription, since: int, upto: int, origin: str
    ) -> Callable[[], list[Event]]:
        """The batches of logged events after ``since`` and before ``upto`` (the first
        live one) that ``subscription`` wants, with a ``gap`` event for each range
        the log no longer holds, in offset order."""
        log = self.log
        assert log is not None
        cursor = since

        def batch() -> list[Event]:
            nonlocal cursor
            out: list[Event] = []
            while not out and cursor < upto - 1:
                items = [(_offset(i), i) for i in log.after(cursor, REPLAY_BATCH)]
                items = [item for item in items if item[0] < upto]
                complete = len(items) < REPLAY_BATCH  # nothing more before ``upto``
                reach = upto - 1 if complete else items[-1][0]
                gaps = [(a, min(b, reach)) for a, b in log.gaps_after(cursor) if a <= reach]
                for offset, item in items:
                    while gaps and gaps[0][0] < offset:
                        out.append(self._gap(*gaps.pop(0), origin))
                    event = self._event(subscription, item)
                    if event is not None:
                        out.append(event)
                out.extend(self._gap(a, b, origin) for a, b in gaps)
                cursor = reach
            return out

        return batch

    @staticmethod
    def _gap(first: int, last: int, origin: str) -> Event:
        payload = values.pack({"from": first, "to": last}, 64)
        return Event(EventKind.GAP, origin=origin, packed_payload=payload, offset=last)

    def _event(self, subscription: Subscription, item: Record | Event) -> Event | None:
        """The event of a logged item, if ``subscription`` wants it."""
        if isinstance(item, Event):
            return item if subscription.matches(item) else None
        offset, kind, database, key, origin, delta, _, _, when, _, _ = item
        assert database is not None  # a key's event
        assert key is not None
        if not subscription.wants(kind, database, key):
            return None
        keyspace = self._keyspaces.get(database)
        loader = functools.partial(_event_value, keyspace, key) if keyspace is not None else None
        return Event(kind, database, key, origin, delta, None, None, when, None, loader, offset)

    def publish(self, event: Event) -> None:
        """Record ``event`` (it gets its offset) and deliver it to every subscription
        it matches."""
        kind, database, key, origin, delta, name, member, when, payload, loader, _, ident = event
        self.counts[kind] += 1
        log = self.log
        if log is not None and kind not in _UNLOGGED:
            fields = (kind, database, key, origin, delta, name, member, when, payload, loader)
            if is_keyed(database, key, name):
                offset = log.append(kind, database, key, origin, delta, None, None, when, None)
                event = _tuple_new(Event, (*fields, offset, ident))
            else:
                event = _tuple_new(Event, (*fields, log.next, ident))
                log.keep(event)
        self._deliver(event)

    def publish_custom(self, origin: str, name: str, payload: bytes, ident: str | None) -> None:
        """Record a custom event and deliver it (``publish``, with the event made once:
        a node makes one per custom event it emits or receives)."""
        self.counts[EventKind.CUSTOM] += 1
        log = self.log
        offset = log.next if log is not None else 0
        event: Event = _tuple_new(
            Event,
            (
                EventKind.CUSTOM,
                None,
                None,
                origin,
                None,
                name,
                None,
                time(),
                payload,
                None,
                offset,
                ident,
            ),
        )
        if log is not None:
            log.keep(event)
        self._deliver(event)

    def _deliver(self, event: Event) -> None:
        self._recent.append(event)
        for subscription in self.subscriptions:
            if subscription.matches(event):
                subscription.push(event)

    def publish_change(self, change: Change) -> None:
        """Record the event of a change that has a kind. The event is made only for a
        subscription that wants it (its value is read from the database's keyspace)."""
        database, key, _, _, value, origin, kind = change
        assert kind is not None
        if kind.__class__ is not EventKind:  # keyspaces give EventKinds; others a str
            kind = _KIND[kind]
        self.counts[kind] += 1
        when = time()
        log = self.log
        offset = 0
        if log is not None:
            offset = log.append(kind, database, key, origin, value, None, None, when, None)
        event = None  # made for the first subscription that wants it
        for subscription in self.subscriptions:
            if subscription.wants(kind, database, key):
                if event is None:
                    loader = functools.partial(_event_value, self._keyspaces[database], key)
                    event = change_event(kind, database, key, origin, value, loader, offset, when)
                subscription.push(event)
        self._recent.append(event if event is not None else (kind, database, key, origin, when))

    def recent(self) -> list[Event]:
        """The last events recorded (at most ``RECENT_EVENTS``), oldest first."""
        out = []
        for item in self._recent:
            if isinstance(item, Event):
                out.append(item)
            else:
                kind, database, key, origin, when = item
                out.append(Event(kind, database, key, origin, time=when))
        return out

    def close(self) -> None:
        """End every subscription."""
        for subscription in list(self.subscriptions):
            subscription.close()
