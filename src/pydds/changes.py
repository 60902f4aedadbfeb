"""The unit of replication: the CRDT deltas of one operation on one key."""

from __future__ import annotations

import functools
from typing import NamedTuple

__all__ = ["Change", "make"]


class Change(NamedTuple):
    """What one operation changed, as another replica applies it (immutable).

    A node hands every ``Change`` it makes to its change listeners; another node
    applies it with ``Node.apply_change``. The cluster ships these over links; tests
    deliver them by hand, in any order. (A named tuple: one is made per write, and
    a frozen dataclass costs four times as much to make.)
    """

    database: str  # the database's name
    key: str  # the key the operation was on
    gen: int  # the key's generation (the value document the ``value`` delta is for)
    directory: bytes | None  # the directory delta, when the entry changed
    value: bytes | None  # the value-document delta, when the value changed
    origin: str  # the name of the node that made the change
    #: What it did: "created", "changed" or "deleted" (an ``EventKind``, a str), or
    #: None for a directory repair (no event).
    kind: str | None = None


#: ``make((database, key, gen, directory, value, origin, kind))``: a ``Change`` from
#: the tuple of its fields, by ``tuple.__new__`` in C (the named tuple's own
#: ``__new__`` is Python and costs twice as much). The keyspace makes one per write
#: and one per key of a directory a node joins with.
make = functools.partial(tuple.__new__, Change)
