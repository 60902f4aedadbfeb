"""Dicts given back their memory: a Python dict never shrinks when entries leave it.

A dict that held a million keys keeps a table for a million (about 42 MB) after all
but one have been removed, until something is inserted past a resize. Long-lived
tables of pydds (a directory's entries, a keyspace's keys, the holders of values)
lose most of their entries when many keys are deleted and their tombstones pruned;
``shrunk`` copies such a table into one sized to what it holds.
"""

from __future__ import annotations

import sys
from typing import TypeVar

__all__ = ["shrunk"]

K = TypeVar("K")
V = TypeVar("V")

#: Bytes a dict's table may take per entry it holds (a full table takes about 42, a
#: table just grown about 84) before ``shrunk`` copies it.
_BYTES_PER_ENTRY = 256
#: Tables up to this many bytes are left as they are, whatever they hold.
_SMALL = 1 << 16


def shrunk(table: dict[K, V]) -> dict[K, V]:
    """``table`` itself, or, when its memory is far more than its entries need, a
    copy sized to them (the caller keeps the copy in place of the table). O(1) unless
    it copies; a copy is O(entries) and follows removals of most of them."""
    size = sys.getsizeof(table)
    if size <= _SMALL or size <= _BYTES_PER_ENTRY * len(table):
        return table
    return dict(table)
