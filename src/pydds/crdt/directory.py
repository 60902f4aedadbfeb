"""The directory of one database: every key's entry, small, replicated eagerly.

Theory of operation
-------------------
One document, one root map ``keys``: key -> entry. An entry is a small msgpack
buffer ``[generation, deleted]``, or ``[generation, deleted, ttl_clock, deadline]``
for a key that has (or had) a time to live. A key lives while its entry is not
deleted and its deadline (a wall-clock time, seconds since the epoch) has not
passed; its value lives in the value document of that generation (``keydoc.py``).

Generations make re-creation safe: a key created where it is absent takes the
generation after the last one seen (1 if none), so replicas that create the same key
concurrently pick the same generation and their value documents merge. A delete
writes ``[g, True]``; a later ``set`` starts generation ``g + 1`` from an empty
document. Writes to a live key touch only its value document, and the directory
only when they change the key's time to live.

Every change of a key's time to live (a write that gives one, ``expire``,
``persist``) writes its entry with ``ttl_clock`` one more than the entry it
replaces, so that a TTL change wins over every one it has seen. A key without a
deadline has ``deadline`` infinite (encoded as nil).

Entries are ordered by ``(generation, deleted, ttl_clock, deadline)``, and the
directory converges to the greatest: Yjs resolves concurrent writes of one map
entry by client id, which may pick a smaller entry (a lagging replica's creation of
an old generation racing a delete or a newer generation). A replica that sees its
entry replaced by a smaller one writes the greater one again (``Directory.apply``
reports it as a repair), and since every replica that saw the greater entry does the
same, all end on it. Thus a
delete wins over writes concurrent with it, the newest generation wins, and between
concurrent TTL changes of one generation the later deadline wins (no deadline
beating any).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import msgpack

from .ydoc import YDoc

__all__ = ["Directory", "Entry", "EntryChange"]

ROOT = "keys"


@dataclass(frozen=True, slots=True, order=True)
class Entry:
    """A key's directory entry; entries compare by ``(gen, deleted, ttl_clock,
    deadline)``."""

    gen: int  # the key's generation: which value document holds its value
    deleted: bool = False  # True once the key of this generation was deleted
    ttl_clock: int = 0  # how many TTL changes this generation has seen
    deadline: float = math.inf  # when the key expires (wall clock); inf: never

    def encode(self) -> bytes:
        if self.ttl_clock == 0 and self.deadline == math.inf:
            packed: bytes = msgpack.packb([self.gen, self.deleted])
        else:
            deadline = None if self.deadline == math.inf else self.deadline
            packed = msgpack.packb([self.gen, self.deleted, self.ttl_clock, deadline])
        return packed

    def expired(self, now: float) -> bool:
        """Whether the key of this entry is gone at wall-clock time ``now``."""
        return self.deleted or self.deadline <= now

    @staticmethod
    def decode(raw: Any) -> Entry | None:
        """Decode a stored entry; None for anything malformed."""
        try:
            return _decode(bytes(raw))
        except TypeError:  # not bytes-like
            return None


@functools.lru_cache(maxsize=4096)  # a directory holds few distinct entries
def _decode(raw: bytes) -> Entry | None:
    try:
        fields = msgpack.unpackb(raw)
    except (ValueError, TypeError, msgpack.UnpackException):
        return None
    if type(fields) is not list or len(fields) not in (2, 4):
        return None
    gen, deleted = fields[0], fields[1]
    if type(gen) is not int or gen < 1 or type(deleted) is not bool:
        return None
    if len(fields) == 2:
        return Entry(gen, deleted)
    ttl_clock, deadline = fields[2], fields[3]
    if type(ttl_clock) is not int or ttl_clock < 0:
        return None
    if deadline is None:
        return Entry(gen, deleted, ttl_clock)
    if type(deadline) not in (int, float) or not math.isfinite(deadline):
        return None
    return Entry(gen, deleted, ttl_clock, float(deadline))


@dataclass(frozen=True, slots=True)
class EntryChange:
    """A key whose entry an applied update changed."""

    key: str
    old: Entry | None  # the entry before, None if the key was unknown
    new: Entry | None  # the entry after (None only for a malformed entry)


class Directory:
    """The directory document of one database on one node.

    Example::

        d = Directory(client_id=7)
        delta = d.put("user:1", Entry(1))
        d.get("user:1")          # -> Entry(gen=1, deleted=False)
    """

    __slots__ = ("_changes", "_doc", "_sub", "_untouched")

    def __init__(self, client_id: int, state: bytes | None = None) -> None:
        """A directory, empty or loaded from ``state`` (an update: a stored state, or
        a peer's whole directory). Loading happens before observing, so it records
        no entry changes: it costs the apply alone.

        Raises:
            InvalidUpdate: ``state`` does not decode.
        """
        self._doc = YDoc(client_id, ROOT, state)
        self._untouched = state is None
        changes: list[Any] = []
        self._changes = changes  # the changed keys of each map event of the update
        self._sub: Any = self._doc.root.observe(lambda event: changes.append(event.keys))

    @property
    def untouched(self) -> bool:
        """Whether nothing was ever written or applied to this directory (not even an
        update still waiting for the ones it depends on)."""
        return self._untouched

    @property
    def doc(self) -> YDoc:
        """The directory document (state vectors, diffs)."""
        return self._doc

    def get(self, key: str) -> Entry | None:
        """The entry of ``key``, deleted or not; None if the key was never seen."""
        doc = self._doc
        txn = doc.read()
        try:
            raw = doc.root.get(txn, key) if doc.root.has(txn, key) else None
        finally:
            txn.drop()
        return None if raw is None else Entry.decode(raw)

    def entries(self) -> dict[str, Entry]:
        """Every well-formed entry, deleted ones included."""
        doc = self._doc
        txn = doc.read()
        try:
            raw = {k: doc.root.get(txn, k) for k in doc.root.keys(txn)}
        finally:
            txn.drop()
        out = {}
        for key, value in raw.items():
            entry = Entry.decode(value)
            if entry is not None:
                out[key] = entry
        return out

    def put(self, key: str, entry: Entry, origin: int) -> bytes | None:
        """Write ``key``'s entry; return the delta."""
        self._untouched = False
        doc = self._doc
        txn = doc.begin(origin)
        try:
            doc.root.insert(txn, key, entry.encode())
        finally:
            delta = doc.end(txn)
        self._changes.clear()
        return delta

    def apply(self, update: bytes, origin: int) -> tuple[bytes | None, list[EntryChange]]:
        """Apply an update from elsewhere.

        Returns:
            The delta it made here, and the entries it changed.

        Raises:
            InvalidUpdate: the bytes do not decode; nothing was applied.
        """
        self._untouched = False
        self._changes.clear()
        try:
            delta = self._doc.apply(update, origin)
            changed: list[EntryChange] = []
            for keys in self._changes:
                for key, change in keys.items():
                    old = change.get("oldValue")
                    new = change.get("newValue")
                    changed.append(
                        EntryChange(
                            key,
                            None if old is None else Entry.decode(old),
                            None if new is None else Entry.decode(new),
                        )
                    )
        finally:
            self._changes.clear()
        return delta, changed

    def close(self) -> None:
        """Stop observing."""
        if self._sub is not None:
            self._sub.drop()
            self._sub = None
        self._doc.close()
