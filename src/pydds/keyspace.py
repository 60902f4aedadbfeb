"""The state of one database on one node: its directory, its keys' value documents,
and how local operations and changes from elsewhere move them.

Theory of operation
-------------------
``_keys`` maps every live key (a directory entry that is not deleted) to the
``KeyDoc`` of its current generation. Local operations check their input, then write
the value document (and the directory when a key appears or goes), and return the
operation's ``Change``: the caller (the node) turns it into an event and ships it.
Nothing leaves a keyspace but what its methods return.

``apply`` takes a ``Change`` made elsewhere. The directory delta comes first: every
entry it changed is reconciled with ``_keys`` (created, deleted, or replaced by a
newer generation; an entry never goes backwards, see ``crdt/directory.py``). Then
the value delta goes to the document of its generation. A value delta for a
generation the directory does not know yet waits in a bounded buffer (``early``)
until its entry arrives; one for a generation already gone is dropped. Applying
returns the changes it made, in order: one with an event kind per key changed
(carrying the value delta).

Tombstones (deleted or expired entries) older than ``Limits.tombstone_horizon`` are
pruned (``prune``) while the node is in touch with its cluster; a directory last in
touch before a peer pruned is reconciled with that peer's whole directory
(``behind``, ``reconcile``; docs/semantics.md, "Deleted keys").

A key with a time to live carries its deadline (wall-clock seconds) in its
directory entry, so every replica knows it. From the deadline on, the key is
absent for every read here (``read``, ``keys``, ``in``, ``len``) though it is still
in ``_keys``; it *lapses* (its document closed, an ``expired`` change made, with no
delta: each node lapses a key by its own clock, nothing is shipped) when
``expire_due`` runs at the node's timer, or at once when a write touches it. A
write's lapse waits in ``lapsed`` (``take_lapsed``) for the caller to publish it
before the write's own change. ``_expiry`` is a heap of ``(deadline, key, gen)``
whose entries that no longer match ``_deadlines`` are skipped when they surface.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from .changes import Change, make
from .collector import bulk_load
from .config import DatabaseSettings, Limits
from .crdt import values
from .crdt.directory import Directory, Entry, EntryChange, decode_update, encode_update
from .crdt.keydoc import (
    EVICTED,
    MISSING,
    ON_DISK,
    UNTRACKED,
    KeyDoc,
    LiveDocs,
)
from .crdt.sync import update_state_vector
from .crdt.tables import shrunk
from .crdt.ydoc import EMPTY_STATE_VECTOR
from .errors import InvalidValue, KeyNotFound
from .events import EventKind
from .memory import Footprint

__all__ = ["KEEP", "NOT_HELD", "STALE", "Journal", "Keyspace"]

#: Event-loop time one sweep of one database may take. A database too large to walk
#: in that time is swept over several calls (one a second): a million keys take about
#: a minute and a half here, so peers may learn of a stale copy that much later;
#: reads see staleness on time regardless.
SWEEP_BUDGET = 0.004
SWEEP_CHUNK = 1000  # keys examined between looks at the clock
#: Up to this many keys ``counts`` walks them all; beyond, it reports what the last
#: complete sweep pass counted (a walk of a million keys would hold the loop ~0.2 s).
EXACT_COUNTS = 100_000
#: A directory update at least this large is applied with the cyclic garbage collector
#: paused (a joining node's whole directory, say).
BULK_BYTES = 64 * 1024
#: Keys one ``expire_due`` call lapses at most (a million keys expiring at once are
#: lapsed over several turns of the node's timer; reads see them gone on time).
LAPSE_CHUNK = 10_000
#: A write's ``deadline`` that leaves the key's time to live as it is.
KEEP: float | None = None
_NEVER = math.inf
#: Seconds between two walks of a directory for tombstones to prune, at most.
PRUNE_EVERY = 60.0
NO_ENTRIES = encode_update(())  # a directory update of nothing


_unpack = values.unpack

#: ``read`` of a key whose value this node does not hold (it must be pulled).
NOT_HELD: Any = object()
#: ``read`` of a key whose copy here is stale (it must be refreshed, or read anyway
#: with ``read(key, fresh=False)``).
STALE: Any = object()

#: ``journal(key, gen, update)``: every CRDT update that changed this node's state,
#: local or not, for a store to keep: key ``""`` for the directory (gen 0), and an
#: empty update for "generation ``gen`` of ``key`` is gone" (deleted or replaced).
Journal = Callable[[str, int, bytes], None]


class Keyspace:
    """One database's keys and documents on one node (synchronous, no IO)."""

    def __init__(
        self,
        name: str,
        settings: DatabaseSettings,
        *,
        client_id: int,
        node_name: str,
        limits: Limits,
        live: LiveDocs,
        now: Callable[[], float] = lambda: 0.0,
        wall: Callable[[], float] = time.time,
        footprint: Footprint | None = None,
    ) -> None:
        self.name = name  # the database's name
        self.settings = settings  # expiry and other per-database settings
        self.client_id = client_id  # the Yjs client id of this node's writes
        self.node_name = node_name  # the origin of this node's changes
        self.limits = limits
        self.directory = Directory()
        self.dropped_updates = 0  # value deltas dropped: too early with the buffer full
        self._keys: dict[str, KeyDoc] = {}
        self._live = live
        self._footprint = footprint  # the node's measure of held values (memory limit)
        self._lfu = footprint is not None and footprint.lfu
        #: Keys whose copy here is partial (changes that came after it was evicted to
        #: disk): the copy on disk is merged in before the next read or write.
        self._behind: set[str] = set()
        self._now = now  # the node's clock
        self._wall = wall  # the node's time of day: TTL deadlines are on this scale
        self._deadlines: dict[str, float] = {}  # live keys with a time to live
        self._expiry: list[tuple[float, str, int]] = []  # heap: (deadline, key, gen)
        self.lapsed: list[Change] = []  # writes' lapses, for ``take_lapsed``
        self._early: dict[tuple[str, int], list[bytes]] = {}
        self._prune_at = -math.inf  # when ``prune`` may walk the directory next
        #: Whether this node is in touch with its cluster (linked to a majority of its
        #: members, or alone): the node sets it. Out of touch, nothing is pruned, and
        #: the keys whose entries this node writes are kept in ``_offline``.
        self.in_touch: Callable[[], bool] = lambda: True
        self.touched_at = wall()  # when this node was last in touch (wall clock)
        self.pruned = -math.inf  # tombstones of keys gone before this are forgotten here
        self._offline: set[str] = set()
        #: The node reconciling this directory with (``behind``), and the keys it sent.
        self.fresh_from: str | None = None
        self.fresh_seen: set[str] = set()
        self._early_count = 0
        self._early_bytes = 0
        self._pins: set[str] = set()  # key prefixes that never go stale here
        self._pass: list[str] = []  # the keys of the sweep pass under way
        self._pass_at = 0  # how far that pass has come
        self._tally = (0, 0)  # held and stale values seen by the pass so far
        self._counted: tuple[int, int] | None = None  # held, stale: the last whole pass
        self.journal: Journal | None = None  # set by a store (persistence)

    # -- reads ---------------------------------------------------------------------

    def __len__(self) -> int:
        if not self.due():
            return len(self._keys)
        now = self._wall()
        return len(self._keys) - sum(1 for d in self._deadlines.values() if d <= now)

    def __contains__(self, key: object) -> bool:
        if key not in self._keys:
            return False
        return not (self._deadlines and isinstance(key, str) and self._lapsing(key))

    def keys(
        self,
        prefix: str = "",
        *,
        match: Callable[[str], object] | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[str]:
        """The live keys starting with ``prefix`` (and that ``match`` accepts),
        sorted; with ``after``, only those sorting after it; with ``limit``, the
        first ``limit`` of them (one pass, no sort of the rest: a page of a large
        directory costs a scan of it, not a sort)."""
        keys: Iterable[str] = self._keys
        if prefix:
            keys = (k for k in keys if k.startswith(prefix))
        if after is not None:
            keys = (k for k in keys if k > after)
        if match is not None:
            keys = filter(match, keys)
        if self.due():
            now, deadlines = self._wall(), self._deadlines
            keys = (k for k in keys if deadlines.get(k, _NEVER) > now)
        if limit is not None:
            return heapq.nsmallest(limit, keys)
        return sorted(keys)

    def read(self, key: str, *, fresh: bool = True) -> Any:
        """The value of ``key`` as fresh objects; ``NOT_HELD`` when this node has no
        copy, ``STALE`` when its copy is stale (unless ``fresh`` is False).

        Raises:
            KeyNotFound: the key is absent.
        """
        kd = self._keys.get(key)
        if kd is None or (self._deadlines and self._lapsing(key)):
            raise KeyNotFound(f"key {key!r} is not in database {self.name!r}")
        now = self._now()
        packed = kd.packed
        if packed is not None:  # the common case: a held value, its packing cached
            if fresh and (
                kd.stale or (self.settings.stale_after is not None and self._idle(key, kd, now))
            ):
                return STALE
            if self._lfu:
                self._bump(kd, now)
            kd.accessed = now
            return _unpack(packed)
        if fresh and kd.held and (kd.stale or self._idle(key, kd, now)):
            return STALE
        if not kd.held:
            kd.accessed = now
            return NOT_HELD
        if self._lfu:
            self._bump(kd, now)
        kd.accessed = now
        self._live.touch(kd)
        value = kd.read(self.client_id)
        self._measure(key, kd)  # its packing is cached now, its document maybe live
        # A held document whose writes have not arrived yet (its directory entry came
        # first) reads as None; anti-entropy brings the rest.
        return None if value is MISSING else value

    # -- memory ------------------------------------------------------------------------

    def _measure(self, key: str, kd: KeyDoc) -> None:
        footprint = self._footprint
        if footprint is not None:
            footprint.measure(self.name, key, kd)

    def _bump(self, kd: KeyDoc, now: float) -> None:
        assert self._footprint is not None
        self._footprint.bump(kd, now)

    def evict(self, key: str, *, to_disk: bool) -> int | None:
        """Drop this node's copy of ``key`` (the node made sure another copy stays:
        a holder elsewhere, or, with ``to_disk``, its store, which a read reloads it
        from); the copy's generation, None when nothing is held."""
        kd = self._keys.get(key)
        if kd is None or not kd.held:
            return None
        self._live.discard(kd)
        if self._footprint is not None:
            self._footprint.forget(kd)
        kd.close()
        kd.stale = False
        kd.mem_slot = ON_DISK if to_disk else EVICTED
        return kd.gen

    def copy_of(self, key: str) -> bytes | None:
        """This node's whole copy of ``key`` as one update (None when not held)."""
        kd = self._keys.get(key)
        return None if kd is None else kd.encoded()

    def on_disk(self, key: str) -> int | None:
        """The generation of ``key`` if its copy, or part of it, is in this node's
        store only (evicted there: a read or a write reloads it first, ``reload``);
        None otherwise."""
        kd = self._keys.get(key)
        if kd is None:
            return None
        if (not kd.held and kd.mem_slot == ON_DISK) or (self._behind and key in self._behind):
            return kd.gen
        return None

    def reload(self, key: str, gen: int, state: bytes | None, *, stale: bool) -> bool:
        """Take back the copy of ``key`` that the store kept (``state``, of ``gen``;
        None: the store had none). ``stale``: others may have changed it meanwhile
        (a read then refreshes it). Whether it is held now.

        Raises:
            InvalidUpdate: the state does not decode.
        """
        kd = self._keys.get(key)
        if kd is None or kd.gen != gen or self.on_disk(key) is None:
            return kd is not None and kd.held
        if state is not None:
            update_state_vector(state)  # decodes, or raises before anything changed
        self._behind.discard(key)
        if not kd.held:
            kd.mem_slot = UNTRACKED
            if state is None:
                return False  # nothing on disk after all: it is pulled
            kd.restore(state)
        elif state is not None:  # a partial copy: the one on disk merges into it
            self._live.touch(kd)
            kd.apply(self.client_id, state)
        kd.stale, kd.accessed = stale, self._now()
        self._measure(key, kd)
        return True

    # -- time to live ------------------------------------------------------------------

    def _lapsing(self, key: str) -> bool:
        """Whether ``key`` is past its deadline (absent, though not lapsed yet)."""
        deadline = self._deadlines.get(key)
        return deadline is not None and deadline <= self._wall()

    def due(self) -> bool:
        """Whether some key may be past its deadline (``expire_due`` has work)."""
        expiry = self._expiry
        return bool(expiry) and expiry[0][0] <= self._wall()

    def next_expiry(self) -> float | None:
        """The earliest deadline of a live key (wall clock), None if no key has one."""
        expiry, deadlines, keys = self._expiry, self._deadlines, self._keys
        while expiry:
            deadline, key, gen = expiry[0]
            kd = keys.get(key)
            if deadlines.get(key) == deadline and kd is not None and kd.gen == gen:
                return deadline
            heapq.heappop(expiry)  # a deadline changed or gone since
        return None

    def expire_due(self) -> list[Change]:
        """Lapse the keys whose deadline has passed (at most ``LAPSE_CHUNK``): their
        ``expired`` changes (events only: every node lapses a key by itself)."""
        out = self.take_lapsed()
        now = self._wall()
        while len(out) < LAPSE_CHUNK:
            deadline = self.next_expiry()
            if deadline is None or deadline > now:
                break
            _, key, _ = heapq.heappop(self._expiry)
            out.append(self._lapse(key))
        return out

    def take_lapsed(self) -> list[Change]:
        """The ``expired`` changes of keys that writes lapsed, since the last call."""
        lapsed, self.lapsed = self.lapsed, []
        return lapsed

    def _lapse(self, key: str) -> Change:
        kd = self._keys[key]
        self._close(key, kd)
        return self._lapsed(key, kd.gen)

    def _lapsed(self, key: str, gen: int) -> Change:
        return Change(self.name, key, gen, None, None, self.node_name, EventKind.EXPIRED)

    def _track(self, key: str, gen: int, deadline: float) -> None:
        """Keep ``key``'s deadline (``_NEVER``: none) for reads and ``expire_due``."""
        if deadline == _NEVER:
            self._deadlines.pop(key, None)
            return
        self._deadlines[key] = deadline
        expiry = self._expiry
        heapq.heappush(expiry, (deadline, key, gen))
        if len(expiry) > 2 * len(self._deadlines) + 1024:  # mostly changed deadlines
            keys = self._keys
            self._expiry = [
                (d, k, kd.gen)
                for k, d in self._deadlines.items()
                if (kd := keys.get(k)) is not None
            ]
            heapq.heapify(self._expiry)

    def ttl(self, key: str) -> float | None:
        """Seconds until ``key`` expires; None when it has no time to live.

        Raises:
            KeyNotFound: the key is absent.
        """
        if key not in self:
            raise KeyNotFound(f"key {key!r} is not in database {self.name!r}")
        deadline = self._deadlines.get(key)
        return None if deadline is None else max(0.0, deadline - self._wall())

    def set_deadline(self, key: str, deadline: float) -> Change | None:
        """Give ``key`` the deadline ``deadline`` (wall clock; ``math.inf``: none);
        its change (a ``changed``), None when the key is absent or nothing changed."""
        kd = self._keys.get(key)
        if kd is None or self._lapsing(key):
            if kd is not None:
                self.lapsed.append(self._lapse(key))
            return None
        if self._deadlines.get(key, _NEVER) == deadline:
            return None
        delta = self._put_deadline(key, kd.gen, deadline)
        return Change(self.name, key, kd.gen, delta, None, self.node_name, EventKind.CHANGED)

    def _put_deadline(self, key: str, gen: int, deadline: float) -> bytes | None:
        """Write a TTL change of a live key's entry; the directory delta."""
        entry = self.directory.get(key)
        clock = entry.ttl_clock + 1 if entry is not None and entry.gen == gen else 1
        delta = self._put(key, Entry(gen, False, clock, deadline))
        self._track(key, gen, deadline)
        return delta

    def _idle(self, key: str, kd: KeyDoc, now: float) -> bool:
        stale_after = self.settings.stale_after
        return stale_after is not None and now - kd.accessed >= stale_after and not self.pinned(key)

    # -- pins ------------------------------------------------------------------------

    def pin(self, prefix: str) -> None:
        """Keys starting with ``prefix`` no longer go stale here."""
        self._pins.add(prefix)

    def unpin(self, prefix: str) -> None:
        """Undo ``pin(prefix)`` (keys idle for ``stale_after`` go stale at the next sweep)."""
        self._pins.discard(prefix)

    def pins(self) -> list[str]:
        """The pinned prefixes, sorted."""
        return sorted(self._pins)

    def pinned(self, key: str) -> bool:
        """Whether ``key`` is pinned (never stale here)."""
        return bool(self._pins) and any(key.startswith(p) for p in self._pins)

    def is_stale(self, key: str) -> bool:
        """Whether this node's copy of ``key`` is stale (not accessed for ``stale_after``)."""
        kd = self._keys.get(key)
        return kd is not None and kd.held and (kd.stale or self._idle(key, kd, self._now()))

    def refreshed(self, key: str) -> None:
        """This node's copy of ``key`` is current again (refreshed, or nothing to refresh from)."""
        kd = self._keys.get(key)
        if kd is not None:
            kd.stale = False
            kd.accessed = self._now()

    def sweep(self) -> list[tuple[str, int]]:
        """Mark the held keys not accessed for ``stale_after`` stale; return them (with their
        generations) so that peers stop pushing them here.

        One call takes at most about ``SWEEP_BUDGET`` seconds: a larger database is
        walked over several calls, and each complete walk also counts its held and
        stale values (``counts`` for databases of more than ``EXACT_COUNTS`` keys).
        """
        stale_after = self.settings.stale_after
        if stale_after is None and len(self._keys) <= EXACT_COUNTS:
            self._pass, self._pass_at = [], 0  # a pass of when there were more: dropped
            return []  # nothing goes stale, and counts() walks the keys itself
        if self._pass_at >= len(self._pass):  # start a pass over the keys of now
            self._pass, self._pass_at, self._tally = list(self._keys), 0, (0, 0)
        now = self._now()
        keys, pending, at = self._keys, self._pass, self._pass_at
        held, stale = self._tally
        out = []
        deadline = time.monotonic() + SWEEP_BUDGET
        while at < len(pending):
            chunk = pending[at : at + SWEEP_CHUNK]
            at += len(chunk)
            for key in chunk:
                kd = keys.get(key)
                if kd is None or not kd.held:
                    continue
                held += 1
                if kd.stale:
                    stale += 1
                elif (
                    stale_after is not None
                    and now - kd.accessed >= stale_after
                    and not self.pinned(key)
                ):
                    kd.stale = True
                    stale += 1
                    out.append((key, kd.gen))
            if time.monotonic() >= deadline:
                break
        self._pass_at, self._tally = at, (held, stale)
        if at >= len(pending):  # the pass is complete
            self._counted = (held, stale)
            self._pass, self._pass_at = [], 0
        return out

    def _put(self, key: str, entry: Entry) -> bytes:
        """Write an entry of this node's; the delta (journaled)."""
        delta = self.directory.put(key, entry)
        if self.journal is not None:
            self.journal("", 0, delta)
        if not self.in_touch():
            self._offline.add(key)
        return delta

    # -- tombstones, and coming back after them ------------------------------------------

    def touch(self) -> None:
        """This node is in touch with its cluster, and reconciled: what it wrote out of
        touch has been sent."""
        self.touched_at = self._wall()
        self._offline.clear()

    def behind(self, pruned: float) -> bool:
        """Whether this directory must be reconciled with a node that has forgotten
        the tombstones of keys gone before ``pruned``: this node was last in touch
        before then, so it may hold keys deleted meanwhile whose deletes are gone."""
        return self.touched_at < pruned and len(self.directory) > 0

    def offline_entries(self) -> list[tuple[str, Entry]]:
        """The entries this node wrote while out of touch."""
        entries = self.directory.entries()
        return [(key, entries[key]) for key in self._offline if key in entries]

    def reconcile(self, origin: str) -> list[Change]:
        """The whole directory of ``origin``, a node in touch, has arrived (its keys
        are ``fresh_seen``): drop every entry here that it lacks, but those this node
        wrote out of touch. Those keys were deleted and pruned while this node was
        away; their ``deleted`` changes. The store forgets them too (each as a
        tombstone gone since ever, pruned as it is folded)."""
        seen, offline, out = self.fresh_seen, self._offline, []
        gone = [
            (key, entry)
            for key, entry in self.directory.entries().items()
            if key not in seen and key not in offline
        ]
        forgotten = []
        for key, entry in gone:
            kd = self._keys.get(key)
            if kd is not None:
                self._close(key, kd)
                out.append(Change(self.name, key, kd.gen, None, None, origin, EventKind.DELETED))
            self.directory.forget(key)
            forgotten.append((key, Entry(entry.gen, True, 0, 0.0)))
        if forgotten and self.journal is not None:
            self.journal("", 0, encode_update(forgotten))
        self.fresh_from, self.fresh_seen = None, set()
        self.touch()
        return out

    def prune(self) -> int:
        """Forget the tombstones (deleted or expired entries) older than
        ``Limits.tombstone_horizon``, at most once every ``PRUNE_EVERY`` seconds (a
        quarter of a shorter horizon) and only when one may be that old; how many
        were forgotten."""
        now = self._now()
        if now < self._prune_at or not self.in_touch() or self.fresh_from is not None:
            return 0
        self._prune_at = now + min(PRUNE_EVERY, self.limits.tombstone_horizon / 4)
        return self._prune_now(self.directory, self._wall())

    def compact(self) -> None:
        """Give back the memory of keys gone (``crdt.tables.shrunk``): after many
        deletes and their prune, the tables are sized to the keys that live."""
        self._keys = shrunk(self._keys)
        self._deadlines = shrunk(self._deadlines)
        self.directory.compact()

    def _prune_now(self, directory: Directory, wall: float) -> int:
        before = wall - self.limits.tombstone_horizon
        pruned = directory.prune(before)
        if pruned:
            self.pruned = max(self.pruned, before)
            if self.journal is not None:  # the store's row is folded again without them
                self.journal("", 0, NO_ENTRIES)
        return len(pruned)

    def counts(self) -> tuple[int, int, int]:
        """How many keys there are, how many values are held here, how many are stale.

        Beyond ``EXACT_COUNTS`` keys, held and stale are those of the last complete
        sweep pass (seconds old), or of the first count until a pass completes, so
        that a metrics scrape (or the dashboard, every second) does not hold the loop.
        """
        if len(self._keys) > EXACT_COUNTS and self._counted is not None:
            return len(self), *self._counted
        now = self._now()
        held = stale = 0
        for key, kd in self._keys.items():
            if kd.held:
                held += 1
                if kd.stale or self._idle(key, kd, now):
                    stale += 1
        if len(self._keys) > EXACT_COUNTS:  # until the first sweep pass: counted once
            self._counted = (held, stale)
        return len(self), held, stale

    def needs_hold(self, key: str) -> bool:
        """Whether a write to ``key`` must first pull it (it exists, and this node's
        copy is missing or stale)."""
        kd = self._keys.get(key)
        if kd is None or (self._deadlines and self._lapsing(key)):
            return False
        return not kd.held or kd.stale or self._idle(key, kd, self._now())

    def holds(self, key: str) -> bool:
        """Whether this node holds the value of ``key``."""
        kd = self._keys.get(key)
        return kd is not None and kd.held

    def held(self) -> list[tuple[str, int]]:
        """Every key whose value is held here and not stale, with its generation."""
        return [(key, kd.gen) for key, kd in self._keys.items() if kd.held and not kd.stale]

    def generation(self, key: str) -> int | None:
        """The current generation of ``key`` (None when absent)."""
        kd = self._keys.get(key)
        return None if kd is None else kd.gen

    def held_hashes(self) -> list[tuple[str, int, int]]:
        """``held()`` with the ``value_hash`` of each: (key, generation, hash)."""
        cid = self.client_id
        return [
            (key, kd.gen, kd.value_hash(cid, key))
            for key, kd in self._keys.items()
            if kd.held and not kd.stale
        ]

    def value_hash(self, key: str) -> int:
        """The hash of the version of ``key``'s held value (``sync.value_hash``).

        Raises:
            KeyNotFound: the key is absent.
        """
        kd = self._keys.get(key)
        if kd is None:
            raise KeyNotFound(f"key {key!r} is not in database {self.name!r}")
        return kd.value_hash(self.client_id, key)

    def value_state_vector(self, key: str) -> bytes:
        """The state vector of ``key``'s value document (empty if not held).

        Raises:
            KeyNotFound: the key is absent.
        """
        kd = self._keys.get(key)
        if kd is None:
            raise KeyNotFound(f"key {key!r} is not in database {self.name!r}")
        if not kd.held:
            return EMPTY_STATE_VECTOR
        if kd.live:
            self._live.touch(kd)
        return kd.state_vector(self.client_id)  # its footprint counts it already

    def held_state_vectors(self, held: list[tuple[str, int]]) -> list[tuple[str, int, bytes]]:
        """The state vector of each value of ``held`` (keys and generations) still
        held here, fresh, at that generation (one gone or written again is left out)."""
        keys, cid, live = self._keys, self.client_id, self._live
        out = []
        for key, gen in held:
            kd = keys.get(key)
            if kd is None or kd.gen != gen or kd.stale or not kd.held:
                continue
            if kd.live:
                live.touch(kd)
            out.append((key, gen, kd.state_vector(cid)))
        return out

    def value_diff(self, key: str, gen: int, state_vector: bytes) -> bytes | None:
        """What a replica of generation ``gen`` at ``state_vector`` lacks; None when
        this node does not hold that generation.

        Raises:
            InvalidUpdate: the state vector does not decode.
        """
        kd = self._keys.get(key)
        if kd is None or kd.gen != gen or not kd.held:
            return None
        self._live.touch(kd)
        diff = kd.diff(self.client_id, state_vector)
        self._measure(key, kd)
        return diff

    # -- local writes ----------------------------------------------------------------

    def _doc_for_write(self, key: str, deadline: float | None) -> tuple[KeyDoc, bytes | None, bool]:
        """The key's document, creating the key (a directory entry, with
        ``deadline`` unless it is ``KEEP``) if absent or past its deadline (it lapses
        first); the directory delta, and whether the key was created. The deadline
        of a key that exists is written by ``_done``, once the operation worked."""
        kd = self._keys.get(key)
        if kd is not None and self._deadlines and self._lapsing(key):
            self.lapsed.append(self._lapse(key))
            kd = None
        if kd is not None:
            self._live.touch(kd)
            now = self._now()
            if self._lfu:
                self._bump(kd, now)
            kd.accessed, kd.stale = now, False
            return kd, None, False
        if len(self._keys) >= self.limits.max_keys and len(self) >= self.limits.max_keys:
            raise InvalidValue(f"database {self.name!r} has {len(self)} keys, its limit")
        entry = self.directory.get(key)
        gen = 1 if entry is None else entry.gen + 1
        timed = deadline is not None and deadline != _NEVER  # not KEEP, not "no TTL"
        # A creation's TTL clock is 0, as one without a TTL: concurrent creations
        # merge by the deadline alone (rule 9: no deadline wins).
        new = Entry(gen, False, 0, deadline) if timed and deadline is not None else Entry(gen)
        directory_delta = self._put(key, new)
        kd = self._keys[key] = KeyDoc(gen, accessed=self._now())
        if timed and deadline is not None:
            self._track(key, gen, deadline)  # once the key is in ``_keys``
        self._live.touch(kd)
        return kd, directory_delta, True

    def _done(
        self,
        key: str,
        kd: KeyDoc,
        directory: bytes | None,
        delta: bytes | None,
        created: bool,
        deadline: float | None,
    ) -> Change | None:
        self._measure(key, kd)
        if self.journal is not None and delta is not None:
            self.journal(key, kd.gen, delta)
        if (
            deadline is not None  # not KEEP
            and not created
            and (deadline != _NEVER or self._deadlines)
            and deadline != self._deadlines.get(key, _NEVER)
        ):
            directory = self._put_deadline(key, kd.gen, deadline)
        if directory is None and delta is None:
            return None  # nothing changed (a set to the value it had)
        kind = EventKind.CREATED if created else EventKind.CHANGED
        return make((self.name, key, kd.gen, directory, delta, self.node_name, kind))

    # Operations on a key that exists may fail (a wrong type, a bad path) before they
    # change anything; on an absent key, whose input the database checked, they cannot.

    # Each returns the write's change, None when it changed nothing. ``deadline`` is
    # the key's deadline after the write (wall clock; ``math.inf``: no time to live),
    # or ``KEEP``: the one it has (none for a key the write creates).

    def set(
        self, key: str, value: Any, packed: bytes, deadline: float | None = _NEVER
    ) -> Change | None:
        """Replace the value of ``key`` (``value`` checked, ``packed`` its packing)."""
        kd, directory, created = self._doc_for_write(key, deadline)
        delta = kd.set(self.client_id, value, packed)
        return self._done(key, kd, directory, delta, created, deadline)

    def update(
        self, key: str, fields: dict[str, Any], deadline: float | None = KEEP
    ) -> Change | None:
        """Merge ``fields`` (checked) into the dict value of ``key``."""
        kd, directory, created = self._doc_for_write(key, deadline)
        delta = kd.update(self.client_id, fields, self.limits.max_value_bytes)
        return self._done(key, kd, directory, delta, created, deadline)

    def append(
        self, key: str, path: list[str | int], item: Any, deadline: float | None = KEEP
    ) -> Change | None:
        """Append ``item`` (checked) to the list at ``path`` in the value of ``key``."""
        if path and key not in self:
            raise KeyNotFound(f"key {key!r} is not in database {self.name!r}")
        kd, directory, created = self._doc_for_write(key, deadline)
        delta = kd.append(self.client_id, path, item, self.limits.max_value_bytes)
        return self._done(key, kd, directory, delta, created, deadline)

    def incr(
        self, key: str, amount: int, deadline: float | None = KEEP
    ) -> tuple[int, Change | None]:
        """Add ``amount`` to the counter ``key``; the new total, and the change."""
        kd, directory, created = self._doc_for_write(key, deadline)
        delta, total = kd.incr(self.client_id, amount)
        return total, self._done(key, kd, directory, delta, created, deadline)

    def delete(self, key: str) -> Change | None:
        """Delete ``key``; its change, or None if it was absent."""
        kd = self._keys.get(key)
        if kd is not None and self._deadlines and self._lapsing(key):
            self.lapsed.append(self._lapse(key))
            return None
        if kd is None:
            return None
        self._close(key, kd)
        delta = self._put(key, Entry(kd.gen, True, 0, self._wall()))
        return Change(self.name, key, kd.gen, delta, None, self.node_name, EventKind.DELETED)

    def _close(self, key: str, kd: KeyDoc) -> None:
        if self.journal is not None:
            self.journal(key, kd.gen, b"")
        del self._keys[key]
        if self._deadlines:
            self._deadlines.pop(key, None)
        if self._behind:
            self._behind.discard(key)
        self._live.discard(kd)
        if self._footprint is not None:
            self._footprint.forget(kd)
        kd.close()

    # -- changes from elsewhere -------------------------------------------------------

    def apply(self, change: Change, *, notice: bool = False) -> list[Change]:
        """Apply a change made elsewhere; the changes it made here (see above).

        Args:
            change: the change.
            notice: the change changed a value this node does not hold (its delta
                is not shipped here): a ``changed`` change without a delta.

        Raises:
            InvalidUpdate: a delta does not decode (the directory part, if valid,
                stays applied; nothing else is).
        """
        return self.apply_parts(
            change.key, change.gen, change.directory, change.value, change.origin, notice
        )

    def apply_parts(
        self,
        key: str,
        gen: int,
        directory: bytes | None,
        value: bytes | None,
        origin: str,
        notice: bool = False,
    ) -> list[Change]:
        """``apply`` of a change given by its parts (the network's hot path: no
        ``Change`` is made for it)."""
        if directory is None:  # a value change: the common case
            if value is not None:
                delta = self._apply_value(key, gen, value)
                if delta is not None:  # applied to the key's document of ``gen``
                    return [make((self.name, key, gen, None, delta, origin, EventKind.CHANGED))]
            elif notice and self.generation(key) == gen:
                return [self._remote(EventKind.CHANGED, key, None, origin)]
            return []
        out: list[Change] = []
        pending = self._apply_directory(directory, origin, out)
        delta = None
        if value is not None:
            delta = self._apply_value(key, gen, value)
        kind = pending.pop(key, None)
        if kind is None and (delta is not None or (notice and self.generation(key) == gen)):
            kind = EventKind.CHANGED
        for other_key, other in pending.items():
            out.append(self._remote(other, other_key, None, origin))
        if kind is not None:
            out.append(self._remote(kind, key, delta, origin))
        return out

    def apply_directory(self, update: bytes, origin: str) -> list[Change]:
        """Apply a directory update (sync step 2); the changes it made here.

        Raises:
            InvalidUpdate: the update does not decode.
        """
        out: list[Change] = []
        name, keys = self.name, self._keys
        # While reconciling, only the node reconciled with vouches for its keys: another
        # may be as far behind as this one (a write vouches for its key: it is new).
        vouched = self.fresh_from is None or origin == self.fresh_from
        with bulk_load() if len(update) >= BULK_BYTES else contextlib.nullcontext():
            for key, kind in self._apply_directory(update, origin, out, vouched).items():
                kd = keys.get(key)  # as ``_remote``, inline: once per key of a join
                out.append(
                    make((name, key, kd.gen if kd is not None else 0, None, None, origin, kind))
                )
        return out

    def apply_pulled(self, key: str, gen: int, update: bytes, origin: str) -> list[Change]:
        """Apply the answer to a pull. Becoming a holder is no change (no event); news
        for a value already held is a ``changed`` change.

        Raises:
            InvalidUpdate: the update does not decode.
        """
        kd = self._keys.get(key)
        if kd is None or kd.gen != gen:
            return []
        was_held = kd.held
        self._live.touch(kd)
        kd.accessed, kd.stale = self._now(), False
        delta = kd.apply(self.client_id, update)
        if self.journal is not None and delta is not None:
            self.journal(key, gen, delta)
        if not was_held:
            kd.doc(self.client_id)  # an empty answer still makes this node a holder
        kd.mem_slot = max(kd.mem_slot, UNTRACKED)  # the network's copy: none on disk
        self._measure(key, kd)
        if was_held and delta is not None:
            return [Change(self.name, key, gen, None, delta, origin, EventKind.CHANGED)]
        return []

    def _apply_directory(
        self, update: bytes | None, origin: str, out: list[Change], vouched: bool = True
    ) -> dict[str, EventKind]:
        """Apply a directory update: the keys it created (their changes come last),
        and into ``out`` the deletions and repairs it made on the way."""
        pending: dict[str, EventKind] = {}
        if update is None:
            return pending
        if self.directory.untouched:
            return self._adopt_directory(update)
        entries = decode_update(update)
        if self.fresh_from is not None and vouched:
            self.fresh_seen.update(entries)  # not to be dropped by ``reconcile``
        horizon = self._wall() - self.limits.tombstone_horizon
        known = self.directory.entries()
        for key in [k for k, e in entries.items() if e.gone_before(horizon) and k not in known]:
            del entries[key]  # pruned here already: not brought back
        changed = self.directory.merge(entries)
        if self.journal is not None and changed:
            self.journal("", 0, encode_update((c.key, c.new) for c in changed))
        for entry_change in changed:
            self._reconcile(entry_change, pending, origin, out)
        return pending

    def _adopt_directory(self, update: bytes) -> dict[str, EventKind]:
        """A whole directory for an empty one (a node joining): load it without
        recording entry changes one by one, then make every live key at once.

        Raises:
            InvalidUpdate: the update does not decode (nothing changed).
        """
        fresh = Directory(update)
        self.directory.close()
        self.directory = fresh
        if self.journal is not None:
            self.journal("", 0, update)
        now, wall, pending = self._now(), self._wall(), {}
        self._prune_now(fresh, wall)
        for key, entry in fresh.entries().items():
            if entry.deleted or entry.deadline <= wall:
                continue
            kd = self._keys[key] = KeyDoc(entry.gen, accessed=now)
            if entry.deadline != _NEVER:
                self._track(key, entry.gen, entry.deadline)
            if self._early:
                self._take_early(key, kd)
            pending[key] = EventKind.CREATED
        return pending

    def _remote(self, kind: EventKind, key: str, delta: bytes | None, origin: str) -> Change:
        """A change from elsewhere, at the key's generation here now."""
        kd = self._keys.get(key)
        gen = kd.gen if kd is not None else 0
        return make((self.name, key, gen, None, delta, origin, kind))

    def _reconcile(
        self, c: EntryChange, pending: dict[str, EventKind], origin: str, out: list[Change]
    ) -> None:
        new, key = c.new, c.key
        kd = self._keys.get(key)
        gone = new.deleted
        if not gone and new.deadline != _NEVER:
            gone = new.deadline <= self._wall()
        if kd is not None and (kd.gen < new.gen or (gone and kd.gen <= new.gen)):
            lapsing = self._deadlines and self._lapsing(key)
            self._close(key, kd)
            if lapsing or (not new.deleted and kd.gen == new.gen):  # by time, not a delete
                out.append(self._lapsed(key, kd.gen))
            else:
                out.append(Change(self.name, key, kd.gen, None, None, origin, EventKind.DELETED))
            kd = None
        if gone:
            return
        if kd is None:
            kd = self._keys[key] = KeyDoc(new.gen, accessed=self._now())
            if new.deadline != _NEVER:
                self._track(key, new.gen, new.deadline)
            if self._early:
                self._take_early(key, kd)
            pending[key] = EventKind.CREATED
        elif kd.gen == new.gen and new.deadline != self._deadlines.get(key, _NEVER):
            self._track(key, new.gen, new.deadline)  # a TTL change
            pending.setdefault(key, EventKind.CHANGED)

    def _apply_value(self, key: str, gen: int, update: bytes) -> bytes | None:
        kd = self._keys.get(key)
        if kd is None or kd.gen != gen or not kd.held:
            # Kept for later, or making this node a holder: only if it decodes (a
            # held document decodes an update whole before it applies any of it).
            update_state_vector(update)
        if kd is not None and kd.gen == gen:
            evicted = not kd.held and kd.mem_slot in (ON_DISK, EVICTED)
            self._live.touch(kd)
            delta = kd.apply(self.client_id, update)
            if evicted:
                # A change sent before the sender heard that this node evicted its
                # copy: it makes a partial copy, stale, completed from the disk or
                # the holders before it is read (``on_disk``, ``read``).
                if kd.mem_slot == ON_DISK:
                    self._behind.add(key)
                kd.stale = True
            self._measure(key, kd)
            if self.journal is not None and delta is not None:
                self.journal(key, gen, delta)
            return delta
        entry = self.directory.get(key)
        if entry is None or entry.gen < gen:
            self._hold_early(key, gen, update)
        return None  # an update of a generation already gone is dropped

    def _hold_early(self, key: str, gen: int, update: bytes) -> None:
        """Keep an update that came before its generation's entry, within
        ``early_updates`` and ``early_bytes``: the oldest value's are dropped first."""
        size, limits = len(update), self.limits
        while self._early and (
            self._early_count >= limits.early_updates
            or self._early_bytes + size > limits.early_bytes
        ):
            dropped = self._early.pop(next(iter(self._early)))
            self._early_count -= len(dropped)
            self._early_bytes -= sum(map(len, dropped))
            self.dropped_updates += len(dropped)
        if size > limits.early_bytes:
            self.dropped_updates += 1
            return
        self._early.setdefault((key, gen), []).append(update)
        self._early_count += 1
        self._early_bytes += size

    def _take_early(self, key: str, kd: KeyDoc) -> None:
        """Apply the updates kept for ``key``'s generation, now that its entry came."""
        early = self._early.pop((key, kd.gen), None)
        if not early:
            return
        self._live.touch(kd)  # every live document is counted by the LRU
        self._early_count -= len(early)
        self._early_bytes -= sum(map(len, early))
        for update in early:
            applied = kd.apply(self.client_id, update)
            if self.journal is not None and applied is not None:
                self.journal(key, kd.gen, applied)
        self._measure(key, kd)

    # -- restoring from a store ---------------------------------------------------------

    def restore(self, directory: bytes | None, states: dict[str, tuple[int, bytes]]) -> int:
        """Load what a store kept: the directory's state and each held value's state
        (with its generation). Restoring is no change: no events, no journal. Values
        of a generation the directory does not hold live are ignored.

        Returns:
            How many values were restored.

        Raises:
            InvalidUpdate: the directory's state does not decode (nothing changed).
        """
        journal, self.journal = self.journal, None
        try:
            with bulk_load():
                if self._keys or self.directory.entries():
                    return self._restore_into_live(directory, states)
                if directory is not None:
                    fresh = Directory(directory)  # InvalidUpdate if bad
                    self.directory.close()
                    self.directory = fresh
                now, wall, restored = self._now(), self._wall(), 0
                self._prune_now(self.directory, wall)
                for key, entry in self.directory.entries().items():
                    if entry.deleted or entry.deadline <= wall:
                        continue
                    gen, state = states.get(key, (0, None))
                    held = state if gen == entry.gen else None
                    kd = self._keys[key] = KeyDoc(entry.gen, held, accessed=now)
                    if held is not None:
                        self._measure(key, kd)
                    if entry.deadline != _NEVER:
                        self._track(key, entry.gen, entry.deadline)
                    restored += held is not None
                return restored
        finally:
            self.journal = journal

    def _restore_into_live(
        self, directory: bytes | None, states: dict[str, tuple[int, bytes]]
    ) -> int:
        """``restore`` into a database already in use: applied as changes from elsewhere."""
        if directory is not None:
            self.apply_directory(directory, self.node_name)
        restored = 0
        for key, (gen, state) in states.items():
            kd = self._keys.get(key)
            if kd is not None and kd.gen == gen:
                self.apply_pulled(key, gen, state, self.node_name)
                restored += 1
        return restored

    def close(self) -> None:
        """Drop every document."""
        footprint = self._footprint
        for kd in self._keys.values():
            self._live.discard(kd)
            if footprint is not None:
                footprint.forget(kd)
            kd.close()
        self._keys.clear()
        self._behind.clear()
        self._deadlines.clear()
        self._expiry.clear()
        self._early.clear()
        self._early_count = self._early_bytes = 0
        self.directory.close()
