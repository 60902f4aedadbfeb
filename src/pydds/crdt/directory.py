"""The directory of one database: every key's entry, small, replicated eagerly.

Theory of operation
-------------------
A directory maps each key to its entry ``(generation, deleted, ttl_clock,
deadline)``. A key lives while its entry is not deleted and its deadline (a
wall-clock time, seconds since the epoch) has not passed; its value lives in the
value document of that generation (``keydoc.py``). For a deleted entry the deadline
is the time of the delete: a gone entry (deleted or past its deadline) is a
*tombstone*, and its deadline says since when.

The directory is a state-based CRDT of its own, not a Yjs document: per key a
register that keeps the greatest entry it was given, entries ordered by ``(gen,
deleted, ttl_clock, deadline)``. Merging takes the greatest per key, so it is
commutative, associative and idempotent, and every replica that received the same
entries, in any order and any number of times, holds the same directory. Thus a
delete wins over writes concurrent with it, the newest generation wins, and between
concurrent TTL changes of one generation the one that had seen more wins, then the
later deadline (no deadline beating any).

Generations make re-creation safe: a key created where it is absent takes the
generation after the last one seen (1 if none), so replicas that create the same key
concurrently pick the same generation and their value documents merge. A delete
writes ``(g, True, 0, now)``; a later ``set`` starts generation ``g + 1`` from an
empty document. Writes to a live key touch only its value document, and the
directory only when they change the key's time to live. Every change of a key's time
to live writes its entry with ``ttl_clock`` one more than the entry it replaces.

An update (what ``put`` returns, what ``apply`` takes, a whole state) is one msgpack
map: key -> entry fields. Because a directory holds only entries, a tombstone can be
*pruned*: forgotten once it is older than a horizon (``prune``); the keyspace says
what keeps a replica that missed the prune from bringing the key back.

Anti-entropy compares directories by digests: keys fall into ``2**k`` buckets (by a
CRC-32 of the key), a bucket's digest is the XOR of a 64-bit hash of each of its
entries, and two directories need to exchange only the entries of the buckets whose
digests differ (``digests``, ``chunks``). The digests of the finest bucket count are
kept up to date as entries change (an entry changed is two XORs), so a digest costs
the number of buckets, not of keys; coarser counts fold the finer.
"""

from __future__ import annotations

import functools
import hashlib
import math
import zlib
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import msgpack

from ..errors import InvalidUpdate
from .tables import shrunk

__all__ = [
    "CHUNK",
    "CHUNK_BYTES",
    "Directory",
    "Entry",
    "EntryChange",
    "check_digests",
    "decode_update",
    "encode_update",
    "merge_updates",
    "read_stored",
]

ROOT = "keys"  # the root map of the Yjs directories that stores made before
#: Entries per update a directory is sent in (a joining node applies each as it comes).
CHUNK = 10_000
#: Bytes per update a directory is sent in, about (long keys make fewer entries).
CHUNK_BYTES = 256 * 1024
#: An entry's bytes in an update beside its key, about (msgpack headers, fields).
_ENTRY_BYTES = 6
#: Entries of one merge from which the kept digests are dropped, not kept up to date
#: (a join's chunks: they are computed again, once, when next asked for).
BULK_ENTRIES = 1000
#: Entries a finest bucket holds on average before the bucket count doubles.
PER_BUCKET = 32
#: Finest bucket counts, least and most (powers of two).
MIN_BUCKETS, MAX_BUCKETS = 16, 4096
_DIGEST = 8  # bytes per bucket digest


@dataclass(frozen=True, slots=True, order=True)
class Entry:
    """A key's directory entry; entries compare by ``(gen, deleted, ttl_clock,
    deadline)``."""

    gen: int  # the key's generation: which value document holds its value
    deleted: bool = False  # True once the key of this generation was deleted
    ttl_clock: int = 0  # how many TTL changes this generation has seen
    #: when the key expires (wall clock; inf: never), or, deleted, when it was
    deadline: float = math.inf

    def fields(self) -> tuple[Any, ...]:
        """The entry as it is encoded: ``[gen, deleted]`` for a live key without a
        time to live, else ``[gen, deleted, ttl_clock, deadline or nil]``."""
        return _fields(self)

    def encode(self) -> bytes:
        return _packed(self)

    def expired(self, now: float) -> bool:
        """Whether the key of this entry is gone at wall-clock time ``now``."""
        return self.deleted or self.deadline <= now

    def gone_before(self, when: float) -> bool:
        """Whether this is a tombstone older than ``when`` (deleted, or expired,
        before it): prunable once ``when`` is the horizon."""
        return self.deadline < when

    @staticmethod
    def decode(raw: Any) -> Entry | None:
        """Decode one encoded entry; None for anything malformed."""
        try:
            fields = msgpack.unpackb(bytes(raw))
        except (ValueError, TypeError, msgpack.UnpackException):
            return None
        return _entry(fields)


@functools.lru_cache(maxsize=4096)  # most entries are (small gen, live): shared
def _fields(entry: Entry) -> tuple[Any, ...]:
    if entry.ttl_clock == 0 and entry.deadline == math.inf and not entry.deleted:
        return (entry.gen, False)
    deadline = None if entry.deadline == math.inf else entry.deadline
    return (entry.gen, entry.deleted, entry.ttl_clock, deadline)


@functools.lru_cache(maxsize=4096)
def _packed(entry: Entry) -> bytes:
    packed: bytes = msgpack.packb(_fields(entry))
    return packed


def _entry(fields: Any) -> Entry | None:
    """The entry of decoded fields; None if they are malformed."""
    if type(fields) is not list and type(fields) is not tuple:
        return None
    if len(fields) == 2:
        return _two(fields[0], fields[1])
    if len(fields) != 4:
        return None
    gen, deleted, ttl_clock, deadline = fields
    if type(gen) is not int or gen < 1 or type(deleted) is not bool:
        return None
    if type(ttl_clock) is not int or ttl_clock < 0:
        return None
    if deadline is None:
        return Entry(gen, deleted, ttl_clock)
    if type(deadline) not in (int, float) or not math.isfinite(deadline):
        return None
    return Entry(gen, deleted, ttl_clock, float(deadline))


@functools.lru_cache(maxsize=1024)  # most entries are (small gen, live)
def _two(gen: Any, deleted: Any) -> Entry | None:
    if type(gen) is not int or gen < 1 or type(deleted) is not bool:
        return None
    # A delete of the earlier format, with no time: gone since ever (pruned first).
    return Entry(gen, True, 0, 0.0) if deleted else Entry(gen)


def encode_update(entries: Iterable[tuple[str, Entry]]) -> bytes:
    """One update of ``(key, entry)`` pairs."""
    fields = _fields
    packed: bytes = msgpack.packb({key: fields(entry) for key, entry in entries})
    return packed


def decode_update(update: bytes) -> dict[str, Entry]:
    """The entries of an update.

    Raises:
        InvalidUpdate: it is not one (a malformed entry refuses all of it).
    """
    try:
        raw = msgpack.unpackb(update, use_list=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise InvalidUpdate(f"a directory update that does not decode: {exc}") from None
    if type(raw) is not dict:
        raise InvalidUpdate("a directory update is a map of keys to entries")
    out: dict[str, Entry] = {}
    for key, fields in raw.items():
        entry = _entry(fields)
        if type(key) is not str or not key or entry is None:
            raise InvalidUpdate(f"a malformed directory entry for {key!r}")
        out[key] = entry
    return out


def read_stored(update: bytes) -> dict[str, Entry]:
    """The entries of a stored update: this format, or the Yjs document that stores
    of earlier versions kept (read once, at the first start after an upgrade).

    Raises:
        InvalidUpdate: it is neither.
    """
    try:
        return decode_update(update)
    except InvalidUpdate:
        pass
    from .ydoc import YDoc  # only for a store of an earlier version

    doc = YDoc(0, ROOT, update)  # InvalidUpdate if not one either
    try:
        txn = doc.read()
        try:
            raw = {k: doc.root.get(txn, k) for k in doc.root.keys(txn)}
        finally:
            txn.drop()
    finally:
        doc.close()
    out = {}
    for key, value in raw.items():
        entry = Entry.decode(value) if isinstance(value, (bytes, bytearray)) else None
        if entry is not None:
            out[key] = entry
    return out


def merge_updates(updates: Iterable[bytes], *, prune_before: float = -math.inf) -> bytes:
    """One update of many (stored ones: either format), the greatest entry of each
    key, without the tombstones gone before ``prune_before``.

    Raises:
        InvalidUpdate: one does not decode.
    """
    merged: dict[str, Entry] = {}
    for update in updates:
        for key, entry in read_stored(update).items():
            old = merged.get(key)
            if old is None or old < entry:
                merged[key] = entry
    return encode_update((k, e) for k, e in merged.items() if not e.gone_before(prune_before))


def _hash(key: str, entry: Entry) -> int:
    """A 64-bit hash of one entry of one key (not linear: changes do not cancel)."""
    data = key.encode() + b"\x00" + entry.encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=_DIGEST).digest(), "big")


def check_digests(buckets: int, digests: bytes) -> None:
    """Check that ``digests`` are the digests of ``buckets`` buckets.

    Raises:
        InvalidUpdate: they are not.
    """
    if buckets < 1 or buckets & (buckets - 1) or buckets > 1 << 16:
        raise InvalidUpdate(f"{buckets} buckets: not a power of two up to 65536")
    if len(digests) != _DIGEST * buckets:
        raise InvalidUpdate(f"{buckets} buckets need {_DIGEST * buckets} bytes of digest")


def bucket(key: str, buckets: int) -> int:
    """The bucket of ``key`` among ``buckets`` (a power of two)."""
    return zlib.crc32(key.encode()) & (buckets - 1)


@dataclass(frozen=True, slots=True)
class EntryChange:
    """A key whose entry an applied update changed."""

    key: str
    old: Entry | None  # the entry before, None if the key was unknown
    new: Entry  # the entry after


class Directory:
    """The directory of one database on one node.

    Example::

        d = Directory()
        delta = d.put("user:1", Entry(1))
        d.get("user:1")          # -> Entry(gen=1, deleted=False)
    """

    __slots__ = ("_earliest", "_entries", "_fine", "_gone", "_untouched")

    def __init__(self, state: bytes | None = None) -> None:
        """A directory, empty or loaded from ``state`` (an update).

        Raises:
            InvalidUpdate: ``state`` does not decode.
        """
        self._entries: dict[str, Entry] = {} if state is None else decode_update(state)
        self._untouched = state is None
        self._fine: array[int] | None = None  # digests of the finest buckets, once asked
        deadlines = [e.deadline for e in self._entries.values() if e.deadline != math.inf]
        self._gone = len(deadlines)  # entries with a deadline
        self._earliest = min(deadlines, default=math.inf)  # none of them is earlier

    @property
    def untouched(self) -> bool:
        """Whether nothing was ever written or applied to this directory."""
        return self._untouched

    def __len__(self) -> int:
        """Entries, tombstones included."""
        return len(self._entries)

    def get(self, key: str) -> Entry | None:
        """The entry of ``key``, deleted or not; None if the key is unknown."""
        return self._entries.get(key)

    def entries(self) -> dict[str, Entry]:
        """Every entry, tombstones included (the directory's own map: do not change it)."""
        return self._entries

    def put(self, key: str, entry: Entry) -> bytes:
        """Write ``key``'s entry (the caller's, greater than the one it replaces);
        return the delta."""
        self._untouched = False
        self._set(key, self._entries.get(key), entry)
        return encode_update(((key, entry),))

    def _set(self, key: str, old: Entry | None, new: Entry) -> None:
        self._entries[key] = new
        self._gone += (new.deadline != math.inf) - (old is not None and old.deadline != math.inf)
        if new.deadline < self._earliest:
            self._earliest = new.deadline
        fine = self._fine
        if fine is not None:
            at = bucket(key, len(fine))
            fine[at] ^= _hash(key, new) ^ (0 if old is None else _hash(key, old))
            if len(self._entries) > PER_BUCKET * len(fine) and len(fine) < MAX_BUCKETS:
                self._fine = None  # finer buckets, computed at the next digest

    def apply(self, update: bytes) -> tuple[bytes | None, list[EntryChange]]:
        """Merge an update from elsewhere: each key keeps the greater entry.

        Returns:
            The delta it made here (the entries that changed), and those changes.

        Raises:
            InvalidUpdate: the bytes do not decode; nothing was applied.
        """
        changed = self.merge(decode_update(update))
        if not changed:
            return None, changed
        return encode_update((c.key, c.new) for c in changed), changed

    def merge(self, entries: dict[str, Entry]) -> list[EntryChange]:
        """``apply`` for decoded entries, with no delta: the changes."""
        self._untouched = False
        if len(entries) >= BULK_ENTRIES:  # a join's chunk: digests made when asked
            self._fine = None
        changed: list[EntryChange] = []
        mine = self._entries
        for key, entry in entries.items():
            old = mine.get(key)
            if old is None or old < entry:
                self._set(key, old, entry)
                changed.append(EntryChange(key, old, entry))
        return changed

    def forget(self, key: str) -> None:
        """Drop ``key``'s entry (a replica that learned the key was pruned elsewhere)."""
        old = self._entries.pop(key, None)
        if old is None:
            return
        self._gone -= old.deadline != math.inf
        if self._fine is not None:
            self._fine[bucket(key, len(self._fine))] ^= _hash(key, old)

    # -- tombstones ------------------------------------------------------------------------

    @property
    def tombstones(self) -> int:
        """Entries with a deadline: tombstones, and live keys with a time to live."""
        return self._gone

    def prunable(self, before: float) -> bool:
        """Whether some tombstone may be gone before ``before`` (no walk)."""
        return self._earliest < before

    def prune(self, before: float) -> list[str]:
        """Forget the tombstones gone before ``before``; return their keys. Walks the
        entries only when ``prunable``."""
        if not self.prunable(before):
            return []
        pruned, earliest = [], math.inf
        for key, entry in self._entries.items():
            if entry.gone_before(before):
                pruned.append(key)
            elif entry.deadline < earliest:
                earliest = entry.deadline
        for key in pruned:
            self.forget(key)
        self._earliest = earliest
        return pruned

    def compact(self) -> None:
        """Give back the memory of entries forgotten (``tables.shrunk``)."""
        self._entries = shrunk(self._entries)

    # -- anti-entropy ------------------------------------------------------------------------

    def bucket_count(self) -> int:
        """The bucket count this directory's digests use (a power of two)."""
        wanted = max(MIN_BUCKETS, -(-len(self._entries) // PER_BUCKET))
        return min(MAX_BUCKETS, 1 << (wanted - 1).bit_length())

    def digests(self, buckets: int) -> bytes:
        """The digest of each of ``buckets`` buckets (a power of two)."""
        fine = self._fine
        if fine is None or len(fine) < self.bucket_count():
            fine = self._fine = self._compute(self.bucket_count())
        if buckets > len(fine):  # finer than kept (a peer holding more): computed
            out = self._compute(buckets)
        else:
            out = array("Q", fine[:buckets])
            for start in range(buckets, len(fine), buckets):
                part = fine[start : start + buckets]
                for i in range(buckets):
                    out[i] ^= part[i]
        return out.tobytes()

    def _compute(self, buckets: int) -> array[int]:
        out = array("Q", bytes(_DIGEST * buckets))
        mask = buckets - 1
        crc32 = zlib.crc32
        for key, entry in self._entries.items():
            out[crc32(key.encode()) & mask] ^= _hash(key, entry)
        return out

    def differing(self, buckets: int, theirs: bytes) -> list[int]:
        """The buckets whose digests differ from ``theirs`` (``buckets`` of them).

        Raises:
            InvalidUpdate: ``theirs`` is not ``buckets`` digests.
        """
        check_digests(buckets, theirs)
        ours = self.digests(buckets)
        if ours == theirs:
            return []
        d = _DIGEST
        return [i for i in range(buckets) if ours[i * d : i * d + d] != theirs[i * d : i * d + d]]

    def chunks(
        self, buckets: int, wanted: list[int], size: int = CHUNK, max_bytes: int = CHUNK_BYTES
    ) -> Iterator[tuple[bytes, list[int]]]:
        """The entries of the ``wanted`` buckets, as updates of at most ``size``
        entries and about ``max_bytes`` each, with the buckets each completes (all of a
        bucket's entries are in it or in the updates before). Every wanted bucket is
        completed by some update, an empty one if none holds anything."""
        if len(wanted) == buckets:  # as they are now: they may change as chunks go
            keys, entries = list(self._entries), list(self._entries.values())
        else:
            want = set(wanted)
            mask = buckets - 1
            crc32 = zlib.crc32
            by_bucket: dict[int, list[tuple[str, Entry]]] = {b: [] for b in wanted}
            for key, entry in self._entries.items():
                at = crc32(key.encode()) & mask
                if at in want:
                    by_bucket[at].append((key, entry))
            items = [item for b in wanted for item in by_bucket[b]]
            keys, entries = [k for k, _ in items], [e for _, e in items]
        start, count = 0, len(keys)
        while True:
            end = min(count, start + size)
            some = keys[start:end]
            # Characters are bytes unless a key is not ASCII (then count its UTF-8).
            chars = sum(map(len, some))
            if not all(map(str.isascii, some)):
                chars = sum(len(key.encode()) for key in some)
            over = chars + _ENTRY_BYTES * (end - start) - max_bytes
            if over > 0:  # long keys: fewer of them, in proportion
                end = start + max(1, (end - start) * max_bytes // (max_bytes + over))
            chunk = zip(keys[start:end], entries[start:end], strict=True)
            if end == count:
                yield encode_update(chunk), list(wanted)
                return
            yield encode_update(chunk), []
            start = end

    def close(self) -> None:
        """Drop every entry."""
        self._entries = {}
        self._fine = None
        self._gone, self._earliest = 0, math.inf
