"""What a Yjs update (v1 encoding) writes, read without applying it (pure).

Applying an update is the only way Yrs offers to learn what it does, and an applied
update cannot be taken back. A gateway must refuse a client's directory update that
would add keys no write could add (an empty key, an over-long one, more than the
database may have) *before* it applies it, so this module reads the encoding itself
(lib0's, as Yjs's ``encoding.js`` and Yrs's ``updates/decoder.rs`` write it):

    update  = clients:varuint { structs:varuint client:varuint clock:varuint struct* }
              delete_set
    struct  = info:u8 (GC | Skip | Item by ``info & 0x1f``)
    item    = [left origin id if info & 0x80] [right origin id if info & 0x40]
              [parent (1 + name | 0 + id) and [parent_sub if info & 0x20]
               when it has no origin] content

An item with no origin names its parent and, in a map, its key (``parent_sub``);
one with an origin takes both from the item it follows (an existing entry of the
same key, or an earlier item of the update). So the keys an update can start are
exactly the ``parent_sub`` of its items without an origin.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidUpdate

__all__ = ["MapItem", "map_items"]

#: Containers of lib0's ``Any`` nested deeper than this are refused.
MAX_ANY_DEPTH = 32

_CONTENT_DELETED, _CONTENT_ANY = 1, 8


@dataclass(frozen=True, slots=True)
class MapItem:
    """One item of an update that writes an entry of a root map."""

    key: str | None  # the entry it starts; None when it follows another item (origin)
    values: tuple[Any, ...]  # its content (lib0 Any values); empty for a deleted item


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise InvalidUpdate("the update ends early")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def uint(self) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result
            shift += 7
            if shift > 63:
                raise InvalidUpdate("a number of the update is too long")

    def signed(self) -> int:  # lib0's signed varint: sign in bit 6 of the first byte
        b = self.byte()
        negative, result, shift = b & 0x40, b & 0x3F, 6
        while b >= 0x80:
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if shift > 70:
                raise InvalidUpdate("a number of the update is too long")
        return -result if negative else result

    def take(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            raise InvalidUpdate("the update ends early")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def string(self) -> str:
        try:
            return self.take(self.uint()).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidUpdate("a string of the update is not UTF-8") from None

    def any(self, depth: int = 0) -> Any:
        if depth > MAX_ANY_DEPTH:
            raise InvalidUpdate("a value of the update is nested too deeply")
        kind = self.byte()
        if kind == 116:
            return self.take(self.uint())
        if kind in (127, 126):
            return None
        if kind == 125:
            return self.signed()
        if kind == 124:
            return struct.unpack(">f", self.take(4))[0]
        if kind == 123:
            return struct.unpack(">d", self.take(8))[0]
        if kind == 122:
            return struct.unpack(">q", self.take(8))[0]
        if kind in (121, 120):
            return kind == 120
        if kind == 119:
            return self.string()
        if kind == 118:
            return {self.string(): self.any(depth + 1) for _ in range(self._count())}
        if kind == 117:
            return [self.any(depth + 1) for _ in range(self._count())]
        raise InvalidUpdate(f"unknown value type {kind} in the update")

    def _count(self) -> int:
        n = self.uint()
        if n > len(self.data) - self.pos:  # each element takes a byte at least
            raise InvalidUpdate("a count of the update is larger than its data")
        return n


def map_items(update: bytes, root: str) -> list[MapItem]:
    """The items of ``update``, each an entry of the root map ``root`` with ``Any``
    content (or deleted content), as a directory's updates are.

    Raises:
        InvalidUpdate: the bytes are not a v1 update, or it writes anything else: a
            root type of another name, an item inside another item, text, a nested
            type, an embedded document.
    """
    r = _Reader(update)
    out: list[MapItem] = []
    for _ in range(r._count()):
        structs = r._count()
        r.uint()  # client
        r.uint()  # clock
        for _ in range(structs):
            info = r.byte()
            ref = info & 0x1F
            if ref in (0, 10):  # GC, Skip: a length
                r.uint()
                continue
            key = None
            if info & 0x80:
                r.uint(), r.uint()  # the left origin's id
            if info & 0x40:
                r.uint(), r.uint()  # the right origin's id
            if not info & 0xC0:
                if r.uint() != 1 or r.string() != root:
                    raise InvalidUpdate(f"the update writes outside the root map {root!r}")
                if not info & 0x20:
                    raise InvalidUpdate(f"the update writes {root!r} as a list, not a map")
                key = r.string()
            if ref == _CONTENT_DELETED:
                r.uint()
                out.append(MapItem(key, ()))
            elif ref == _CONTENT_ANY:
                out.append(MapItem(key, tuple(r.any() for _ in range(r._count()))))
            else:
                raise InvalidUpdate(f"the update writes content of type {ref}, not values")
    for _ in range(r._count()):  # the delete set
        r.uint()
        for _ in range(r._count()):
            r.uint(), r.uint()
    if r.pos != len(update):
        raise InvalidUpdate("the update has trailing bytes")
    return out
