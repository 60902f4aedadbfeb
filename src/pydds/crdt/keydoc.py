"""One key's value document: the CRDT that holds one generation of one key's value.

Theory of operation
-------------------
The document has one root map, ``value``, whose entry ``v`` (the slot) holds the
value. A whole-value ``set`` replaces the slot, so concurrent sets resolve to one
winner (Yjs orders them by client id); ``update``, ``append`` and ``incr`` edit the
value in place, so concurrent edits of different parts merge. Edits made inside a
value that a concurrent ``set`` replaced are lost with it.

A ``set`` stores the value *packed*, in an entry of its writer's own: ``w`` and the
writer's client id holds ``b"P"``, a logical clock (8 bytes), an 8-byte nonce, then
the value packed with msgpack (its dicts' fields sorted). The set removes every
other entry it sees (the other writers', and ``v``). The value of the document is
the entry with the greatest clock (a set takes one more than the greatest it sees,
so a set always wins over the sets it has seen); between equal clocks (concurrent
sets) the greater client id wins, and a writer's entry wins over ``v``, whose clock
is in ``vl``. A replaced buffer is one deleted item that Yrs garbage-collects, and
the replaced items of one writer's entry follow each other, so Yrs merges them: a
key set a million times costs what it costs set once, by one writer or by several
taking turns (in one shared entry, the items of writers taking turns would not
follow each other, and a nested ``Map`` per set would leave a tombstone of about
220 bytes each: its fields are items of their own).

A packed value is edited in place through an *overlay* named by its nonce, so that
every replica editing the same packed value edits the same shared types:

* ``update`` of a packed dict writes its fields into the root map ``o`` under
  ``nonce + field``; a read lays them over the packed fields. Concurrent updates of
  different fields merge, of one field resolve like concurrent sets of it.
* ``append`` to a list inside the packed value (``path`` through packed parts only)
  appends to the root array named ``a + nonce + path``, registered in the root map
  ``m``; a read extends the packed list with it, unless an overlay field replaced
  the part of the value the path goes through. A path that reaches an overlay
  field or an appended item goes on in those live types, as in any value.
* A dict or list that ``update`` writes into a field (of a packed value's overlay,
  or of a value made in place) is packed too, with the same kind of buffer (clock
  0): what is appended to it goes to its own overlay, by its nonce, and an update
  of that field drops it with the buffer. So a field updated with a dict many
  times costs what it costs once, where a nested ``Map`` per update would leave a
  tombstone for each.
* A ``set`` clears the overlays of the values it replaces (those of the entries it
  sees and removes, by their nonces) and the root type a marker in ``v`` named; the
  cleared items are garbage collected too. It leaves other overlays alone: one may
  arrive before its value's entry, and that value may yet win over the set.

Thus a value that is only ever set, or set and then edited, merges exactly as a
value of nested types would; the edits themselves leave what edits leave in any
Yjs type (a field replaced by a dict leaves that dict's tombstone).

A new key made by ``update``, ``append`` or ``incr`` must merge with the same
operation made concurrently elsewhere, but two replicas that each put a new map in
the slot make two maps, and only one would win. So these start the value in a root
type of the document instead (root types are named, and every replica's root type of
one name is the same one): the slot gets a marker buffer, ``b"D"`` for the root map
``dict``, ``b"L"`` for the root array ``list``, ``b"C"`` for the root map ``counter``.

A ``KeyDoc`` is *held* when this node has a copy of the value. A held document is
either live (a ``YDoc``) or idle (its encoded state, a few hundred bytes instead of
about 3 KB); the keyspace keeps the most recently used ones live. ``packed`` caches
the value packed with msgpack, so reads of an unchanged value never touch the CRDT;
every change updates or clears it, its dicts' fields sorted as a decoded value's are.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import msgpack

from ..errors import InvalidValue, PathNotFound, WrongType
from . import values
from .sync import update_state_vector, value_hash
from .ydoc import ARRAY_TYPE, MAP_TYPE, YArray, YDoc, YTxn

__all__ = [
    "BYTES_COST",
    "EVICTED",
    "LIVE_COST",
    "LOCAL",
    "MISSING",
    "ON_DISK",
    "REMOTE",
    "UNTRACKED",
    "KeyDoc",
    "LiveDocs",
]

ROOT = "value"
SLOT = "v"  # a value made in place (update, append, incr of nothing; incr of an int)
_SLOT_CLOCK = "vl"  # the logical clock of what ``v`` holds
_WRITER = "w"  # + a writer's client id: that writer's last whole-value set
#: Transaction origins: this node's own writes, and updates applied from elsewhere.
LOCAL = 1
REMOTE = 2
#: ``read`` of a document whose slot is empty (its writes have not arrived yet).
MISSING: Any = object()
_COUNTER_BASE = "base"
#: Slot markers: the value lives in this root type (see the theory of operation).
_MARKERS = {b"D": ("dict", "map"), b"L": ("list", "array"), b"C": ("counter", "map")}
#: A writer entry's buffer: ``_PACKED``, a clock, a nonce, then the packed value.
_PACKED = ord("P")
_NONCE = 8
_HEAD = 1 + 8 + _NONCE
#: The greatest clock (8 bytes): a set over an entry at it takes it too, and wins, as
#: it removes that entry.
_MAX_CLOCK = 2**64 - 1
#: The overlay's root types (see the theory of operation).
_OVERLAY, _APPENDED, _APPENDS = "o", "m", "a"
#: What a live ``YDoc`` of a small value takes (measured: 3.4 KB), and what a
#: ``bytes`` object takes beside its data (header, allocator rounding).
LIVE_COST = 3400
BYTES_COST = 40
STATE_VECTOR_COST = 8  # an idle document's state vector, counted whether cached or not
#: ``KeyDoc.mem_slot`` of a document no footprint tracks, and of one whose copy was
#: evicted to this node's store (a read reloads it from there).
UNTRACKED = -1
ON_DISK = -2
#: ``KeyDoc.mem_slot`` of a document whose copy was evicted because another node
#: holds it (a delta that arrives before that node heard of it makes a stale copy).
EVICTED = -3


def _current(doc: YDoc, txn: YTxn) -> tuple[str | None, Any, int]:
    """The entry that holds the value: its name, its item, and the greatest clock of
    every entry (``(None, MISSING, clock)`` when none holds anything)."""
    root = doc.root
    best: tuple[int, int, int] | None = None
    name: str | None = None
    item: Any = MISSING
    greatest = 0
    for key in root.keys(txn):
        if key == SLOT:
            clock = _clock(root.get(txn, _SLOT_CLOCK)) if root.has(txn, _SLOT_CLOCK) else 0
            rank = (clock, 0, 0)
        elif key[:1] == _WRITER:
            entry = root.get(txn, key)
            if not _is_packed(entry):
                continue
            writer = key[1:]
            if not (writer.isascii() and writer.isdigit()):
                continue  # no writer of pydds's: read as absent
            clock = int.from_bytes(entry[1:9], "big")
            rank = (clock, 1, int(writer))
        else:
            continue
        greatest = max(greatest, clock)
        if best is None or rank > best:
            best, name = rank, key
    if name is not None:
        item = root.get(txn, name)
    return name, item, greatest


def _clock(raw: Any) -> int:
    return int.from_bytes(raw, "big") if type(raw) in (bytes, bytearray) else 0


def _slot(doc: YDoc, txn: YTxn) -> Any:
    """The value's item: a writer's packed buffer, or what ``v`` holds (a marker
    resolved to its root type); ``MISSING`` when nothing holds a value yet."""
    _, item, _ = _current(doc, txn)
    if type(item) in (bytes, bytearray) and bytes(item) in _MARKERS:
        return _root_type(doc, txn, bytes(item))
    return item


def _put_slot(doc: YDoc, txn: YTxn, clock: int) -> None:
    """``v`` is about to hold the value: remove every writer entry, set its clock."""
    root = doc.root
    for key in root.keys(txn):
        if key[:1] == _WRITER:
            root.remove(txn, key)
    root.insert(txn, _SLOT_CLOCK, clock.to_bytes(8, "big"))


def _start(doc: YDoc, txn: YTxn, marker: bytes) -> Any:
    """Start an empty document's value in the root type of ``marker``."""
    _put_slot(doc, txn, 1)
    doc.root.insert(txn, SLOT, marker)
    return _root_type(doc, txn, marker)


def _root_type(doc: YDoc, txn: YTxn, marker: bytes) -> Any:
    name, kind = _MARKERS[marker]
    return doc.root_map(txn, name) if kind == "map" else doc.root_array(txn, name)


class KeyDoc:
    """One generation of one key's value, live or idle."""

    __slots__ = (
        "_doc",
        "_hash",
        "_state",
        "_state_vector",
        "accessed",
        "gen",
        "mem_slot",
        "packed",
        "stale",
    )

    def __init__(self, gen: int, state: bytes | None = None, accessed: float = 0.0) -> None:
        self.gen = gen  # the key's generation this document belongs to
        self.accessed = accessed  # when this node last read or wrote it (its clock)
        self.stale = False  # marked stale: no longer replicated here
        self.packed: bytes | None = None  # the value packed, or None to decode again
        self._doc: YDoc | None = None  # the live document, or None when idle
        self._state = state  # the encoded document while idle
        self._state_vector: bytes | None = None  # its state vector while idle, once known
        self._hash: int | None = None  # ``value_hash``, until the document changes
        self.mem_slot = UNTRACKED  # its place in the node's ``Footprint`` (or a mark)

    @property
    def held(self) -> bool:
        """Whether this node has a copy of the value (live or idle)."""
        return self._doc is not None or self._state is not None

    @property
    def live(self) -> bool:
        """Whether the document is in memory as a live ``YDoc``."""
        return self._doc is not None

    def footprint(self) -> int:
        """Bytes its copy of the value takes (an estimate; 0 when not held): the
        encoded state, state vector and packed value, or a live document."""
        size = 0 if self.packed is None else BYTES_COST + len(self.packed)
        if self._doc is not None:
            return size + LIVE_COST
        if self._state is not None:  # and its state vector, once asked (a few bytes)
            size += 2 * BYTES_COST + len(self._state) + STATE_VECTOR_COST
        return size

    def doc(self, client_id: int) -> YDoc:
        """The live document, loading it from its idle state if needed."""
        doc = self._doc
        if doc is None:
            doc = self._doc = YDoc(client_id, ROOT, self._state)
            self._state = self._state_vector = None
        return doc

    def suspend(self) -> None:
        """Keep the document encoded only (idle)."""
        doc = self._doc
        if doc is not None:
            self._state = doc.diff()
            self._state_vector = doc.state_vector()  # anti-entropy asks for it often
            doc.close()
            self._doc = None

    def restore(self, state: bytes) -> None:
        """Hold the copy whose encoded document is ``state`` (idle; a store kept it)."""
        self.close()
        self._state = state

    def close(self) -> None:
        """Drop the document (the key was deleted or replaced by a newer generation)."""
        if self._doc is not None:
            self._doc.close()
        self._doc = None
        self._state = self._state_vector = None
        self.packed = self._hash = None

    # -- reads -------------------------------------------------------------------

    def read(self, client_id: int) -> Any:
        """The value, as fresh objects (``MISSING`` when the slot is empty)."""
        packed = self.packed
        if packed is not None:
            return values.unpack(packed)
        doc = self.doc(client_id)
        txn = doc.read()
        try:
            item = _slot(doc, txn)
            if item is MISSING:
                value = MISSING
            elif _is_packed(item):
                value = _read_packed(doc, txn, item)
            else:
                value = values.read(txn, item, _reader(doc, txn))
        finally:
            txn.drop()
        if value is not MISSING:
            # A value that cannot be packed (a counter whose merged total left the
            # 64-bit range) is decoded on every read instead.
            with contextlib.suppress(InvalidValue):
                self.packed = values.pack(value, 1 << 62)
        return value

    # -- writes (values are checked and packed by the caller) ----------------------

    def set(self, client_id: int, value: Any, packed: bytes) -> bytes | None:
        """Replace the value; return the delta."""
        doc = self.doc(client_id)
        ordered = values.sort_fields(value)  # as a decoded copy would read
        self.packed = packed if ordered is value else values.pack(ordered, 1 << 62)
        root = doc.root
        own = f"{_WRITER}{client_id}"
        txn = doc.begin(LOCAL)
        try:
            keys = root.keys(txn)
            if keys == [own]:  # the common case: this writer's set replaced
                old = root.get(txn, own)
                clock = _clock(old[1:9])
                _forget(doc, txn, old)
            else:
                clock = _current(doc, txn)[2]
                for key in keys:  # every entry seen: the values this set replaces
                    if key != _SLOT_CLOCK:
                        _forget(doc, txn, root.get(txn, key))
                    if key != own:
                        root.remove(txn, key)
            root.insert(txn, own, _entry(min(clock + 1, _MAX_CLOCK), self.packed))
        finally:
            delta = doc.end(txn)
        self._hash = None
        return delta

    def update(self, client_id: int, fields: dict[str, Any], max_bytes: int) -> bytes | None:
        """Set ``fields`` in a dict value (created if the slot is empty); return the delta.

        Raises:
            WrongType: the value is not a dict.
        """
        doc = self.doc(client_id)
        txn = doc.begin(LOCAL)
        try:
            target = _slot(doc, txn)
            if target is MISSING:
                target = _start(doc, txn, b"D")
            elif _is_packed(target):
                if type(_unpacked(target)) is not dict:
                    raise WrongType("update needs a dict value")
                overlay, nonce = doc.root_map(txn, _OVERLAY), _nonce(target)
                for k, v in fields.items():
                    txn = _write_field(doc, txn, overlay, nonce + k, v)
                target = None
            elif type(target) is not MAP_TYPE or values.is_counter(txn, target):
                raise WrongType("update needs a dict value")
            if target is not None:
                for k, v in fields.items():
                    txn = _write_field(doc, txn, target, k, v)
        finally:
            delta = doc.end(txn)
        self._hash = None
        self.packed = _patch(self.packed, max_bytes, lambda value: _merge(value, fields))
        return delta

    def append(
        self, client_id: int, path: list[str | int], item: Any, max_bytes: int
    ) -> bytes | None:
        """Append ``item`` to the list at ``path``; return the delta.

        An empty slot with an empty path becomes ``[item]``.

        Raises:
            PathNotFound: ``path`` leads nowhere.
            WrongType: ``path`` does not lead to a list.
        """
        doc = self.doc(client_id)
        txn = doc.begin(LOCAL)
        try:
            start = _slot(doc, txn)
            if start is MISSING:
                if path:
                    raise PathNotFound(f"path {path!r} leads nowhere: the value is empty")
                arr = _start(doc, txn, b"L")
            else:
                arr = (
                    _locate(doc, txn, start, path)
                    if _is_packed(start)
                    else _walk(doc, txn, start, path)
                )
                if type(arr) is not ARRAY_TYPE and type(arr) is not _PackedList:
                    raise WrongType(f"append needs a list at path {path!r}")
                if type(item) in values.CONTAINERS:  # refused before anything changes
                    self._check_room(doc, txn, start, path)
                if type(arr) is _PackedList:
                    arr = _appends(doc, txn, arr.nonce, arr.path, register=True)
            txn = values.write(txn, arr, arr.len(txn), item, doc.renew)
        finally:
            delta = doc.end(txn)
        self._hash = None
        self.packed = _patch(self.packed, max_bytes, lambda value: _append_py(value, path, item))
        return delta

    def _check_room(self, doc: YDoc, txn: YTxn, start: Any, path: list[str | int]) -> None:
        """Refuse a container appended to a list that holds the most it may
        (``values.MAX_LIST_CONTAINERS``), counted from the packed value when it is
        cached (else read once, as a get would)."""
        if self.packed is not None:
            items = values.unpack(self.packed)
        elif _is_packed(start):
            items = _read_packed(doc, txn, start)
        else:
            items = values.read(txn, start, _reader(doc, txn))
        for step in path:
            items = items[step]
        if len(items) >= values.MAX_LIST_CONTAINERS:
            values.check_room(items)

    def incr(self, client_id: int, amount: int) -> tuple[bytes | None, int]:
        """Add ``amount`` to the counter; return the delta and the new total.

        An empty slot becomes a counter; an int value becomes a counter starting
        from it (concurrent conversions resolve like concurrent sets).

        Raises:
            WrongType: the value is neither a counter nor an int.
            InvalidValue: the total would leave the 64-bit range.
        """
        doc = self.doc(client_id)
        root = doc.root
        writer = str(client_id)
        txn = doc.begin(LOCAL)
        try:
            item = _slot(doc, txn)
            counter: Any
            if item is MISSING or values.is_counter(txn, item):
                # An empty slot starts the shared root counter, which may hold shares
                # already: of increments made elsewhere that arrived before this one.
                counter = _root_type(doc, txn, b"C") if item is MISSING else item
                own = values.buffer_int(counter.get(txn, writer)) if counter.has(txn, writer) else 0
                total = values.counter_total(txn, counter) + amount
                _check_total(total)  # before anything is written
                if item is MISSING:
                    _start(doc, txn, b"C")
            else:
                if type(item) in (bytes, bytearray) and item[:1] == b"i":
                    base = values.buffer_int(item)
                elif _is_packed(item) and type(packed := _unpacked(item)) is int:
                    base = packed
                else:
                    raise WrongType("incr needs a counter or an int value")
                own = 0
                total = base + amount
                _check_total(total)
                # An int value becomes a new counter in ``v`` (concurrent conversions:
                # one wins).
                _put_slot(doc, txn, min(_current(doc, txn)[2] + 1, _MAX_CLOCK))
                counter = root.insert_map_prelim(txn, SLOT)
                if base:
                    counter.insert(txn, _COUNTER_BASE, values.counter_entry(base))
            counter.insert(txn, writer, values.counter_entry(own + amount))
        finally:
            delta = doc.end(txn)
        self._hash = None
        self.packed = values.pack(total, 64)
        return delta, total

    def value_hash(self, client_id: int, key: str) -> int:
        """``sync.value_hash`` of this document as the value of ``key`` (cached until
        the document changes: anti-entropy digests every held value each period)."""
        cached = self._hash
        if cached is None:
            cached = self._hash = value_hash(key, self.gen, self.state_vector(client_id))
        return cached

    def state_vector(self, client_id: int) -> bytes:
        """The document's state vector (sync step 1), without loading an idle one."""
        if self._doc is None and self._state is not None:
            if self._state_vector is None:  # without loading it (a restored copy)
                self._state_vector = update_state_vector(self._state)
            return self._state_vector
        return self.doc(client_id).state_vector()

    def encoded(self) -> bytes | None:
        """The whole document as one update (None when not held), without loading it."""
        if self._doc is not None:
            return self._doc.diff()
        return self._state

    def diff(self, client_id: int, state_vector: bytes) -> bytes:
        """What a replica at ``state_vector`` lacks (sync step 2).

        Raises:
            InvalidUpdate: the state vector does not decode.
        """
        return self.doc(client_id).diff(state_vector)

    def apply(self, client_id: int, update: bytes) -> bytes | None:
        """Apply an update from elsewhere; return the delta it made here.

        Raises:
            InvalidUpdate: the bytes do not decode; nothing was applied.
        """
        doc = self._doc if self._doc is not None else self.doc(client_id)
        delta = doc.apply(update, REMOTE)
        if delta is not None:
            self.packed = self._hash = None
        return delta


def _is_packed(item: Any) -> bool:
    """Whether a slot's item is a packed value's buffer."""
    return type(item) in (bytes, bytearray) and len(item) > _HEAD and item[0] == _PACKED


def _entry(clock: int, packed: bytes) -> bytes:
    """A writer entry's buffer for a set of the value ``packed``, at ``clock``."""
    return b"P" + clock.to_bytes(8, "big") + _next_nonce() + packed


#: Nonces: a random start for this process, then counted (a set's nonce is unique
#: unless two processes' starts fall within as many sets of each other: 2**-64 odds).
_nonces = itertools.count(int.from_bytes(os.urandom(_NONCE), "big"))


def _next_nonce() -> bytes:
    return (next(_nonces) & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(_NONCE, "big")


def _unpacked(item: Any) -> Any:
    """The value a writer entry's buffer holds (its overlay aside); None for bytes
    that do not unpack (pydds never writes them: read as the nearest JSON value)."""
    try:
        return values.unpack(bytes(item[_HEAD:]))
    except Exception:  # msgpack's errors on bytes from elsewhere
        return None


def _reader(doc: YDoc, txn: YTxn) -> Any:
    """How ``values.read`` decodes the packed values it meets in ``doc``."""
    return lambda item: _read_packed(doc, txn, item)


def _write_field(doc: YDoc, txn: YTxn, target: Any, name: str, value: Any) -> YTxn:
    """Write one field of ``update``: a dict or list packed (an overwritten one is one
    deleted item that Yrs collects, where a nested type would leave a tombstone of
    its own for every field), anything else as ``values.write`` stores it. What was
    appended to a packed value the field held goes with it."""
    if target.has(txn, name):
        old = target.get(txn, name)
        if _is_packed(old):
            _clear_appends(doc, txn, _nonce(old))
    if type(value) in values.CONTAINERS:
        packed = values.pack(values.sort_fields(value), 1 << 62)
        target.insert(txn, name, _entry(0, packed))
        return txn
    return values.write(txn, target, name, value, doc.renew)


def _clear_appends(doc: YDoc, txn: YTxn, nonce: str) -> None:
    """Remove what was appended to the lists of the packed value named ``nonce``."""
    appended = doc.root_map(txn, _APPENDED)
    if appended.len(txn):
        for name in appended.keys(txn):
            if name.startswith(nonce):
                arr = doc.root_array(txn, _APPENDS + name)
                if arr.len(txn):
                    arr.remove_range(txn, 0, arr.len(txn))
                appended.remove(txn, name)


def _clear_root_type(doc: YDoc, txn: YTxn, marker: bytes) -> None:
    """Empty the root type a marker names: a ``set`` replaced the value it held."""
    target = _root_type(doc, txn, marker)
    if type(target) is MAP_TYPE:
        for name in target.keys(txn):
            field = target.get(txn, name)
            if _is_packed(field):
                _clear_appends(doc, txn, _nonce(field))
            target.remove(txn, name)
    elif target.len(txn):
        target.remove_range(txn, 0, target.len(txn))


def _nonce(item: Any) -> str:
    """The name part of a packed value's overlay: its nonce, as hex."""
    return bytes(item[9:_HEAD]).hex()


def _path_name(path: list[str | int]) -> str:
    packed: bytes = msgpack.packb(path)
    return packed.hex()


def _read_packed(doc: YDoc, txn: YTxn, item: Any) -> Any:
    """A packed value with its overlay laid over it, as fresh objects."""
    value = _unpacked(item)
    nonce = _nonce(item)
    overlay = doc.root_map(txn, _OVERLAY)
    replaced: set[str] = set()
    if overlay.len(txn) and type(value) is dict:
        cut = len(nonce)
        for name in overlay.keys(txn):
            if name.startswith(nonce):
                field = name[cut:]
                value[field] = values.read(txn, overlay.get(txn, name), _reader(doc, txn))
                replaced.add(field)
        if replaced:
            value = {k: value[k] for k in sorted(value)}
    appended = doc.root_map(txn, _APPENDED)
    if appended.len(txn):
        base = _unpacked(item)  # what registered paths are checked against
        for name in appended.keys(txn):
            if not name.startswith(nonce):
                continue
            path = _registered_path(name[len(nonce) :], base)
            if path is None or (path and path[0] in replaced):
                continue  # not written by pydds, or an update replaced that part
            target = value
            for step in path:
                target = target[step]
            arr = doc.root_array(txn, _APPENDS + name)
            target.extend(values.read(txn, arr, _reader(doc, txn)))
    return value


def _registered_path(name: str, base: Any) -> list[str | int] | None:
    """The path a registered appended array's name gives, if it leads to a list of
    the packed value itself (as every path pydds registers does); else None."""
    try:
        path = msgpack.unpackb(bytes.fromhex(name))
    except Exception:  # not hex, not msgpack: from elsewhere
        return None
    if type(path) is not list:
        return None
    node = base
    for step in path:
        in_dict = type(node) is dict and type(step) is str and step in node
        in_list = type(node) is list and type(step) is int and 0 <= step < len(node)
        if not (in_dict or in_list):
            return None
        node = node[step]
    return path if type(node) is list else None


class _PackedList:
    """A list inside a packed value, at ``path`` (indices from the start): appending
    to it registers the root array that extends it (``_appends``)."""

    __slots__ = ("nonce", "path")

    def __init__(self, nonce: str, path: list[str | int]) -> None:
        self.nonce, self.path = nonce, path


def _locate(doc: YDoc, txn: YTxn, item: Any, path: list[str | int]) -> Any:
    """Where to append at ``path`` of a packed value, changing nothing: a live array
    of its overlay, or a ``_PackedList`` (anything else: not a list there).

    Raises:
        PathNotFound: ``path`` leads nowhere.
    """
    nonce = _nonce(item)
    node: Any = _unpacked(item)
    overlay = doc.root_map(txn, _OVERLAY)
    walked: list[str | int] = []  # the path so far, indices counted from the start
    for i, step in enumerate(path):
        t = type(node)
        if t is dict and i == 0 and type(step) is str and overlay.has(txn, nonce + step):
            return _walk(doc, txn, overlay.get(txn, nonce + step), path[1:])
        if t is dict and type(step) is str and step in node:
            node = node[step]
            walked.append(step)
        elif t is list and type(step) is int:
            extra = _appends(doc, txn, nonce, walked, register=False)
            packed_len = len(node)
            total = packed_len + (extra.len(txn) if extra is not None else 0)
            if not -total <= step < total:
                raise PathNotFound(f"path {path!r} leads nowhere (at {step!r})")
            index = step % total
            if index >= packed_len:
                assert extra is not None
                return _walk(doc, txn, extra.get(txn, index - packed_len), path[i + 1 :])
            node = node[index]
            walked.append(index)
        else:
            raise PathNotFound(f"path {path!r} leads nowhere (at {step!r})")
    if type(node) is not list:
        return node  # not an array: the caller refuses it
    # Named by ``walked``: one list has one name, however its path was written.
    return _PackedList(nonce, walked)


def _appends(
    doc: YDoc, txn: YTxn, nonce: str, path: list[str | int], register: bool
) -> YArray | None:
    """The root array of items appended to the packed list at ``path``; None when
    none is registered and ``register`` is false."""
    name = nonce + _path_name(path)
    appended = doc.root_map(txn, _APPENDED)
    if not appended.has(txn, name):
        if not register:
            return None
        appended.insert(txn, name, True)
    return doc.root_array(txn, _APPENDS + name)


def _forget(doc: YDoc, txn: YTxn, item: Any) -> None:
    """Remove what the value ``item`` held outside its entry (a ``set`` replaced it):
    a packed value's overlay, by its nonce, and what was appended to the packed
    fields in it; the root type a marker names. Only these: another value's overlay
    may be seen before its entry, and its value may yet win over this set."""
    if _is_packed(item):
        nonce = _nonce(item)
        overlay = doc.root_map(txn, _OVERLAY)
        if overlay.len(txn):
            for name in overlay.keys(txn):
                if name.startswith(nonce):
                    field = overlay.get(txn, name)
                    if _is_packed(field):
                        _clear_appends(doc, txn, _nonce(field))
                    overlay.remove(txn, name)
        _clear_appends(doc, txn, nonce)
    elif type(item) in (bytes, bytearray) and bytes(item) in _MARKERS:
        _clear_root_type(doc, txn, bytes(item))


def _check_total(total: int) -> None:
    if not values.INT_MIN <= total <= values.INT_MAX:
        raise InvalidValue(f"counter total {total} would leave the 64-bit range")


def _walk(doc: YDoc, txn: YTxn, item: Any, path: list[str | int]) -> Any:
    """What ``path`` leads to from ``item`` (a live type), for an append: a live
    array, a ``_PackedList`` once the path enters a packed value, or anything else
    (the caller refuses it).

    Raises:
        PathNotFound: ``path`` leads nowhere.
    """
    for i, step in enumerate(path):
        if _is_packed(item):
            return _locate(doc, txn, item, path[i:])
        t = type(item)
        if t is MAP_TYPE and type(step) is str and item.has(txn, step):
            item = item.get(txn, step)
        elif t is ARRAY_TYPE and type(step) is int and -item.len(txn) <= step < item.len(txn):
            item = item.get(txn, step % item.len(txn))
        else:
            raise PathNotFound(f"path {path!r} leads nowhere (at {step!r})")
    if _is_packed(item):
        return _locate(doc, txn, item, [])
    return item


def _patch(packed: bytes | None, max_bytes: int, change: Any) -> bytes | None:
    """Apply a Python-side ``change`` to a packed value, or drop the cache."""
    if packed is None:
        return None
    value = values.unpack(packed)
    value = change(value)
    try:
        return values.pack(value, max_bytes)
    except InvalidValue:
        return None


def _merge(value: Any, fields: dict[str, Any]) -> Any:
    if type(value) is not dict:
        return values.sort_fields(fields)
    value.update(fields)
    return values.sort_fields(value)


def _append_py(value: Any, path: list[str | int], item: Any) -> Any:
    if not path and type(value) is not list:
        return [values.sort_fields(item)]
    target = value
    for step in path:
        target = target[step]
    item = values.sort_fields(item)
    target.append(list(item) if type(item) is tuple else item)
    return value


class LiveDocs:
    """The value documents kept live, least recently used first (bounded).

    When more than ``capacity`` are live, the least recently used one is suspended
    (kept encoded); it is loaded again on its next write or uncached read.
    """

    __slots__ = ("_docs", "capacity", "suspended")

    def __init__(self, capacity: int, suspended: Callable[[KeyDoc], None] | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.suspended = suspended  # told of each document it suspends (its size changed)
        self._docs: OrderedDict[KeyDoc, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._docs)

    def touch(self, keydoc: KeyDoc) -> None:
        """Mark ``keydoc`` as just used, suspending the least recently used if over capacity."""
        docs = self._docs
        try:
            docs.move_to_end(keydoc)
            return
        except KeyError:
            docs[keydoc] = None
        if len(docs) > self.capacity:
            oldest, _ = docs.popitem(last=False)
            oldest.suspend()
            if self.suspended is not None:
                self.suspended(oldest)

    def suspend_oldest(self) -> bool:
        """Suspend the least recently used live document (memory is short); whether
        there was one."""
        if not self._docs:
            return False
        oldest, _ = self._docs.popitem(last=False)
        oldest.suspend()
        if self.suspended is not None:
            self.suspended(oldest)
        return True

    def discard(self, keydoc: KeyDoc) -> None:
        """Forget ``keydoc`` (it was closed)."""
        self._docs.pop(keydoc, None)
