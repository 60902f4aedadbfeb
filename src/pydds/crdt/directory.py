"""The directory of one database: every key's entry, small, replicated eagerly.

Theory of operation
-------------------
One document, one root map ``keys``: key -> entry. An entry is a small msgpack
buffer ``[generation, deleted]``. A key lives while its entry is not deleted; its
value lives in the value document of that generation (``keydoc.py``).

Generations make re-creation safe: a key created where it is absent takes the
generation after the last one seen (1 if none), so replicas that create the same key
concurrently pick the same generation and their value documents merge. A delete
writes ``[g, True]``; a later ``set`` starts generation ``g + 1`` from an empty
document. Writes to a live key touch only its value document, never the directory.

Entries are ordered by ``(generation, deleted)``, and the directory converges to the
greatest: Yjs resolves concurrent writes of one map entry by client id, which may
pick a smaller entry (a lagging replica's creation of an old generation racing a
delete or a newer generation). A replica that sees its entry replaced by a smaller
one writes the greater one again (``Directory.apply`` reports it as a repair), and
since every replica that saw the greater entry does the same, all end on it. Thus a
delete wins over writes concurrent with it, and the newest generation wins.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import msgpack

from .ydoc import YDoc

__all__ = ["Directory", "Entry", "EntryChange"]

ROOT = "keys"


@dataclass(frozen=True, slots=True, order=True)
class Entry:
    """A key's directory entry; entries compare by ``(gen, deleted)``."""

    gen: int  # the key's generation: which value document holds its value
    deleted: bool = False  # True once the key of this generation was deleted

    def encode(self) -> bytes:
        packed: bytes = msgpack.packb([self.gen, self.deleted])
        return packed

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
        gen, deleted = msgpack.unpackb(raw)
    except (ValueError, TypeError, msgpack.UnpackException):
        return None
    if type(gen) is not int or gen < 1 or type(deleted) is not bool:
        return None
    return Entry(gen, deleted)


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
