"""The event loop a program runs pydds on: uvloop where it is installed, else asyncio's.

pydds works on any asyncio event loop. uvloop (installed with pydds on Linux and
macOS) runs the same node with less overhead per I/O event: on the cluster
benchmark it takes about 80 us off a write's one-way latency (see
``docs/cluster.md``). ``pydds serve`` uses it by default (``--loop``); a program
of your own can do the same with ``pydds.run``::

    import pydds

    async def main():
        async with pydds.Node(listen="127.0.0.1:0") as node:
            ...

    pydds.run(main())                  # uvloop if installed, else asyncio's loop
    pydds.run(main(), loop="asyncio")  # asyncio's own loop

In Jupyter the kernel's loop is already running: use ``await`` there instead.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LOOPS", "loop_factory", "resolve_loop", "run"]

T = TypeVar("T")

LOOPS = ("auto", "uvloop", "asyncio")  # what ``loop`` may name


def resolve_loop(loop: str = "auto") -> str:
    """``"uvloop"`` or ``"asyncio"``: what ``loop`` means on this machine
    (``"auto"``: uvloop when it can be imported).

    Raises:
        ValueError: ``loop`` is not one of ``LOOPS``, or ``"uvloop"`` is asked for
            and not installed.
    """
    if loop not in LOOPS:
        raise ValueError(f"loop must be one of {', '.join(LOOPS)}, not {loop!r}")
    installed = importlib.util.find_spec("uvloop") is not None
    if loop == "uvloop" and not installed:
        raise ValueError("loop 'uvloop' asked for, but uvloop is not installed")
    if loop == "auto":
        return "uvloop" if installed else "asyncio"
    return loop


def loop_factory(loop: str = "auto") -> Callable[[], asyncio.AbstractEventLoop]:
    """A function that makes a new event loop of the kind ``loop`` names."""
    if resolve_loop(loop) == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T], *, loop: str = "auto", debug: bool | None = None) -> T:
    """Run ``main`` to completion on a new event loop of the kind ``loop`` names, as
    ``asyncio.run`` does, and return its result.

    Raises:
        ValueError: an unknown ``loop``, or uvloop asked for and not installed
            (``main`` is closed, not run).
    """
    try:
        factory = loop_factory(loop)
    except ValueError:
        main.close()
        raise
    with asyncio.Runner(debug=debug, loop_factory=factory) as runner:
        return runner.run(main)
