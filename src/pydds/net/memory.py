"""An in-memory network: links between nodes of one process, for tests.

Addresses are ``mem://NAME``. Each direction of a link is a bounded queue (a full
one makes ``send`` wait, as a full socket buffer would). ``partition`` cuts links
between two groups of addresses (their links close) and refuses new ones until
``heal``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable

from ..errors import LinkClosed
from .transport import Accept, Link

__all__ = ["MemoryLink", "MemoryNetwork", "MemoryTransport"]

_CLOSED = b""  # never a frame: an encoded frame is at least one byte


class MemoryLink:
    """One end of an in-memory link."""

    def __init__(
        self,
        inbox: asyncio.Queue[bytes],
        outbox: asyncio.Queue[bytes],
        local: str,
        remote: str,
    ) -> None:
        self.local = local  # this end's address
        self.remote = remote  # the other end's address
        self._inbox = inbox
        self._outbox = outbox
        self._closed = False
        self.other: MemoryLink | None = None

    async def send(self, frame: bytes) -> None:
        if self._closed:
            raise LinkClosed(f"link {self.local} -> {self.remote} is closed")
        await self._outbox.put(frame)

    async def receive(self) -> bytes:
        if self._closed and self._inbox.empty():
            raise LinkClosed(f"link {self.local} <- {self.remote} is closed")
        frame = await self._inbox.get()
        if frame == _CLOSED:
            self._closed = True
            raise LinkClosed(f"link {self.local} <- {self.remote} closed")
        return frame

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            for queue in (self._outbox, self._inbox):
                _force_put(queue, _CLOSED)


def _force_put(queue: asyncio.Queue[bytes], item: bytes) -> None:
    """Put even into a full queue (a close must get through)."""
    while True:
        try:
            queue.put_nowait(item)
            return
        except asyncio.QueueFull:
            queue.get_nowait()


class MemoryNetwork:
    """The in-memory network: listeners by address, and partitions."""

    def __init__(self, queue_frames: int = 1024) -> None:
        self.queue_frames = queue_frames  # frames buffered per direction of a link
        self._listeners: dict[str, Accept] = {}
        self._links: list[MemoryLink] = []
        self._cut: set[frozenset[str]] = set()
        self._names = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    def transport(self) -> MemoryTransport:
        """A transport on this network (one per node)."""
        return MemoryTransport(self, f"mem://dialer-{next(self._names)}")

    async def partition(self, group_a: Iterable[str], group_b: Iterable[str]) -> None:
        """Cut every link between the two groups of addresses until ``heal``."""
        for a in group_a:
            for b in group_b:
                self._cut.add(frozenset((a, b)))
        for link in list(self._links):
            if link.other is not None and frozenset((link.local, link.remote)) in self._cut:
                await link.close()

    def heal(self) -> None:
        """Allow links between every pair again."""
        self._cut.clear()

    async def _connect(self, source: str, address: str) -> Link:
        accept = self._listeners.get(address)
        if accept is None:
            raise LinkClosed(f"nothing listens at {address}")
        if frozenset((source, address)) in self._cut:
            raise LinkClosed(f"{source} and {address} are partitioned")
        forward: asyncio.Queue[bytes] = asyncio.Queue(self.queue_frames)
        backward: asyncio.Queue[bytes] = asyncio.Queue(self.queue_frames)
        near = MemoryLink(backward, forward, source, address)
        far = MemoryLink(forward, backward, address, source)
        near.other, far.other = far, near
        self._links = [link for link in self._links if not link._closed] + [near, far]
        task = asyncio.get_running_loop().create_task(accept(far))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return near


class MemoryTransport:
    """One node's access to a ``MemoryNetwork``."""

    def __init__(self, network: MemoryNetwork, dialer: str) -> None:
        self.network = network
        self.address = dialer  # this node's address once listening; a dialer name before

    async def listen(self, address: str, accept: Accept) -> str:
        if not address.startswith("mem://"):
            address = f"mem://{address}"
        if address in self.network._listeners:
            raise OSError(f"address {address} is in use")
        self.network._listeners[address] = accept
        self.address = address
        return address

    async def resolve(self, address: str) -> list[str]:
        return [address]

    async def connect(self, address: str) -> Link:
        return await self.network._connect(self.address, address)

    async def close(self) -> None:
        self.network._listeners.pop(self.address, None)
