"""A consumer of a group (``Node.consume``): an async iterator of the custom events
the group gives it, each acknowledged with ``await event.ack()``.

Which consumer gets each event is decided in ``net/groups.py``; this file holds what
a user iterates. A consumer's queue is bounded: a delivery that finds it full is
dropped (counted in ``dropped``), and, unacknowledged, goes to the group's next
consumer at its ack timeout, so that nothing is lost and nothing grows.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any

from .crdt import values
from .errors import NodeClosed

__all__ = ["Consumer", "GroupEvent"]


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


class Consumer:
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

    def __aiter__(self) -> Consumer:
        return self

    async def __anext__(self) -> GroupEvent:
        try:
            return await self.get()
        except NodeClosed:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Consumer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
