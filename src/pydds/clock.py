"""Time as a parameter: the node reads time and sleeps through a ``Clock``.

``RealClock`` is the event loop's monotonic clock. ``FakeClock`` stands still until
a test moves it with ``advance``, so heartbeats, timeouts and expiry run
deterministically and at once.

``now`` measures durations (timeouts, staleness); ``wall`` is the time of day, the
one scale that nodes share: a key's time-to-live deadline travels as a ``wall``
time, so every node expires the key at the same moment, up to their clocks' skew.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol

__all__ = ["Clock", "FakeClock", "RealClock"]


class Clock(Protocol):
    """What a node needs of time."""

    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    def wall(self) -> float:
        """Seconds since the Unix epoch (the time of day)."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``now() >= deadline``."""
        ...


class RealClock:
    """The monotonic clock (the one asyncio's event loop uses)."""

    def now(self) -> float:
        return time.monotonic()  # what asyncio's default event loop measures time by

    def wall(self) -> float:
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        delay = deadline - self.now()
        if delay > 0:
            await asyncio.sleep(delay)


class FakeClock:
    """A clock that moves only when told to.

    Example::

        clock = pydds.FakeClock()
        node = pydds.Node(clock=clock, ...)
        await clock.advance(5.0)     # wakes every sleeper whose deadline passed
    """

    #: ``wall()`` at ``now() == 0``: a day of 2026, so that wall times look real.
    EPOCH = 1_780_000_000.0

    def __init__(self, start: float = 0.0, *, epoch: float = EPOCH) -> None:
        self._now = start
        self._epoch = epoch  # wall() - now(); another epoch models a skewed clock
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._epoch + self._now

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._order), future))
        await future

    async def advance(self, seconds: float, step: float = 0.1) -> None:
        """Move time forward by ``seconds`` in steps of at most ``step``, letting the
        woken tasks run at each step (as they would in real time)."""
        target = self._now + seconds
        while True:
            self._now = min(target, self._now + step)
            while self._sleepers and self._sleepers[0][0] <= self._now:
                _, _, future = heapq.heappop(self._sleepers)
                if not future.done():
                    future.set_result(None)
            for _ in range(20):  # let woken tasks and what they start run
                await asyncio.sleep(0)
            if self._now >= target:
                return
