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
newer generation), and an entry that went backwards is written again (see
``crdt/directory.py``). Then the value delta goes to the document of its generation.
A value delta for a generation the directory does not know yet waits in a bounded
buffer (``early``) until its entry arrives; one for a generation already gone is
dropped. Applying returns the changes it made, in order: one with an event kind
per key changed (carrying the value delta), and one without a kind (origin this
node) for each directory entry this node wrote again, for the node to ship.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from .changes import Change, make
from .collector import bulk_load
from .config import DatabaseSettings, Limits
from .crdt import values
from .crdt.directory import Directory, Entry, EntryChange
from .crdt.keydoc import LOCAL, MISSING, REMOTE, KeyDoc, LiveDocs
from .crdt.sync import update_state_vector
from .crdt.ydoc import EMPTY_STATE_VECTOR
from .errors import InvalidValue, KeyNotFound
from .events import EventKind

__all__ = ["NOT_HELD", "STALE", "Journal", "Keyspace"]

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
    ) -> None:
        self.name = name  # the database's name
        self.settings = settings  # expiry and other per-database settings
        self.client_id = client_id  # the Yjs client id of this node's writes
        self.node_name = node_name  # the origin of this node's changes
        self.limits = limits
        self.directory = Directory(client_id)
        self.dropped_updates = 0  # value deltas dropped: too early with the buffer full
        self._keys: dict[str, KeyDoc] = {}
        self._live = live
        self._now = now  # the node's clock
        self._early: dict[tuple[str, int], list[bytes]] = {}
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
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def keys(self, prefix: str = "") -> list[str]:
        """The live keys starting with ``prefix``, sorted."""
        if not prefix:
            return sorted(self._keys)
        return sorted(k for k in self._keys if k.startswith(prefix))

    def read(self, key: str, *, fresh: bool = True) -> Any:
        """The value of ``key`` as fresh objects; ``NOT_HELD`` when this node has no
        copy, ``STALE`` when its copy is stale (unless ``fresh`` is False).

        Raises:
            KeyNotFound: the key is absent.
        """
        kd = self._keys.get(key)
        if kd is None:
            raise KeyNotFound(f"key {key!r} is not in database {self.name!r}")
        now = self._now()
        packed = kd.packed
        if packed is not None:  # the common case: a held value, its packing cached
            if fresh and (
                kd.stale or (self.settings.stale_after is not None and self._idle(key, kd, now))
            ):
                return STALE
            kd.accessed = now
            return _unpack(packed)
        if fresh and kd.held and (kd.stale or self._idle(key, kd, now)):
            return STALE
        kd.accessed = now
        if not kd.held:
            return NOT_HELD
        self._live.touch(kd)
        value = kd.read(self.client_id)
        # A held document whose writes have not arrived yet (its directory entry came
        # first) reads as None; anti-entropy brings the rest.
        return None if value is MISSING else value

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

    def counts(self) -> tuple[int, int, int]:
        """How many keys there are, how many values are held here, how many are stale.

        Beyond ``EXACT_COUNTS`` keys, held and stale are those of the last complete
        sweep pass (seconds old), so that a metrics scrape does not hold the loop.
        """
        if len(self._keys) > EXACT_COUNTS and self._counted is not None:
            return len(self._keys), *self._counted
        now = self._now()
        held = stale = 0
        for key, kd in self._keys.items():
            if kd.held:
                held += 1
                if kd.stale or self._idle(key, kd, now):
                    stale += 1
        return len(self._keys), held, stale

    def needs_hold(self, key: str) -> bool:
        """Whether a write to ``key`` must first pull it (it exists, and this node's
        copy is missing or stale)."""
        kd = self._keys.get(key)
        if kd is None:
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
        return kd.state_vector(self.client_id)

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
        return kd.diff(self.client_id, state_vector)

    # -- local writes ----------------------------------------------------------------

    def _doc_for_write(self, key: str) -> tuple[KeyDoc, bytes | None]:
        """The key's document, creating the key (a directory entry) if absent."""
        kd = self._keys.get(key)
        if kd is not None:
            self._live.touch(kd)
            kd.accessed, kd.stale = self._now(), False
            return kd, None
        if len(self._keys) >= self.limits.max_keys:
            raise InvalidValue(f"database {self.name!r} has {len(self._keys)} keys, its limit")
        entry = self.directory.get(key)
        gen = 1 if entry is None else entry.gen + 1
        directory_delta = self.directory.put(key, Entry(gen), LOCAL)
        if self.journal is not None and directory_delta is not None:
            self.journal("", 0, directory_delta)
        kd = self._keys[key] = KeyDoc(gen, accessed=self._now())
        self._live.touch(kd)
        return kd, directory_delta

    def _done(
        self, key: str, kd: KeyDoc, directory: bytes | None, delta: bytes | None
    ) -> Change | None:
        if self.journal is not None and delta is not None:
            self.journal(key, kd.gen, delta)
        if directory is None and delta is None:
            return None  # nothing changed (a set to the value it had)
        kind = EventKind.CREATED if directory is not None else EventKind.CHANGED
        return make((self.name, key, kd.gen, directory, delta, self.node_name, kind))

    # Operations on a key that exists may fail (a wrong type, a bad path) before they
    # change anything; on an absent key, whose input the database checked, they cannot.

    # Each returns the write's change, None when it changed nothing.

    def set(self, key: str, value: Any, packed: bytes) -> Change | None:
        """Replace the value of ``key`` (``value`` checked, ``packed`` its packing)."""
        kd, directory = self._doc_for_write(key)
        delta = kd.set(self.client_id, value, packed)
        return self._done(key, kd, directory, delta)

    def update(self, key: str, fields: dict[str, Any]) -> Change | None:
        """Merge ``fields`` (checked) into the dict value of ``key``."""
        kd, directory = self._doc_for_write(key)
        delta = kd.update(self.client_id, fields, self.limits.max_value_bytes)
        return self._done(key, kd, directory, delta)

    def append(self, key: str, path: list[str | int], item: Any) -> Change | None:
        """Append ``item`` (checked) to the list at ``path`` in the value of ``key``."""
        if key not in self._keys and path:
            raise KeyNotFound(f"key {key!r} is not in database {self.name!r}")
        kd, directory = self._doc_for_write(key)
        delta = kd.append(self.client_id, path, item, self.limits.max_value_bytes)
        return self._done(key, kd, directory, delta)

    def incr(self, key: str, amount: int) -> tuple[int, Change | None]:
        """Add ``amount`` to the counter ``key``; the new total, and the change."""
        kd, directory = self._doc_for_write(key)
        delta, total = kd.incr(self.client_id, amount)
        return total, self._done(key, kd, directory, delta)

    def delete(self, key: str) -> Change | None:
        """Delete ``key``; its change, or None if it was absent."""
        kd = self._keys.get(key)
        if kd is None:
            return None
        self._close(key, kd)
        delta = self.directory.put(key, Entry(kd.gen, True), LOCAL)
        if self.journal is not None and delta is not None:
            self.journal("", 0, delta)
        return Change(self.name, key, kd.gen, delta, None, self.node_name, EventKind.DELETED)

    def _close(self, key: str, kd: KeyDoc) -> None:
        if self.journal is not None:
            self.journal(key, kd.gen, b"")
        del self._keys[key]
        self._live.discard(kd)
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
        with bulk_load() if len(update) >= BULK_BYTES else contextlib.nullcontext():
            for key, kind in self._apply_directory(update, origin, out).items():
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
        if was_held and delta is not None:
            return [Change(self.name, key, gen, None, delta, origin, EventKind.CHANGED)]
        if not was_held:
            kd.doc(self.client_id)  # an empty answer still makes this node a holder
        return []

    def _apply_directory(
        self, update: bytes | None, origin: str, out: list[Change]
    ) -> dict[str, EventKind]:
        """Apply a directory update: the keys it created (their changes come last),
        and into ``out`` the deletions and repairs it made on the way."""
        pending: dict[str, EventKind] = {}
        if update is not None and self.directory.untouched:
            return self._adopt_directory(update)
        if update is not None:
            delta, changed = self.directory.apply(update, REMOTE)
            if self.journal is not None and delta is not None:
                self.journal("", 0, delta)
            for entry_change in changed:
                self._reconcile(entry_change, pending, origin, out)
        return pending

    def _adopt_directory(self, update: bytes) -> dict[str, EventKind]:
        """A whole directory for an empty one (a node joining): load it without
        recording entry changes one by one, then make every live key at once.

        Raises:
            InvalidUpdate: the update does not decode (nothing changed).
        """
        fresh = Directory(self.client_id, update)
        self.directory.close()
        self.directory = fresh
        if self.journal is not None:
            self.journal("", 0, update)
        now, pending = self._now(), {}
        for key, entry in fresh.entries().items():
            if entry.deleted:
                continue
            kd = self._keys[key] = KeyDoc(entry.gen, accessed=now)
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
        old, new = c.old, c.new
        if old is not None and (new is None or new < old):
            # The entry went backwards: write the greater one again.
            delta = self.directory.put(c.key, old, LOCAL)
            if self.journal is not None and delta is not None:
                self.journal("", 0, delta)
            out.append(Change(self.name, c.key, old.gen, delta, None, self.node_name, None))
            return
        if new is None:
            return
        kd = self._keys.get(c.key)
        if kd is not None and (kd.gen < new.gen or (new.deleted and kd.gen <= new.gen)):
            self._close(c.key, kd)
            out.append(Change(self.name, c.key, kd.gen, None, None, origin, EventKind.DELETED))
            kd = None
        if kd is None and not new.deleted:
            kd = self._keys[c.key] = KeyDoc(new.gen, accessed=self._now())
            if self._early:
                self._take_early(c.key, kd)
            pending[c.key] = EventKind.CREATED

    def _apply_value(self, key: str, gen: int, update: bytes) -> bytes | None:
        kd = self._keys.get(key)
        if kd is None or kd.gen != gen or not kd.held:
            # Kept for later, or making this node a holder: only if it decodes (a
            # held document decodes an update whole before it applies any of it).
            update_state_vector(update)
        if kd is not None and kd.gen == gen:
            self._live.touch(kd)
            delta = kd.apply(self.client_id, update)
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
                    fresh = Directory(self.client_id, directory)  # InvalidUpdate if bad
                    self.directory.close()
                    self.directory = fresh
                now, restored = self._now(), 0
                for key, entry in self.directory.entries().items():
                    if entry.deleted:
                        continue
                    gen, state = states.get(key, (0, None))
                    held = state if gen == entry.gen else None
                    self._keys[key] = KeyDoc(entry.gen, held, accessed=now)
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
        for kd in self._keys.values():
            self._live.discard(kd)
            kd.close()
        self._keys.clear()
        self._early.clear()
        self._early_count = self._early_bytes = 0
        self.directory.close()
