"""JSON-like values <-> Yrs shared types, with exact types.

Theory of operation
-------------------
A pydds value is a dict (str keys), list, str, int, float, bool, None, nested.
Yrs alone would not read them back exactly (pycrdt turns ints into floats and panics
on ints beyond 64 bits or dicts with non-str keys), so values are checked first and
stored in this encoding:

=============  ===========================================================
Python         Yrs
=============  ===========================================================
dict           ``Map`` of encoded values (concurrent field edits merge)
list, tuple    ``Array`` of encoded values (concurrent inserts interleave)
str            string
float          float (``-0.0`` kept; NaN and infinities are refused)
bool, None     bool, null
int            buffer ``b"i" + decimal digits``
counter        ``Map`` of writer -> buffer ``b"c" + decimal total`` (``incr``)
=============  ===========================================================

A Yrs map keeps no order of its fields (a decoded map lists them in an order that
changes from one process to the next), so every value reads back with each dict's
fields sorted by name: ``read`` sorts them, and the packed copy of a value written
here is packed from ``sort_fields`` of it. The order is then the same on every
replica, whether the value was decoded or its packing cached, and after a restart.

No user value is ever a buffer, so buffers are free to carry ints and counter
entries, and a map whose first entry is a ``b"c"`` buffer is a counter. A counter
reads as the int sum of its entries; each writer only ever rewrites its own entry,
so concurrent increments add up.

Each value is also kept packed with msgpack (``pack``), which maps the same types
exactly and unpacks about ten times faster than a walk over Yrs, into fresh objects
that share nothing with what is stored.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import msgpack

from ..errors import InvalidValue
from .ydoc import ARRAY_TYPE, MAP_TYPE, TEXT_TYPE, YArray, YMap, YTxn

__all__ = [
    "CONTAINERS",
    "INT_MAX",
    "INT_MIN",
    "MAX_LIST_CONTAINERS",
    "buffer_int",
    "check",
    "check_room",
    "counter_entry",
    "counter_total",
    "is_counter",
    "pack",
    "read",
    "sort_fields",
    "unpack",
    "write",
]

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1

_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack
_unpackb = msgpack.unpackb


def pack(value: Any, max_bytes: int) -> bytes:
    """Pack a value that ``check`` accepted.

    Raises:
        InvalidValue: the packed value is larger than ``max_bytes``, or holds a string
            that is not valid Unicode.
    """
    try:
        packed: bytes = _packb(value)
    except (UnicodeEncodeError, ValueError, OverflowError, TypeError) as exc:
        raise InvalidValue(f"value cannot be encoded: {exc}") from None
    if len(packed) > max_bytes:
        raise InvalidValue(f"value is {len(packed)} bytes packed, over the limit of {max_bytes}")
    return packed


def unpack(packed: bytes) -> Any:
    """A fresh copy of a packed value."""
    return _unpackb(packed)


def sort_fields(value: Any) -> Any:
    """``value`` with every dict's fields sorted by name, as ``read`` returns it: the
    value itself when they already are, else a copy of what had to change (a list or
    tuple that had to change becomes a list)."""
    t = type(value)
    if t is dict:
        changed: dict[str, Any] | None = None
        for k, v in value.items():
            tv = type(v)
            if tv is dict or tv is list or tv is tuple:
                ordered = sort_fields(v)
                if ordered is not v:
                    if changed is None:
                        changed = {}
                    changed[k] = ordered
        names = list(value)
        if changed is None:
            if names == sorted(names):
                return value
            return {k: value[k] for k in sorted(names)}
        return {k: changed[k] if k in changed else value[k] for k in sorted(names)}
    if t is list or t is tuple:
        out: list[Any] | None = None
        for i, v in enumerate(value):
            tv = type(v)
            if tv is dict or tv is list or tv is tuple:
                ordered = sort_fields(v)
                if ordered is not v:
                    if out is None:
                        out = list(value)
                    out[i] = ordered
        return value if out is None else out
    return value


def check(value: Any, max_depth: int) -> None:
    """Check that ``value`` is a JSON-like value pydds stores exactly.

    Raises:
        InvalidValue: with the path of the first offending part.
    """
    try:
        _check(value, max_depth)
    except _Bad as bad:
        raise InvalidValue(bad.reason, "$" + "".join(reversed(bad.path))) from None


class _Bad(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.path: list[str] = []


def _check(value: Any, depth: int) -> None:
    t = type(value)
    if t is dict:
        if depth <= 0:
            raise _Bad("value is nested too deeply")
        for k, v in value.items():
            if type(k) is not str:
                raise _Bad(f"dict key {k!r} is not a str")
            tv = type(v)
            if tv in _PLAIN or (tv is float and _finite(v)) or (tv is int and _INTS(v)):
                continue  # the common cases, without a call
            try:
                _check(v, depth - 1)
            except _Bad as bad:
                bad.path.append(f".{k}" if k.isidentifier() else f"[{k!r}]")
                raise
        return
    if t is list or t is tuple:
        if depth <= 0:
            raise _Bad("value is nested too deeply")
        containers = 0
        for i, v in enumerate(value):
            tv = type(v)
            if tv in _PLAIN or (tv is float and _finite(v)) or (tv is int and _INTS(v)):
                continue
            if tv is dict or tv is list or tv is tuple:
                containers += 1
                if containers > MAX_LIST_CONTAINERS:
                    raise _Bad(_TOO_MANY_CONTAINERS)
            try:
                _check(v, depth - 1)
            except _Bad as bad:
                bad.path.append(f"[{i}]")
                raise
        return
    if t in _PLAIN or value is None:
        return
    if t is int:
        if INT_MIN <= value <= INT_MAX:
            return
        raise _Bad(f"int {value} is outside [-2**63, 2**64-1]")
    if t is float:
        if math.isfinite(value):
            return
        raise _Bad(f"float {value} is not finite (NaN and infinities are not JSON)")
    # Subclasses of the accepted types (IntEnum, OrderedDict, str subclasses...) are
    # refused rather than silently read back as their base type.
    raise _Bad(f"{t.__name__} is not a JSON-like type")


#: Dicts and lists one list may hold. Yrs finds an array's item by walking the blocks
#: before it, and each container is a block of its own: a replica reading a list
#: back walks O(n^2) blocks (10,000 containers: 0.35 s; 50,000: 10 s on a 2-core VM).
#: Scalars in runs share blocks and are not counted (100,000 ints read in 0.06 s).
MAX_LIST_CONTAINERS = 10_000

_TOO_MANY_CONTAINERS = (
    f"a list holds more than {MAX_LIST_CONTAINERS} dicts and lists "
    "(split it, or store them under keys of a dict)"
)


def check_room(items: list[Any]) -> None:
    """Check that one more dict or list may be appended to ``items``.

    Raises:
        InvalidValue: ``items`` already holds ``MAX_LIST_CONTAINERS`` of them.
    """
    if sum(1 for v in items if type(v) in CONTAINERS) >= MAX_LIST_CONTAINERS:
        raise InvalidValue(_TOO_MANY_CONTAINERS)


#: Types that are valid whatever their value.
_PLAIN = frozenset({str, bool, type(None)})
_finite = math.isfinite


def _INTS(n: int) -> bool:
    return INT_MIN <= n <= INT_MAX


#: Items of a run of scalars written in one step of a long write (see ``_fill_list``).
STEP = 32

Renew = Callable[[YTxn], YTxn]


def write(
    txn: YTxn, parent: YMap | YArray, slot: str | int, value: Any, renew: Renew | None = None
) -> YTxn:
    """Store a checked value at ``slot`` of ``parent``: a key of a map (replacing
    what was there) or an index of an array (inserting there).

    With ``renew`` (``YDoc.renew``), a long list is written in steps; the
    transaction to go on with is returned (``txn`` itself without steps)."""
    target: Any = parent
    t = type(value)
    if t is dict:
        return _fill_map(txn, target.insert_map_prelim(txn, slot), value, renew)
    if t is list or t is tuple:
        return _fill_list(txn, target.insert_array_prelim(txn, slot), value, renew)
    if t is int:
        target.insert(txn, slot, b"i%d" % value)
    else:
        target.insert(txn, slot, value)
    return txn


def _fill_map(txn: YTxn, container: Any, value: dict[str, Any], renew: Renew | None) -> YTxn:
    insert = container.insert
    for slot, v in value.items():
        t = type(v)
        if t is int:
            insert(txn, slot, b"i%d" % v)
        elif t is dict or t is list or t is tuple:
            txn = write(txn, container, slot, v, renew)
        else:
            insert(txn, slot, v)  # str, float, bool, None: stored as they are
    return txn


def _fill_list(
    txn: YTxn, array: Any, items: list[Any] | tuple[Any, ...], renew: Renew | None
) -> YTxn:
    """Fill a new, empty array from its end, so that no insert walks far: Yrs finds
    an index by walking the blocks before it. Each container goes in at index 0;
    each run of scalars in order from index 0, in steps of ``STEP`` items when
    ``renew`` allows (a commit merges a step's items into one block, and the walk
    to the run's end stays short; the run takes a few bytes an item)."""
    insert = array.insert
    end = len(items)
    while end:
        start = end
        while start and type(items[start - 1]) not in CONTAINERS:
            start -= 1
        if start == end:  # a container
            end -= 1
            txn = write(txn, array, 0, items[end], renew)
            continue
        for index in range(end - start):
            v = items[start + index]
            insert(txn, index, b"i%d" % v if type(v) is int else v)
            if renew is not None and index % STEP == STEP - 1:
                txn = renew(txn)
        end = start
    return txn


#: The types that are stored as a container of their own (a block each in a list).
CONTAINERS = frozenset({dict, list, tuple})


def counter_entry(total: int) -> bytes:
    """The encoded entry of one writer in a counter."""
    return b"c%d" % total


def is_counter(txn: YTxn, item: Any) -> bool:
    """Whether a stored item is a counter (a map of ``b"c"`` buffers)."""
    if type(item) is not MAP_TYPE:
        return False
    keys: list[str] = item.keys(txn)
    return bool(keys) and _is_counter_entry(item.get(txn, keys[0]))


def _is_counter_entry(entry: Any) -> bool:
    return type(entry) in (bytes, bytearray) and entry[:1] == b"c"


def counter_total(txn: YTxn, item: YMap) -> int:
    """The value of a counter: the sum of every writer's entry."""
    return sum(buffer_int(item.get(txn, k)) for k in item.keys(txn))


def buffer_int(buf: Any) -> int:
    """The int in an int or counter buffer (0 for a malformed one from elsewhere)."""
    try:
        return int(buf[1:])
    except (ValueError, TypeError):
        return 0  # rather than breaking reads


def read(txn: YTxn, item: Any, packed: Callable[[Any], Any] | None = None) -> Any:
    """Decode a stored item into fresh Python objects; ``packed`` decodes a packed
    value's buffer (``b"P"``: see ``keydoc.py``), which only its document can.

    Items that pydds never writes (text, XML, native numbers written by another Yjs
    program) read as the nearest JSON-like value rather than failing.
    """
    t = type(item)
    if t is str or t is float or t is bool or item is None:
        return item
    if t is bytearray or t is bytes:
        if item[:1] == b"i":
            return buffer_int(item)
        if item[:1] == b"P" and packed is not None:
            return packed(item)
        return None
    if t is MAP_TYPE:
        keys = item.keys(txn)
        if keys and _is_counter_entry(item.get(txn, keys[0])):
            return counter_total(txn, item)
        return {k: read(txn, item.get(txn, k), packed) for k in sorted(keys)}
    if t is ARRAY_TYPE:
        return [read(txn, item.get(txn, i), packed) for i in range(item.len(txn))]
    if t is int:
        return item
    if t is TEXT_TYPE:
        return str(item.get_string(txn))
    return None
