"""The one exception tree of pydds.

Every error pydds raises on purpose derives from :class:`PyddsError`, and most also
derive from the builtin they resemble, so ``except KeyError`` or ``except ValueError``
keep working in code that does not know pydds::

    PyddsError
    ├── InvalidValue        (also ValueError)    a value, payload or argument pydds cannot store
    │   └── InvalidName                          a database, key or event name breaks the rules
    ├── InvalidUpdate       (also ValueError)    CRDT bytes that do not decode; nothing applied
    ├── KeyNotFound         (also KeyError)      the key is not in the database
    ├── PathNotFound        (also LookupError)   a path inside a value leads nowhere
    ├── WrongType           (also TypeError)     the operation does not fit the stored value
    ├── NodeClosed          (also RuntimeError)  the node was closed
    ├── Unavailable         (also TimeoutError)  no holder of a value answered in time
    ├── AckTimeout          (also TimeoutError)  too few nodes acknowledged a write in time
    ├── LinkClosed          (also ConnectionError) a link to a peer closed or never opened
    ├── ModuleError         (also RuntimeError)  a module could not be loaded or started
    ├── StorageError        (also OSError)       the store could not keep a write (disk full)
    ├── Forbidden           (also PermissionError) a client token does not allow this
    └── ProtocolError                            a link broke the protocol
        └── MalformedFrame  (also ValueError)    a frame that does not decode; the link closes
"""

from __future__ import annotations

__all__ = [
    "AckTimeout",
    "Forbidden",
    "InvalidName",
    "InvalidUpdate",
    "InvalidValue",
    "KeyNotFound",
    "LinkClosed",
    "MalformedFrame",
    "ModuleError",
    "NodeClosed",
    "PathNotFound",
    "ProtocolError",
    "PyddsError",
    "StorageError",
    "Unavailable",
    "WrongType",
]


class PyddsError(Exception):
    """Base class of every error pydds raises on purpose."""


class InvalidValue(PyddsError, ValueError):
    """A value, payload or argument that pydds cannot store; nothing was changed.

    ``path`` locates the offending part inside the value (``$`` is the value itself,
    ``$.a[2]`` the third item of its field ``a``).
    """

    def __init__(self, message: str, path: str = "$") -> None:
        super().__init__(f"{message} (at {path})" if path != "$" else message)
        self.path = path


class InvalidName(InvalidValue):
    """A database, key or event name that breaks the naming rules."""


class InvalidUpdate(PyddsError, ValueError):
    """CRDT update bytes that could not be decoded; nothing was applied."""


class KeyNotFound(PyddsError, KeyError):
    """The key is not in the database."""

    def __str__(self) -> str:  # KeyError quotes its argument; a message reads better
        return str(self.args[0]) if self.args else "key not found"


class PathNotFound(PyddsError, LookupError):
    """A path inside a value leads to no field or item."""


class WrongType(PyddsError, TypeError):
    """The operation does not fit the stored value (``update`` on a list, ``incr`` on a str)."""


class NodeClosed(PyddsError, RuntimeError):
    """The node was closed; it takes no more operations."""


class ModuleError(PyddsError, RuntimeError):
    """A module could not be loaded, or could not start (the node does not start)."""


class StorageError(PyddsError, OSError):
    """The store could not keep a write on disk (full, failing, or in use); the
    write stands in memory, and the store tries again."""


class Forbidden(PyddsError, PermissionError):
    """The credentials in use do not allow this (a client token's databases or
    rights); nothing changed."""


class ProtocolError(PyddsError):
    """A link broke the protocol; the link is closed with this reason."""


class MalformedFrame(ProtocolError, ValueError):
    """A frame that does not decode into valid messages (nothing in it was applied)."""


class Unavailable(PyddsError, TimeoutError):
    """No node holding the value answered within the bounded wait."""


class LinkClosed(PyddsError, ConnectionError):
    """A link to a peer closed, or could not be opened."""


class AckTimeout(PyddsError, TimeoutError):
    """Too few nodes acknowledged a write in time. The write still stands: it is
    applied here and goes on replicating; only the acknowledgement is missing."""
