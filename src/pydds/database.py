"""The user-facing API of one database: a named key space of JSON-like values."""

from __future__ import annotations

import contextlib
import html
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .config import DatabaseSettings, check_key, warn_renamed
from .crdt import values
from .errors import InvalidValue, KeyNotFound, NodeClosed, Unavailable
from .keyspace import NOT_HELD, STALE

if TYPE_CHECKING:
    from .keyspace import Keyspace
    from .node import Node

__all__ = ["Database", "Gate"]

_RAISE: Any = object()

#: A write's acknowledgement level: "local", "majority", "all", or a number of nodes.
Ack = str | int


class Gate:
    """What a node checks before its databases read or write: ``read(database, key)``
    and ``write(database)``, each None when there is nothing to check (an open node
    with no token's scope and no read listener: the common case, where a get or a
    set pays no call for it). The node owns it and keeps it current; its databases
    share it."""

    __slots__ = ("read", "write")

    def __init__(self) -> None:
        self.read: Callable[[str, str], None] | None = None
        self.write: Callable[[str], None] | None = None


class Database:
    """A named key space of JSON-like values, replicated as CRDTs.

    Get one from ``node.database(name)``. Values are dicts (str keys), lists, str,
    int (64-bit), float (finite), bool, None, nested; a value read back is exactly
    the value written (``1`` stays int, ``1.0`` float, a tuple comes back a list),
    and is a fresh copy: mutating it changes nothing stored.

    Example::

        db = node.database("cache")
        await db.set("user:1", {"name": "Ada", "langs": ["en"]})
        await db.update("user:1", {"age": 37})
        await db.append("user:1", ["langs"], "fr")
        await db.get("user:1")   # {'name': 'Ada', 'langs': ['en', 'fr'], 'age': 37}
        await db.incr("hits")    # 1
    """

    __slots__ = ("_gate", "_keyspace", "_name", "_node")

    def __init__(self, node: Node, keyspace: Keyspace, gate: Gate) -> None:
        self._node = node
        self._keyspace = keyspace
        self._name = keyspace.name
        self._gate = gate

    def __repr__(self) -> str:
        if self._node.closed:
            return f"<Database {self.name!r} (node closed)>"
        keys, held, stale = self._keyspace.counts()
        return f"<Database {self.name!r} keys={keys} held={held} stale={stale}>"

    def _repr_html_(self) -> str:
        """Jupyter's rich display: counts, and the keys with a preview of held values."""
        from .display import database_html

        if self._node.closed:
            return f"<div>database {html.escape(self.name)} (node closed)</div>"
        return database_html(self)

    @property
    def name(self) -> str:
        """The database's name."""
        return self._name

    @property
    def keyspace(self) -> Keyspace:
        """The synchronous state under this database (directory, value documents):
        for modules and tools that read or restore it; applications use the methods
        of ``Database``."""
        return self._keyspace

    @property
    def settings(self) -> DatabaseSettings:
        """The database's settings."""
        return self._keyspace.settings

    @property
    def stale_after(self) -> float | None:
        """Seconds without access after which a key goes stale on a node (None: never)."""
        return self._keyspace.settings.stale_after

    @property
    def expire(self) -> float | None:
        """The former name of ``stale_after`` (deprecated)."""
        warn_renamed("expire", "stale_after")
        return self._keyspace.settings.stale_after

    def _open(self) -> Keyspace:
        if self._node.closed:
            raise NodeClosed(f"node {self._node.name!r} is closed")
        return self._keyspace

    def _writable(self) -> Keyspace:
        check = self._gate.write  # closed, or a client's token: raises what it lacks
        if check is not None:
            check(self._name)
        return self._keyspace

    # -- reads -----------------------------------------------------------------------

    async def get(self, key: str, default: Any = _RAISE) -> Any:
        """The value of ``key``, as a fresh copy.

        Args:
            key: the key.
            default: returned when the key is absent; without it, absence raises.

        Raises:
            KeyNotFound: the key is absent and no default was given (a ``KeyError``).
        """
        check = self._gate.read  # closed, a token's read right, read listeners
        if check is not None:
            check(self._name, key)
        keyspace = self._keyspace
        try:
            value = keyspace.read(key)
            if value is NOT_HELD:
                await self._node.pull(self._name, key)
                value = keyspace.read(key, fresh=False)
            elif value is STALE:
                # Refresh from the holders; with none reachable, serve the local copy
                # and leave it flagged stale (``is_stale``).
                await self._node.refresh(self._name, key)
                value = keyspace.read(key, fresh=False)
        except KeyNotFound:
            if default is _RAISE:
                raise
            return default
        return None if value is NOT_HELD else value

    def is_stale(self, key: str) -> bool:
        """Whether this node's copy of ``key`` is stale: not read or written here for
        ``stale_after`` seconds, so no longer replicated here. A read refreshes it; a read
        that could reach no holder returns the local copy and leaves this True."""
        return self._keyspace.is_stale(key)

    async def pin(self, prefix: str = "") -> None:
        """Keep the keys starting with ``prefix`` (every key, by default) fresh on
        this node: they never go stale here, so changes made anywhere keep coming.
        Held copies that are stale now are refreshed from their holders.

        Example::

            await db.pin("config:")   # this node always has current config values
        """
        keyspace = self._open()
        if not isinstance(prefix, str):
            raise InvalidValue(f"a prefix is a str, not {type(prefix).__name__}")
        keyspace.pin(prefix)
        for key in keyspace.keys(prefix):
            if keyspace.is_stale(key):
                await self._node.refresh(self.name, key)

    def unpin(self, prefix: str = "") -> None:
        """Undo ``pin(prefix)``."""
        self._open().unpin(prefix)

    def pins(self) -> list[str]:
        """The pinned prefixes."""
        return self._keyspace.pins()

    def holds(self, key: str) -> bool:
        """Whether this node holds the value of ``key`` (reads of it need no peer)."""
        return self._keyspace.holds(key)

    async def _hold(self, keyspace: Keyspace, key: str) -> None:
        """Before writing a key whose value is elsewhere, pull it, so that the write
        follows what is there. With no holder reachable the write goes ahead on an
        empty copy and merges when the holders are back (offline tolerance)."""
        if key in keyspace and not keyspace.holds(key):
            with contextlib.suppress(Unavailable):
                await self._node.pull(self.name, key)
        elif keyspace.is_stale(key):
            await self._node.refresh(self.name, key)

    def __contains__(self, key: object) -> bool:
        return key in self._keyspace

    def __len__(self) -> int:
        return len(self._keyspace)

    def __iter__(self) -> Iterator[str]:
        """The keys, sorted (a snapshot: writes while iterating do not disturb it)."""
        return iter(self._keyspace.keys())

    def keys(self, prefix: str = "") -> list[str]:
        """The keys that start with ``prefix``, sorted.

        Example::

            db.keys(prefix="user:")   # ['user:1', 'user:2']
        """
        return self._keyspace.keys(prefix)

    # -- writes ----------------------------------------------------------------------

    async def set(self, key: str, value: Any, *, ack: Ack = "local") -> None:
        """Set ``key`` to ``value``, replacing any previous value.

        ``ack`` (on every write) says how many nodes must have applied the write
        before it returns: ``"local"`` (this node, the default), ``"majority"`` or
        ``"all"`` of the cluster's nodes, or a number of nodes (this one counts).
        Nodes that did not hold the key get it and hold it from then on.
        ``"durable"`` waits until this node's store has it on disk;
        ``"durable+majority"`` (or ``+all``, ``+N``) waits for both.

        Raises:
            AckTimeout: too few nodes acknowledged in time; the write stands.
            StorageError: ``durable``, and the store could not write it; it stands.
            InvalidValue: ``value`` is not JSON-like or too large; nothing changed.
            InvalidName: ``key`` is not a valid key.
        """
        keyspace = self._writable()
        limits = keyspace.limits
        if type(key) is not str or not 0 < len(key) <= limits.max_key_length or not key.isascii():
            check_key(key, limits)  # the full check, off the common path
        values.check(value, limits.max_depth)
        packed = values.pack(value, limits.max_value_bytes)
        if keyspace.needs_hold(key):
            await self._hold(keyspace, key)
        node = self._node
        if ack == "local":  # the common case, without a coroutine of the node's
            change = keyspace.set(key, value, packed)
            if change is not None:
                node.record(change)
            if node.congested:
                await node.flush()
        else:
            node.ack_level(ack)  # checked before anything changes
            await node.commit(keyspace.set(key, value, packed), ack)

    async def update(self, key: str, fields: dict[str, Any], *, ack: Ack = "local") -> None:
        """Set the given fields of the dict value of ``key`` (other fields stay).

        An absent key becomes a dict of ``fields``. Concurrent updates of different
        fields on different nodes both survive.

        Raises:
            WrongType: the value is not a dict (a ``TypeError``).
            InvalidValue: ``fields`` is not a dict of JSON-like values; nothing changed.
        """
        keyspace = self._writable()
        limits = keyspace.limits
        check_key(key, limits)
        if type(fields) is not dict:
            raise InvalidValue(f"update needs a dict of fields, not {type(fields).__name__}")
        values.check(fields, limits.max_depth)
        values.pack(fields, limits.max_value_bytes)
        if ack != "local":
            self._node.ack_level(ack)
        await self._hold(keyspace, key)
        await self._node.commit(keyspace.update(key, fields), ack)

    async def append(
        self, key: str, path: Sequence[str | int], item: Any, *, ack: Ack = "local"
    ) -> None:
        """Append ``item`` to the list found at ``path`` inside the value of ``key``.

        ``path`` is a sequence of dict fields (str) and list indexes (int, negative
        counting from the end); ``[]`` is the value itself, and an absent key with
        ``path=[]`` becomes ``[item]``. Concurrent appends on different nodes all
        survive, in the same order everywhere.

        Raises:
            KeyNotFound: the key is absent and ``path`` is not empty.
            PathNotFound: ``path`` leads nowhere.
            WrongType: ``path`` does not lead to a list.
            InvalidValue: ``item`` is not JSON-like; nothing changed.
        """
        keyspace = self._writable()
        limits = keyspace.limits
        check_key(key, limits)
        steps = list(path) if not isinstance(path, str) else None
        if steps is None or any(type(s) not in (str, int) for s in steps):
            raise InvalidValue(f"a path is a list of str and int, not {path!r}")
        values.check(item, limits.max_depth)
        values.pack(item, limits.max_value_bytes)
        if ack != "local":
            self._node.ack_level(ack)
        await self._hold(keyspace, key)
        await self._node.commit(keyspace.append(key, steps, item), ack)

    async def incr(self, key: str, amount: int = 1, *, ack: Ack = "local") -> int:
        """Add ``amount`` to the counter ``key`` and return the new total.

        An absent key starts at 0; an int value becomes a counter starting from it.
        Concurrent increments on different nodes add up.

        Raises:
            WrongType: the value is neither a counter nor an int.
            InvalidValue: ``amount`` is not an int, or the total would leave the
                64-bit range; nothing changed.
        """
        keyspace = self._writable()
        check_key(key, keyspace.limits)
        if type(amount) is not int or not values.INT_MIN <= amount <= 2**63 - 1:
            raise InvalidValue(f"incr needs a 64-bit int amount, not {amount!r}")
        if ack != "local":
            self._node.ack_level(ack)
        await self._hold(keyspace, key)
        total, change = keyspace.incr(key, amount)
        await self._node.commit(change, ack)
        return total

    async def delete(self, key: str, *, ack: Ack = "local") -> bool:
        """Delete ``key``; return whether it existed."""
        keyspace = self._writable()
        if ack != "local":
            self._node.ack_level(ack)
        change = keyspace.delete(key)
        await self._node.commit(change, ack)
        return change is not None
