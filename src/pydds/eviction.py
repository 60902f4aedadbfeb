"""Which copies a node over its memory limit evicts, and when it gives up (sans-IO).

Theory of operation
-------------------
Past ``Limits.max_memory`` (``Footprint.over``), ``Evictor.run`` first suspends live
documents, least recently used first (a live ``YDoc`` takes about 3.4 KB, its
encoded state a few hundred bytes: the copy stays, only an edit loads it again),
down to ``LIVE_FLOOR`` of them. Then it takes candidates from
``Footprint.sample`` (the policy's first choice first) and evicts the first that may
go, until the held values fit again or ``MAX_EVICTIONS`` went in one run. A copy may
go when another copy stays:

* to this node's store, when it takes copies now (``Store.can_spill``): the copy is
  written there and a read here reloads it from disk;
* else when a linked node holds it whose name sorts before this node's
  (``Peers.held_elsewhere(keeper=True)``): of all the nodes holding a value, the first
  by name never evicts it but to its disk, so two nodes evicting at once, each
  counting on the other, cannot drop the last copy.

A pinned key is never evicted; neither is a directory. When ``MISSES`` samples in a
row hold nothing that may go, the node is *full*: ``run`` says so (the node logs it,
counts it and publishes a ``memory_full`` event), writes go on regardless (a limit
that refused writes would lose data that has no other copy), and the next attempt
waits ``RETRY`` seconds or until the held values grew by a sixteenth of the limit.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .crdt.keydoc import LiveDocs
from .keyspace import Keyspace
from .memory import Footprint

__all__ = ["LIVE_FLOOR", "MAX_EVICTIONS", "MISSES", "RETRY", "Eviction", "Evictor"]

#: Copies one run evicts at most (the rest at the next write or timer tick).
MAX_EVICTIONS = 10_000
#: Samples in a row with nothing evictable after which the node is full.
MISSES = 8
#: Seconds a full node waits before it tries again (unless its values grew).
RETRY = 1.0
#: Live documents a node past its limit keeps (the ones edited most recently).
LIVE_FLOOR = 64


@dataclass(frozen=True, slots=True)
class Eviction:
    """One copy evicted: where its other copy is, and its state for the store."""

    database: str
    key: str
    gen: int
    state: bytes | None  # the whole copy, for the store (None: a peer holds it)


class Evictor:
    """Evicts copies past a node's memory limit; counts what it did.

    Example::

        evictor = Evictor(footprint, keyspaces, clock.now)
        evictions, full = evictor.run(can_spill=True, elsewhere=peers_hold)
    """

    def __init__(
        self,
        footprint: Footprint,
        keyspaces: Mapping[str, Keyspace],
        now: Callable[[], float],
        live: LiveDocs | None = None,
    ) -> None:
        self.footprint = footprint
        self._live = live
        self._keyspaces = keyspaces
        self._now = now
        self.evicted: Counter[str] = Counter()  # by where the other copy is: disk, peer
        self.reloaded: Counter[str] = Counter()  # reads that took a copy back: disk, peer
        self.full = 0  # runs that found nothing to evict
        self._retry_at = -math.inf  # a full node tries again from then on...
        self._retry_used = 0  # ...or once it holds this much

    def snapshot(self) -> dict[str, Any]:
        """The memory figures, JSON-ready (``GET /v1/stats`` lists them as ``memory``)."""
        footprint = self.footprint
        return {
            "used": footprint.used,
            "limit": footprint.limit,
            "policy": footprint.policy,
            "held": len(footprint),
            "evicted": {"disk": self.evicted["disk"], "peer": self.evicted["peer"]},
            "reloaded": {"disk": self.reloaded["disk"], "peer": self.reloaded["peer"]},
            "full": self.full,
        }

    def due(self) -> bool:
        """Whether ``run`` has work: over the limit, and not waiting after a full run."""
        footprint = self.footprint
        if not footprint.over:
            return False
        return footprint.used >= self._retry_used or self._now() >= self._retry_at

    def run(
        self, *, spill_room: int, elsewhere: Callable[[str, str, int], bool]
    ) -> tuple[list[Eviction], bool]:
        """Evict until the held values fit (or ``MAX_EVICTIONS``); the evictions, and
        whether the node is full (nothing could go). ``spill_room``: copies the
        store takes now (``Store.spill_room``); ``elsewhere(database, key, gen)``: a
        keeper node holds that copy."""
        footprint, keyspaces = self.footprint, self._keyspaces
        now = self._now()
        out: list[Eviction] = []
        live = self._live
        while footprint.over and live is not None and len(live) > LIVE_FLOOR:
            live.suspend_oldest()
        misses = 0
        while footprint.over and misses < MISSES and len(out) < MAX_EVICTIONS:
            for database, key, kd in footprint.sample(now):
                keyspace = keyspaces[database]
                if keyspace.pinned(key) or keyspace.on_disk(key) is not None:
                    continue  # pinned, or partial (its disk copy is merged in first)
                if spill_room > 0:
                    spill_room -= 1
                    state = keyspace.copy_of(key)
                elif elsewhere(database, key, kd.gen):
                    state = None
                else:
                    continue
                gen = keyspace.evict(key, to_disk=state is not None)
                assert gen is not None  # sampled: held
                self.evicted["disk" if state is not None else "peer"] += 1
                out.append(Eviction(database, key, gen, state))
                misses = 0
                break
            else:
                misses += 1
        full = footprint.over and misses >= MISSES
        if full:
            self.full += 1
            assert footprint.limit is not None
            self._retry_at = now + RETRY
            self._retry_used = footprint.used + footprint.limit // 16
        else:
            self._retry_at, self._retry_used = -math.inf, 0
        return out, full
