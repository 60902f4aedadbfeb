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
