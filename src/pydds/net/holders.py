"""Which peers hold which values: a node tracks it for every key of every database.

Theory of operation
-------------------
A value is identified by ``(database, key, generation)``; its holders are a set of
peer names. A node that joined a cluster of a million keys knows a holder for each of
them, so the sets are immutable and shared: every value held by the same peers points
to one ``frozenset`` (a mutable set per value cost 330 bytes a key, 115 now),
and a value nobody holds has no entry at all. Changing a value's holders swaps its
set for the shared one with the peer added or removed.

The table of shared sets is bounded (``MAX_SHARED`` distinct sets; past that it starts
over, which only costs sharing, never correctness).
"""

from __future__ import annotations

from collections.abc import ItemsView

from ..crdt.tables import shrunk

__all__ = ["MAX_SHARED", "Holders", "ValueId"]

ValueId = tuple[str, str, int]  # database, key, generation
MAX_SHARED = 4096  # distinct holder sets kept for sharing
_NOBODY: frozenset[str] = frozenset()


class Holders:
    """Peers by value, as shared immutable sets.

    Example::

        holders = Holders()
        holders.add(("db", "k", 1), "b")
        holders[("db", "k", 1)]          # frozenset({'b'})
        holders.drop_peer("b")           # its link closed
        ("db", "k", 1) in holders        # False: nobody holds it
    """

    def __init__(self) -> None:
        self._by_value: dict[ValueId, frozenset[str]] = {}
        self._shared: dict[frozenset[str], frozenset[str]] = {}

    def __getitem__(self, value: ValueId) -> frozenset[str]:
        """The peers that hold ``value`` (empty if none)."""
        return self._by_value.get(value, _NOBODY)

    def __contains__(self, value: object) -> bool:
        return value in self._by_value

    def __len__(self) -> int:
        return len(self._by_value)

    def items(self) -> ItemsView[ValueId, frozenset[str]]:
        """``(value, peers)`` for every value some peer holds."""
        return self._by_value.items()

    def add(self, value: ValueId, peer: str) -> None:
        """``peer`` holds ``value``."""
        current = self._by_value.get(value, _NOBODY)
        if peer not in current:
            self._by_value[value] = self._share(current | {peer})

    def discard(self, value: ValueId, peer: str) -> None:
        """``peer`` no longer holds ``value``."""
        current = self._by_value.get(value)
        if current is None or peer not in current:
            return
        rest = current - {peer}
        if rest:
            self._by_value[value] = self._share(rest)
        else:
            del self._by_value[value]

    def compact(self) -> None:
        """Give back the memory of values no longer held (``tables.shrunk``)."""
        self._by_value = shrunk(self._by_value)
        self._shared = shrunk(self._shared)

    def drop(self, value: ValueId) -> None:
        """Nobody holds ``value`` any more (its generation is gone)."""
        self._by_value.pop(value, None)

    def drop_peer(self, peer: str) -> None:
        """``peer`` holds nothing (its link closed)."""
        without: dict[frozenset[str], frozenset[str]] = {}  # each shared set once
        emptied: list[ValueId] = []
        by_value = self._by_value
        for value, current in by_value.items():
            if peer in current:
                rest = without.get(current)
                if rest is None:
                    rest = without[current] = self._share(current - {peer})
                if rest:
                    by_value[value] = rest  # replacing a value, not adding a key
                else:
                    emptied.append(value)
        for value in emptied:
            del by_value[value]

    def _share(self, peers: frozenset[str]) -> frozenset[str]:
        """The one shared set equal to ``peers``."""
        shared = self._shared.get(peers)
        if shared is None:
            if len(self._shared) >= MAX_SHARED:
                self._shared.clear()
            shared = self._shared[peers] = peers
        return shared
