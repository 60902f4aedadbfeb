"""A node's event bus: its subscriptions, what it has recorded, and the events of
the changes its databases make (sync: publishing never waits)."""

from __future__ import annotations

import functools
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from time import time
from typing import Any

from .changes import Change
from .errors import InvalidValue, Unavailable
from .events import Event, EventKind, Subscription, change_event
from .keyspace import NOT_HELD, Keyspace

__all__ = ["RECENT_EVENTS", "EventBus"]

#: Events kept for display (``recent``).
RECENT_EVENTS = 20

#: A change's kind -> its event kind (a keyspace's changes carry the kind itself).
_KIND = {str(kind): kind for kind in EventKind}


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

    def __init__(self, event_queue: int, keyspaces: Mapping[str, Keyspace]) -> None:
        self.event_queue = event_queue  # a subscription's bound unless it says otherwise
        self._keyspaces = keyspaces  # the node's, by database name: events read values
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
    ) -> Subscription:
        """A new subscription (see ``Node.events``); ``overflow`` always passes.

        Raises:
            InvalidValue: an unknown kind, or ``maxsize`` < 1.
        """
        if kinds is not None:
            kinds = [*kinds, EventKind.OVERFLOW]
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
        self.subscriptions.append(subscription)
        return subscription

    def publish(self, event: Event) -> None:
        """Record ``event`` and deliver it to every subscription it matches."""
        self.counts[event.kind] += 1
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
        event = None  # made for the first subscription that wants it
        for subscription in self.subscriptions:
            if subscription.wants(kind, database, key):
                if event is None:
                    loader = functools.partial(_event_value, self._keyspaces[database], key)
                    event = change_event(kind, database, key, origin, value, loader)
                subscription.push(event)
        self._recent.append(event if event is not None else (kind, database, key, origin, time()))

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
