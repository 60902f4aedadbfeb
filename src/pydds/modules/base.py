"""What a module is: a named part of a node with a start, a stop, and events."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..events import Event
    from ..node import Node

__all__ = ["EventFilter", "Module"]


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a module receives: the filters of ``Node.events``."""

    database: str | None = None
    prefix: str | None = None
    kinds: Iterable[str] | None = None
    names: Iterable[str] | None = None


class Module:
    """A part of a node: persistence, keeping data fresh, statistics, or yours.

    Subclass it, set ``name`` and ``events`` (None: no events), and override what
    you need. A module may read and write the node's data, pin keys, emit custom
    events and handle them (``node.on``).

    Example::

        class Audit(pydds.Module):
            name = "audit"
            events = pydds.EventFilter(kinds=["deleted"])

            async def on_event(self, event):
                print("deleted", event.database, event.key, "on", event.origin)

        async with pydds.Node(modules=[Audit()]) as node:
            ...

    The node isolates its modules: an exception from ``on_event`` is logged and
    counted (``node.module_errors``); events wait in a bounded queue
    (``queue_size``, the oldest dropped when full, then one ``overflow`` event);
    ``start`` and ``stop`` have time limits (``start_timeout``, ``stop_timeout``).
    A module whose ``start`` fails or runs out of time stops the node's start with
    ``pydds.ModuleError``.
    """

    name: str = "module"
    events: EventFilter | None = None  # the events to receive; None: none
    queue_size: int = 10_000  # the bound of the module's event queue
    start_timeout: float = 30.0  # seconds ``start`` may take
    stop_timeout: float = 10.0  # seconds ``stop`` may take; then it is cancelled

    async def start(self, node: Node) -> None:
        """Called when the node starts, before it listens or joins."""

    async def on_event(self, event: Event) -> None:
        """Called with each event that passes ``events``, one at a time, in order."""

    async def stop(self) -> None:
        """Called when the node closes, before its links close."""
