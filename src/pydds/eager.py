"""Running a coroutine's first step at once, in the caller, as an eager task does.

A send that the peer's buffer does not hold up completes in its first step: run
eagerly, it costs no turn of the event loop. One that must wait goes on in a task
of its own, so that the caller never waits for it.

Example::

    rest = eager.start(link.send(frame))   # sent already, unless ``rest`` is a task
    if rest is not None:
        rest.add_done_callback(...)        # it finishes later
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["start"]

T = TypeVar("T")


def start(coro: Coroutine[Any, Any, T]) -> asyncio.Task[T] | None:
    """Run ``coro`` until it first waits: None if it finished (its result is
    dropped), else a task that carries it on. An exception its first step raises
    is raised here.
    """
    try:
        waiting = coro.send(None)
    except StopIteration:
        return None
    return asyncio.get_running_loop().create_task(_carry_on(coro, waiting))


async def _carry_on(coro: Coroutine[Any, Any, T], waiting: Any) -> T:
    """Go on with ``coro``, suspended on ``waiting`` (what its step yielded: a
    future, or None for a bare turn of the loop), as a task steps its coroutine."""
    while True:
        try:
            if waiting is None:
                await asyncio.sleep(0)
            else:
                # Its step set this when it yielded the future; a task clears it on
                # taking the future (else awaiting it again reads as a misuse).
                waiting._asyncio_future_blocking = False
                await waiting
        except BaseException as exc:  # cancelled, or the future failed: coro's to handle
            try:
                waiting = coro.throw(exc)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            continue
        try:
            waiting = coro.send(None)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
