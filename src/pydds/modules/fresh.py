"""Keep-fresh: this node always holds, current, the databases and key prefixes it pins.

A pinned key never goes stale here, so changes made anywhere keep coming; every
pinned key this node does not hold (a key created elsewhere, or one it knew only by
its directory entry) is pulled, at start once links are open and whenever a key
appears. With persistence on the same node, the node is a full durable replica of
what it pins.

Pins are ``database`` (every key) or ``database/prefix``: ``"config"``,
``"users/eu:"``. From the command line::

    pydds serve --module 'pydds.modules.fresh:KeepFresh?pin=config,users/eu:'
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..config import check_name
from ..errors import KeyNotFound, NodeClosed, Unavailable
from ..events import Event, EventKind
from .base import EventFilter, Module

if TYPE_CHECKING:
    from ..node import Node

__all__ = ["KeepFresh"]

log = logging.getLogger("pydds.fresh")

_RESCAN = {EventKind.JOINED, EventKind.REACHABLE, EventKind.OVERFLOW, EventKind.WARMED}


def parse_pins(pins: str | Iterable[str]) -> list[tuple[str, str]]:
    """``"db,db/prefix"`` (or a list of them) -> [(database, prefix), ...].

    Raises:
        ValueError: a database name breaks the rules, or no pin is given.
    """
    items = pins.split(",") if isinstance(pins, str) else list(pins)
    out = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        database, _, prefix = item.partition("/")
        check_name("database", database)  # an InvalidName is a ValueError
        out.append((database, prefix))
    if not out:
        raise ValueError("keep-fresh needs at least one pin: database or database/prefix")
    return out


class KeepFresh(Module):
    """Pins databases or key prefixes on its node (see the module docstring).

    Example::

        node = pydds.Node(modules=[KeepFresh(pin="config,users/eu:")])

    Args:
        pin: what to keep fresh: ``database`` or ``database/prefix``, comma-separated
            or as a list.
        concurrency: pulls in flight at most.
        rescan: seconds between two checks for pinned keys not held yet (keys whose
            holders were unreachable are tried again then).
    """

    name = "keep-fresh"
    events = EventFilter(kinds=["created", "changed", "joined", "reachable", "warmed"])

    def __init__(
        self, pin: str | Iterable[str] = (), concurrency: int | str = 32, rescan: float | str = 30.0
    ) -> None:
        self.pins = parse_pins(pin)
        self.concurrency = int(concurrency)
        self.rescan = float(rescan)
        if self.concurrency < 1 or self.rescan <= 0:
            raise ValueError("concurrency must be >= 1 and rescan > 0")
        self.pulled = 0  # values pulled because they are pinned
        self.failed = 0  # pulls that found no holder (tried again later)
        self._node: Node | None = None
        self._queue: deque[tuple[str, str]] = deque()
        self._queued: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def pinned(self, database: str | None, key: str | None) -> bool:
        """Whether this module pins ``key`` of ``database``."""
        return any(
            database == name and key is not None and key.startswith(prefix)
            for name, prefix in self.pins
        )

    async def start(self, node: Node) -> None:
        self._node = node
        for name, prefix in self.pins:
            await node.database(name).pin(prefix)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._puller()) for _ in range(self.concurrency)]
        self._tasks.append(loop.create_task(self._rescan_forever()))
        self._scan()

    async def on_event(self, event: Event) -> None:
        if event.kind in _RESCAN:
            self._scan()
        elif self.pinned(event.database, event.key):
            assert event.database is not None
            assert event.key is not None
            self._want(event.database, event.key)

    def _scan(self) -> None:
        """Queue every pinned key not held here."""
        node = self._node
        if node is None or node.closed:
            return
        for name, prefix in self.pins:
            db = node.database(name)
            for key in db.keys(prefix):
                if not db.holds(key):
                    self._want(name, key)

    def _want(self, database: str, key: str) -> None:
        node = self._node
        if node is None or node.database(database).holds(key):
            return
        item = (database, key)
        if item not in self._queued:
            self._queued.add(item)
            self._queue.append(item)
            self._wake.set()

    async def _puller(self) -> None:
        node = self._node
        assert node is not None
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            database, key = item = self._queue.popleft()
            try:
                db = node.database(database)
                if not db.holds(key):
                    await db.get(key)
                    self.pulled += 1
            except (Unavailable, KeyNotFound):
                self.failed += 1  # no holder now, or deleted: the rescan tries again
            except NodeClosed:
                return
            finally:
                self._queued.discard(item)

    async def _rescan_forever(self) -> None:
        node = self._node
        assert node is not None
        while True:
            await node.clock.sleep_until(node.clock.now() + self.rescan)
            self._scan()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        log.info("keep-fresh pulled %d values (%d failed)", self.pulled, self.failed)
