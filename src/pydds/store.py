"""What keeps a node's data on disk: the ``Store`` protocol (the persistence module
provides one)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

from .keyspace import Journal

__all__ = ["Store"]


class Store(Protocol):
    """What keeps a node's data on disk (the persistence module is one)."""

    def journal(self, database: str) -> Journal:
        """The journal of ``database``: it receives every update that changes it."""
        ...

    def barrier(self) -> Awaitable[None]:
        """Done once everything journaled so far is on disk.

        Raises:
            StorageError: it could not be written.
        """
        ...

    @property
    def spill_room(self) -> int:
        """How many copies ``spill`` takes now (0 while the disk fails, or its queue
        of copies is full)."""
        ...

    def spill(self, database: str, key: str, gen: int, state: bytes) -> None:
        """Keep the whole copy (``state``, of generation ``gen``) of a value the node
        evicts from memory, for ``load_value`` to give back; never dropped, even
        while the disk fails (so the node spills only within ``spill_room``). A copy
        of a generation the store has merges with it."""
        ...

    def load_value(self, database: str, key: str) -> Awaitable[tuple[int, bytes] | None]:
        """The copy of a value the store keeps: (generation, state); None if none.

        Raises:
            StorageError: it could not be read.
        """
        ...
