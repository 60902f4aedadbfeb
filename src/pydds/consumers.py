"""A node's consumers of groups (``Node.consume``): async iterators of the custom
events a group gives each, acknowledged with ``await event.ack()``, and what feeds
them (``NodeConsumers``).

Which consumer gets each event is decided in ``net/groups.py``; this file holds what
a user iterates and hands it the deliveries. A consumer's queue is bounded: a
delivery that finds it full is dropped (counted in ``dropped``), and,
unacknowledged, goes to the group's next consumer at its ack timeout, so that
nothing is lost and nothing grows.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections import deque
from collections.abc import Callable
from typing import Any

from .config import check_name, check_seconds
from .crdt import values
from .errors import InvalidValue, NodeClosed
from .events import ClosedOnExit
from .net.groups import ConsumerInfo, Delivery, Groups
from .net.messages import MAX_ACK_TIMEOUT, MAX_CONSUMERS, MIN_ACK_TIMEOUT, Custom, GroupAck

__all__ = ["Consumer", "GroupEvent", "NodeConsumers"]


class GroupEvent:
    """A custom event given to one consumer of a group.

    ``await event.ack()`` once it is handled: no consumer of the group gets it again.
    Not acknowledged within the consumer's ``ack_timeout``, it goes to the group's
    next consumer (``attempt`` counts the tries, the first being 0).
    """

    __slots__ = ("_ack", "attempt", "group", "id", "name", "origin", "packed_payload")

    def __init__(
        self,
        name: str,
        packed_payload: bytes,
        ident: str,
        origin: str,
        group: str,
        attempt: int,
        ack: Callable[[], object],
    ) -> None:
        self.name = name  # the custom event's name
        self.packed_payload = packed_payload
        self.id = ident  # the event's id, the same on every node
        self.origin = origin  # where it was emitted
        self.group = group
        self.attempt = attempt
        self._ack = ack

    @property
    def kind(self) -> str:
        return "custom"

    @property
    def payload(self) -> Any:
        """The payload, as a fresh copy."""
        return values.unpack(self.packed_payload)

    async def ack(self) -> None:
        """The event is handled (again: nothing more)."""
        self._ack()

    def __repr__(self) -> str:
        return (
            f"GroupEvent(name={self.name!r}, id={self.id!r}, group={self.group!r}, "
            f"attempt={self.attempt})"
        )


class Consumer(ClosedOnExit):
    """The events a group gives one consumer, in the order they come.

    Example::

        async with node.consume("job", group="billing") as jobs:
            async for job in jobs:
                await bill(job.payload)
                await job.ack()
    """

    def __init__(
        self,
        name: str,
        group: str,
        ident: str,
        ack_timeout: float,
        maxsize: int,
        on_close: Callable[[Consumer], None],
    ) -> None:
        self.name, self.group, self.id = name, group, ident
        self.ack_timeout = ack_timeout
        self.maxsize = maxsize
        self.dropped = 0  # deliveries that found the queue full (they go to another)
        self._queue: deque[GroupEvent] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._on_close = on_close

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def closed(self) -> bool:
        return self._closed

    def push(self, event: GroupEvent) -> None:
        """A delivery (the node's): queued, or dropped when full or closed."""
        if self._closed or len(self._queue) >= self.maxsize:
            self.dropped += 1
            return
        self._queue.append(event)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        """Consume no more: what this consumer has not acknowledged goes to the group's
        next consumer at once; the iteration ends once what is queued is read."""
        if not self._closed:
            self._closed = True
            self._on_close(self)
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    async def get(self, timeout: float | None = None) -> GroupEvent:  # noqa: ASYNC109
        """The next event (waiting at most ``timeout`` seconds: ``TimeoutError``).

        Raises:
            NodeClosed: the consumer closed and nothing is queued.
        """
        async with asyncio.timeout(timeout):
            while not self._queue:
                if self._closed:
                    raise NodeClosed(f"consumer {self.id!r} is closed")
                self._waiter = asyncio.get_running_loop().create_future()
                await self._waiter
        return self._queue.popleft()

    def ready(self, limit: int) -> list[GroupEvent]:
        """Up to ``limit`` events that are here now, without waiting."""
        queue = self._queue
        return [queue.popleft() for _ in range(min(limit, len(queue)))]

    def __aiter__(self) -> Consumer:
        return self

    async def __anext__(self) -> GroupEvent:
        try:
            return await self.get()
        except NodeClosed:
            raise StopAsyncIteration from None


class NodeConsumers:
    """A node's consumers and its view of the groups (``Groups``): consumers made and
    closed, deliveries handed to them, acknowledgements made here. What peers must
    be told goes out through ``announce`` (this node's consumers) and ``acked`` (a
    ``GroupAck``); ``wake`` is called when the next deadline (``due``) may be
    earlier than the node's timer is set for.

    Example::

        consumers = NodeConsumers("n1", 1000, time.monotonic, announce, acked, wake)
        jobs = consumers.consume("job", "billing", 30.0, None)
        consumers.event(Custom("n1:x:1", "job", b"\\x01", "n1"))   # to jobs
    """

    def __init__(
        self,
        node: str,
        queue: int,
        now: Callable[[], float],
        announce: Callable[[tuple[ConsumerInfo, ...]], None],
        acked: Callable[[GroupAck], None],
        wake: Callable[[], None],
    ) -> None:
        self.node = node
        self.queue = queue  # a consumer's queue bound unless it says otherwise
        self.groups = Groups(node)
        self._now, self._announce, self._acked, self._wake = now, announce, acked, wake
        self._consumers: dict[str, Consumer] = {}  # by id
        self._ids = itertools.count(1)

    @property
    def due(self) -> float:
        """When ``tick`` must run next (inf: nothing waits)."""
        return self.groups.due

    def consume(self, name: str, group: str, ack_timeout: float, maxsize: int | None) -> Consumer:
        """A new consumer (``Node.consume``, which says what is checked)."""
        check_name("event", name)
        check_name("group", group)
        timeout = float(check_seconds("ack_timeout", ack_timeout))
        if not MIN_ACK_TIMEOUT <= timeout <= MAX_ACK_TIMEOUT:
            raise InvalidValue(
                f"ack_timeout is {MIN_ACK_TIMEOUT} to {MAX_ACK_TIMEOUT:g} seconds, not {timeout}"
            )
        if maxsize is not None and (type(maxsize) is not int or maxsize < 1):
            raise InvalidValue(f"maxsize is an int >= 1, not {maxsize!r}")
        if len(self._consumers) >= MAX_CONSUMERS:
            raise InvalidValue(f"this node has {MAX_CONSUMERS} consumers already")
        ident = f"{self.node}/{next(self._ids)}"
        consumer = Consumer(name, group, ident, timeout, maxsize or self.queue, self._closed)
        self._consumers[ident] = consumer
        self._deliver(self.groups.add(ConsumerInfo(name, group, ident, timeout), self._now()))
        self._announce(self.groups.table())
        return consumer

    def _closed(self, consumer: Consumer) -> None:
        if self._consumers.pop(consumer.id, None) is not None:
            self._deliver(self.groups.remove(consumer.id, self._now()))
            self._announce(self.groups.table())

    def close(self) -> None:
        """The node closes: every consumer ends (once what it has queued is read)."""
        for consumer in list(self._consumers.values()):
            consumer.close()

    def event(self, message: Custom) -> None:
        """A custom event emitted here or received: to a consumer here, if its turn."""
        if message.name in self.groups.names:
            self._deliver(self.groups.event(message, self._now()))

    def tick(self, now: float) -> None:
        """Ack timeouts passed: those events go to their next consumer."""
        if self.groups.due <= now:
            self._deliver(self.groups.tick(now))

    def peer(self, node: str, consumers: tuple[tuple[str, str, str, float], ...]) -> None:
        """A node peer's consumers now (none: its link closed)."""
        table = [ConsumerInfo(*entry) for entry in consumers]
        self._deliver(self.groups.peer(node, table, self._now()))

    def ack(self, group: str, ident: str) -> bool:
        """``group`` handled event ``ident`` here; whether it was waiting here."""
        message = self.groups.ack(group, ident)
        if message is None:
            return False
        self._acked(message)
        return True

    def _deliver(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            consumer = self._consumers.get(delivery.consumer)
            if consumer is None:
                continue
            message = delivery.event
            ack = functools.partial(self.ack, consumer.group, message.id)
            consumer.push(
                GroupEvent(
                    message.name,
                    message.payload,
                    message.id,
                    message.origin,
                    consumer.group,
                    delivery.attempt,
                    ack,
                )
            )
        self._wake()  # deadlines were made: perhaps earlier than the timer's
