"""What the values held on a node take in memory, and which copies to evict first.

Theory of operation
-------------------
Every held value document (``KeyDoc``) of every database is measured after each
operation that changes it (``measure``), and again when the node's ``LiveDocs``
suspends it (``resize``): its ``KeyDoc.footprint`` plus ``ENTRY``, this table's own
cost. ``used`` is their sum: what evicting every copy would give back, an estimate
and not the process's RSS (directories, holder tables, links' buffers and the
interpreter are not in it; docs/semantics.md, "A memory limit", says what is).

The table keeps the held documents in parallel arrays (a slot each, its index in
``KeyDoc.mem_slot``; a removal moves the last slot into the gap), so that picking
eviction candidates is O(1): ``sample`` draws ``SAMPLES`` held values at random and
ranks them by the policy, as Redis's approximated LRU and LFU do.

* ``lru``: the value least recently read or written here first (``KeyDoc.accessed``).
* ``lfu``: the value read or written least often first. Its count (``bump``) halves
  for every ``LFU_HALF_LIFE`` seconds without an access, so that what was popular an
  hour ago gives way to what is popular now, and a value starts at ``LFU_START``, so
  that the value just written is not the first to go.

Who may be evicted (a copy another node holds, or one this node's store keeps) is
the node's decision; this module only measures and ranks.
"""

from __future__ import annotations

import random
from array import array

from .config import EvictionPolicy as Policy
from .crdt.keydoc import UNTRACKED, KeyDoc

__all__ = ["ENTRY", "LFU_HALF_LIFE", "LFU_START", "POLICIES", "SAMPLES", "Footprint", "Policy"]

POLICIES: tuple[Policy, ...] = ("lru", "lfu")
#: Bytes this table spends per held value (its slots, a key and a database reference).
ENTRY = 48
#: Held values drawn at random for one eviction (Redis draws 5 by default; 16 ranks
#: within the oldest few percent).
SAMPLES = 16
#: Seconds without an access that halve a value's ``lfu`` count.
LFU_HALF_LIFE = 60.0
#: The ``lfu`` count of a value just held.
LFU_START = 5.0


class Footprint:
    """The held values of one node, measured, and ranked for eviction.

    Example::

        footprint = Footprint(limit=100 << 20, policy="lru")
        footprint.measure("cache", "k", keydoc)   # after an operation changed it
        footprint.over                             # past the limit?
        for database, key, keydoc in footprint.sample(now):
            ...                                    # the best candidate first
    """

    def __init__(
        self,
        limit: int | None = None,
        policy: Policy = "lru",
        *,
        rng: random.Random | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"an eviction policy is 'lru' or 'lfu', not {policy!r}")
        self.limit = limit  # bytes; None: no limit (measured all the same)
        self.policy: Policy = policy
        self.lfu = policy == "lfu"
        self.used = 0  # bytes of every held value, estimated
        self._rng = rng or random.Random()
        self._databases: list[str] = []
        self._keys: list[str] = []
        self._docs: list[KeyDoc] = []
        self._sizes = array("q")
        self._counts = array("d")  # the ``lfu`` counts, as of ``KeyDoc.accessed``

    def __len__(self) -> int:
        """How many held values it tracks."""
        return len(self._docs)

    @property
    def over(self) -> bool:
        """Whether the held values take more than the limit."""
        limit = self.limit
        return limit is not None and self.used > limit

    def measure(self, database: str, key: str, keydoc: KeyDoc) -> None:
        """Measure ``keydoc`` (the value of ``key`` in ``database``) again, tracking
        it from now on if it is held, forgetting it if it no longer is."""
        size = keydoc.footprint()
        slot = keydoc.mem_slot
        if slot < 0:
            if not size:
                return
            keydoc.mem_slot = len(self._docs)
            self._databases.append(database)
            self._keys.append(key)
            self._docs.append(keydoc)
            self._sizes.append(size + ENTRY)
            self._counts.append(LFU_START)
            self.used += size + ENTRY
        elif not size:
            self.forget(keydoc)
        else:
            size += ENTRY
            self.used += size - self._sizes[slot]
            self._sizes[slot] = size

    def resize(self, keydoc: KeyDoc) -> None:
        """Measure a tracked ``keydoc`` again (``LiveDocs`` suspended it)."""
        slot = keydoc.mem_slot
        if slot >= 0:
            size = keydoc.footprint() + ENTRY
            self.used += size - self._sizes[slot]
            self._sizes[slot] = size

    def forget(self, keydoc: KeyDoc) -> None:
        """Stop tracking ``keydoc`` (closed, or evicted); its mark is ``UNTRACKED``."""
        slot = keydoc.mem_slot
        if slot < 0:
            return
        self.used -= self._sizes[slot]
        last = len(self._docs) - 1
        if slot != last:
            moved = self._docs[slot] = self._docs[last]
            moved.mem_slot = slot
            self._databases[slot] = self._databases[last]
            self._keys[slot] = self._keys[last]
            self._sizes[slot] = self._sizes[last]
            self._counts[slot] = self._counts[last]
        self._docs.pop()
        self._databases.pop()
        self._keys.pop()
        self._sizes.pop()
        self._counts.pop()
        keydoc.mem_slot = UNTRACKED

    def bump(self, keydoc: KeyDoc, now: float) -> None:
        """Count an access to ``keydoc`` for ``lfu`` (call before ``accessed`` moves)."""
        slot = keydoc.mem_slot
        if slot >= 0:
            self._counts[slot] = self._decayed(slot, keydoc, now) + 1.0

    def _decayed(self, slot: int, keydoc: KeyDoc, now: float) -> float:
        idle = now - keydoc.accessed
        count = self._counts[slot]
        return count if idle <= 0 else count * 0.5 ** (idle / LFU_HALF_LIFE)

    def size_of(self, keydoc: KeyDoc) -> int:
        """The bytes counted for a tracked ``keydoc`` (0 if untracked)."""
        slot = keydoc.mem_slot
        return self._sizes[slot] if slot >= 0 else 0

    def sample(self, now: float, count: int = SAMPLES) -> list[tuple[str, str, KeyDoc]]:
        """Up to ``count`` held values drawn at random, the policy's first choice
        first: (database, key, document)."""
        held = len(self._docs)
        if not held:
            return []
        slots = range(held) if held <= count else self._rng.sample(range(held), count)
        if self.lfu:
            ranked = sorted(
                slots, key=lambda s: (self._decayed(s, self._docs[s], now), self._docs[s].accessed)
            )
        else:
            ranked = sorted(slots, key=lambda s: self._docs[s].accessed)
        return [(self._databases[s], self._keys[s], self._docs[s]) for s in ranked]
