"""The user-facing API of one database: a named key space of JSON-like values."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import html
import math
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from .config import DatabaseSettings, check_key, check_seconds
from .crdt import values
from .errors import InvalidValue, KeyNotFound, NodeClosed, Unavailable
from .events import EventKind
from .keyspace import KEEP, NOT_HELD, STALE

if TYPE_CHECKING:
    from .cached import Cached
    from .keyspace import Keyspace
    from .node import Node

__all__ = ["ChangedKeys", "Database", "Gate"]

_RAISE: Any = object()
_NEVER = math.inf
P = ParamSpec("P")
R = TypeVar("R")
#: Pulls a batch starts at once (``get_many``, ``set_many``): within ``max_pulls``.
BATCH_PULLS = 1000
#: Keys one ``set_many`` or ``delete_many`` takes at most: a batch's writes are
#: queued for every peer at once, within ``ClusterSettings.max_pending``.
MAX_BATCH = 10_000
#: Pulls a read makes at most for one value (a node past its memory limit may evict a
#: copy between its arrival and its read; the read then pulls it again).
PULL_TRIES = 3
#: Where a glob pattern's literal prefix ends.
_WILDCARD = re.compile(r"[*?\[]")

#: A write's acknowledgement level: "local", "majority", "all", or a number of nodes.
Ack = str | int


#: The events that say a key's value changed (what ``changes_since`` looks for).
_CHANGES = frozenset({EventKind.CREATED, EventKind.CHANGED, EventKind.DELETED, EventKind.EXPIRED})


@dataclass(frozen=True, slots=True)
class ChangedKeys:
    """What a consumer must read again (``Database.changes_since``).

    ``keys``: the keys that changed after the offset (created, changed, deleted or
    expired: read again, a deleted one is found absent), sorted; when not
    ``complete``, every key of the database, since the log no longer says what
    changed. ``offset``: the last offset this node's log had given when asked, to
    go on from (``node.events(since=offset)``).
    """

    keys: list[str]
    complete: bool
    offset: int


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
        await db.set("session:9", {"user": 1}, ttl=60)   # gone in a minute
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
    def default_ttl(self) -> float | None:
        """The time to live of keys written without one (``node.database(name,
        ttl=...)``), None when keys live until deleted."""
        return self._keyspace.settings.ttl

    def _open(self) -> Keyspace:
        if self._node.closed:
            raise NodeClosed(f"node {self._node.name!r} is closed")
        return self._keyspace

    def _writable(self) -> Keyspace:
        check = self._gate.write  # closed, or a client's token: raises what it lacks
        if check is not None:
            check(self._name)
        return self._keyspace

    def _deadline(self, ttl: float | None, keep: bool) -> float | None:
        """A write's deadline (``Keyspace.set``): from ``ttl`` (checked), else from
        the database's default; without either, none for a ``set`` and ``KEEP`` for
        the other writes (``keep``)."""
        if ttl is None:
            ttl = self._keyspace.settings.ttl
            if ttl is None:
                return KEEP if keep else _NEVER
        else:
            check_seconds("ttl", ttl)
        return self._node.clock.wall() + ttl

    def _after_write(self, keyspace: Keyspace, deadline: float | None) -> None:
        """Publish the expiry of a key the write found past its deadline (before the
        write's own event), and have the node's timer wake for the write's deadline."""
        if keyspace.lapsed:
            self._node.expired(self._name, keyspace.take_lapsed())
        if deadline is not None and deadline != _NEVER:
            self._node.deadline_set(deadline)

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
                for _ in range(PULL_TRIES):  # evicted again before it was read: again
                    await self._node.pull(self._name, key)
                    value = keyspace.read(key, fresh=False)
                    if value is not NOT_HELD:
                        break
                else:
                    raise Unavailable(
                        f"{key!r} of {self._name!r} was evicted again each time it was pulled"
                    )
                self._node.fit_memory()  # the copy taken back may pass the limit
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
            for _ in range(PULL_TRIES):  # evicted again before the write: again
                try:
                    await self._node.pull(self.name, key)
                except Unavailable:
                    break
                if keyspace.holds(key) or key not in keyspace:
                    break
        elif keyspace.is_stale(key):
            await self._node.refresh(self.name, key)

    def __contains__(self, key: object) -> bool:
        return key in self._keyspace

    def __len__(self) -> int:
        return len(self._keyspace)

    def __iter__(self) -> Iterator[str]:
        """The keys, sorted (a snapshot: writes while iterating do not disturb it)."""
        return iter(self._keyspace.keys())

    def keys(
        self,
        prefix: str = "",
        *,
        pattern: str | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[str]:
        """The keys that start with ``prefix`` and match ``pattern``, sorted.

        ``pattern`` is a shell-style glob (Python's ``fnmatch``, case-sensitive):
        ``*`` any characters, ``?`` one, ``[abc]`` one of them, ``[!abc]`` one not.
        ``after`` and ``limit`` page through them: the first ``limit`` keys that
        sort after ``after`` (give the last key of a page to get the next). A page
        costs one pass over the directory, not a sort of it: 30-70 ms for a million
        keys on a 2-core VM, where the whole sorted list takes 0.5 s.

        Example::

            db.keys(prefix="user:")                   # ['user:1', 'user:2']
            db.keys(pattern="user:?")                 # the same
            db.keys(prefix="user:", limit=1)          # ['user:1']
            db.keys(prefix="user:", after="user:1")   # ['user:2']
        """
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise InvalidValue(f"limit is an int of at least 0, not {limit!r}")
        if after is not None and not isinstance(after, str):
            raise InvalidValue(f"after is a key (a str), not {type(after).__name__}")
        if pattern is None:
            return self._keyspace.keys(prefix, after=after, limit=limit)
        if not isinstance(pattern, str):
            raise InvalidValue(f"a pattern is a str, not {type(pattern).__name__}")
        literal = pattern[: m.start()] if (m := _WILDCARD.search(pattern)) else pattern
        if literal.startswith(prefix):
            prefix = literal  # the keys a pattern can match start with its literal part
        elif not prefix.startswith(literal):
            return []
        match = re.compile(fnmatch.translate(pattern)).match
        return self._keyspace.keys(prefix, match=match, after=after, limit=limit)

    def changes_since(self, offset: int) -> ChangedKeys:
        """The keys to read again for a consumer that has this node's events up to
        ``offset`` (``Event.offset``): those that changed since, by this node's event
        log, whoever wrote them (changes from peers, caught up after a partition,
        are events here too). When the log no longer reaches back to ``offset``
        (trimmed, or a restart without persistence), every key: the answer says it
        is not ``complete``: a consumer then *replaces* what it keeps with what it
        reads (a key deleted meanwhile is not listed). Offset 0: every key, complete
        (nothing was seen).

        Example::

            seen = 0
            async with node.events(database="cache") as events:
                ...                             # seen = event.offset as they come
            # disconnected for a while, then:
            again = db.changes_since(seen)
            for key in again.keys:
                value = await db.get(key) if key in db else None
            # and go on with node.events(database="cache", since=again.offset)

        One pass over the log after ``offset`` (at most ``Limits.event_log``
        records), on the event loop.

        Raises:
            InvalidValue: ``offset`` is not an int of at least 0, or the node keeps
                no log (``Limits.event_log`` of 0).
        """
        log = self._node.event_log
        if log is None:
            raise InvalidValue("this node keeps no event log (Limits.event_log is 0)")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidValue(f"an offset is an int of at least 0, not {offset!r}")
        upto = log.next - 1
        if offset == 0:
            return ChangedKeys(self.keys(), True, upto)
        if offset > upto or log.gaps_after(offset):
            # Beyond the log: an offset of another node's, or of this one before a
            # restart without persistence and a clock set back. Nothing vouches.
            return ChangedKeys(self.keys(), False, upto)
        return ChangedKeys(sorted(log.keys_after(offset, self.name, _CHANGES)), True, upto)

    # -- writes ----------------------------------------------------------------------

    async def set(
        self, key: str, value: Any, *, ack: Ack = "local", ttl: float | None = None
    ) -> None:
        """Set ``key`` to ``value``, replacing any previous value.

        ``ttl`` (on every write) gives the key that many seconds to live from now:
        then it is gone on every node (an ``expired`` event). Without it, the
        database's default TTL applies (``node.database(name, ttl=...)``); with no
        default, a ``set`` leaves the key without a TTL (as Redis's SET) and the
        other writes keep the TTL the key has.

        ``ack`` (on every write) says how many nodes must have applied the write
        before it returns: ``"local"`` (this node, the default), ``"majority"`` or
        ``"all"`` of the cluster's nodes, or a number of nodes (this one counts).
        Nodes that did not hold the key get it and hold it from then on.
        ``"durable"`` waits until this node's store has it on disk;
        ``"durable+majority"`` (or ``+all``, ``+N``) waits for both.

        Raises:
            AckTimeout: too few nodes acknowledged in time; the write stands.
            StorageError: ``durable``, and the store could not write it; it stands.
            InvalidValue: ``value`` is not JSON-like or too large, or ``ttl`` is not
                a positive number of seconds; nothing changed.
            InvalidName: ``key`` is not a valid key.
        """
        keyspace = self._writable()
        limits = keyspace.limits
        if type(key) is not str or not 0 < len(key) <= limits.max_key_length or not key.isascii():
            check_key(key, limits)  # the full check, off the common path
        values.check(value, limits.max_depth)
        packed = values.pack(value, limits.max_value_bytes)
        deadline = (
            _NEVER if ttl is None and keyspace.settings.ttl is None else self._deadline(ttl, False)
        )
        if keyspace.needs_hold(key):
            await self._hold(keyspace, key)
        node = self._node
        if ack == "local":  # the common case, without a coroutine of the node's
            change = keyspace.set(key, value, packed, deadline)
            if keyspace.lapsed or deadline != _NEVER:
                self._after_write(keyspace, deadline)
            if change is not None:
                node.record(change)
            if node.congested:
                await node.flush()
        else:
            node.ack_level(ack)  # checked before anything changes
            change = keyspace.set(key, value, packed, deadline)
            self._after_write(keyspace, deadline)
            await node.commit(change, ack)

    async def update(
        self, key: str, fields: dict[str, Any], *, ack: Ack = "local", ttl: float | None = None
    ) -> None:
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
        deadline = self._deadline(ttl, True)
        if ack != "local":
            self._node.ack_level(ack)
        await self._hold(keyspace, key)
        change = keyspace.update(key, fields, deadline)
        self._after_write(keyspace, deadline)
        await self._node.commit(change, ack)

    async def append(
        self,
        key: str,
        path: Sequence[str | int],
        item: Any,
        *,
        ack: Ack = "local",
        ttl: float | None = None,
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
        deadline = self._deadline(ttl, True)
        if ack != "local":
            self._node.ack_level(ack)
        await self._hold(keyspace, key)
        try:
            change = keyspace.append(key, steps, item, deadline)
        finally:
            self._after_write(keyspace, deadline)
        await self._node.commit(change, ack)

    async def incr(
        self, key: str, amount: int = 1, *, ack: Ack = "local", ttl: float | None = None
    ) -> int:
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
        deadline = self._deadline(ttl, True)
        if ack != "local":
            self._node.ack_level(ack)
        await self._hold(keyspace, key)
        total, change = keyspace.incr(key, amount, deadline)
        self._after_write(keyspace, deadline)
        await self._node.commit(change, ack)
        return total

    async def delete(self, key: str, *, ack: Ack = "local") -> bool:
        """Delete ``key``; return whether it existed."""
        keyspace = self._writable()
        if ack != "local":
            self._node.ack_level(ack)
        change = keyspace.delete(key)
        self._after_write(keyspace, None)
        await self._node.commit(change, ack)
        return change is not None

    # -- batches -------------------------------------------------------------------------

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The values of the ``keys`` that exist, as a dict in the order given (absent
        keys are left out). Values not held here are pulled all at once, not one
        round trip per key.

        Example::

            await db.get_many(["user:1", "user:2", "nope"])   # {'user:1': ..., 'user:2': ...}

        Raises:
            Unavailable: some value is held elsewhere and no holder answered.
        """
        wanted = list(keys) if not isinstance(keys, str) else None
        if wanted is None:
            raise InvalidValue("get_many takes an iterable of keys, not one str")
        keyspace = self._keyspace
        for key in wanted:
            check_key(key, keyspace.limits)
        check = self._gate.read
        if check is not None:
            for key in wanted:
                check(self._name, key)
        found: dict[str, Any] = {}
        pull, refresh = [], []
        for key in wanted:
            try:
                value = keyspace.read(key)
            except KeyNotFound:
                continue
            if value is NOT_HELD:
                pull.append(key)
            elif value is STALE:
                refresh.append(key)
            else:
                found[key] = value
        for _ in range(PULL_TRIES):  # a copy evicted again before it was read: again
            if not pull and not refresh:
                break
            await self._fetch(pull, refresh)
            again = []
            for key in (*pull, *refresh):
                with contextlib.suppress(KeyNotFound):  # deleted meanwhile
                    value = keyspace.read(key, fresh=False)
                    if value is NOT_HELD:
                        again.append(key)
                    else:
                        found[key] = value
            pull, refresh = again, []
        self._node.fit_memory()  # the copies taken back may pass the limit
        return {key: found[key] for key in wanted if key in found}

    async def _fetch(self, pull: list[str], refresh: list[str]) -> None:
        """Pull the values of ``pull`` and refresh those of ``refresh``, at most
        ``BATCH_PULLS`` at a time.

        Raises:
            Unavailable: some value in ``pull`` could not be pulled.
        """
        node, name = self._node, self._name
        jobs = [node.pull(name, k) for k in pull] + [node.refresh(name, k) for k in refresh]
        failed: list[str] = []
        for at in range(0, len(jobs), BATCH_PULLS):
            results = await asyncio.gather(*jobs[at : at + BATCH_PULLS], return_exceptions=True)
            for i, result in enumerate(results, start=at):
                if isinstance(result, Unavailable) and i < len(pull):
                    failed.append(pull[i])
                elif isinstance(result, BaseException) and not isinstance(result, KeyNotFound):
                    raise result
        if failed:
            raise Unavailable(
                f"{len(failed)} values could not be pulled (no holder answered), "
                f"{failed[0]!r} first"
            )

    async def set_many(
        self, items: Mapping[str, Any], *, ack: Ack = "local", ttl: float | None = None
    ) -> None:
        """Set every key of ``items`` to its value, waiting once for the whole batch:
        one acknowledgement round, not one per key. Every key and value is checked
        first: if one is refused, nothing changed.

        Example::

            await db.set_many({"user:1": {"name": "Ada"}, "user:2": {"name": "Bob"}},
                              ack="majority", ttl=60)

        Raises:
            InvalidValue, InvalidName: as ``set``; nothing changed.
            AckTimeout: too few nodes acknowledged the batch in time; it stands.
        """
        keyspace = self._writable()
        if not isinstance(items, Mapping):
            raise InvalidValue(f"set_many takes a mapping, not {type(items).__name__}")
        limits = keyspace.limits
        if len(items) > MAX_BATCH:
            raise InvalidValue(f"a batch has at most {MAX_BATCH} keys, not {len(items)}")
        batch = []
        for key, value in items.items():
            check_key(key, limits)
            values.check(value, limits.max_depth)
            batch.append((key, value, values.pack(value, limits.max_value_bytes)))
        if ack != "local":
            self._node.ack_level(ack)
        deadline = self._deadline(ttl, False)
        pull = [key for key, _, _ in batch if key in keyspace and not keyspace.holds(key)]
        refresh = [key for key, _, _ in batch if keyspace.is_stale(key)]
        if pull or refresh:
            with contextlib.suppress(Unavailable):  # offline: the writes merge later
                await self._fetch(pull, refresh)
        changes = []
        refused = None
        for key, value, packed in batch:
            try:
                change = keyspace.set(key, value, packed, deadline)
            except InvalidValue as exc:  # the key limit: what was set stands, and ships
                refused = exc
                break
            if change is not None:
                changes.append(change)
        self._after_write(keyspace, deadline)
        await self._node.commit_many(changes, ack)
        if refused is not None:
            raise refused

    async def delete_many(self, keys: Iterable[str], *, ack: Ack = "local") -> int:
        """Delete the ``keys``; return how many existed. One acknowledgement round
        for all, as ``set_many``."""
        keyspace = self._writable()
        doomed = list(keys) if not isinstance(keys, str) else None
        if doomed is None:
            raise InvalidValue("delete_many takes an iterable of keys, not one str")
        if len(doomed) > MAX_BATCH:
            raise InvalidValue(f"a batch has at most {MAX_BATCH} keys, not {len(doomed)}")
        for key in doomed:
            check_key(key, keyspace.limits)
        if ack != "local":
            self._node.ack_level(ack)
        changes = []
        for key in doomed:
            change = keyspace.delete(key)
            if change is not None:
                changes.append(change)
        self._after_write(keyspace, None)
        await self._node.commit_many(changes, ack)
        return len(changes)

    # -- cached calls ------------------------------------------------------------------

    def cached(
        self,
        *,
        ttl: float | None = None,
        key: str | None = None,
        lease: float = 30.0,
        stale_while_revalidate: float | None = None,
    ) -> Callable[[Callable[P, Awaitable[R]]], Cached[P, R]]:
        """A decorator: the async function's results are kept in this database,
        each computed once across the cluster however many callers miss it at once
        (single flight; see ``pydds.cached``).

        Args:
            ttl: seconds a result lives (None: until invalidated).
            key: the key of a call, a template of its arguments by name
                (``"user:{user_id}"``); default: the function's qualified name and
                its arguments as JSON.
            lease: seconds a caller computing a result has before another takes
                over (its node died, or it is that slow).
            stale_while_revalidate: seconds past ``ttl`` during which the old
                result is served while one caller computes the new one.

        Example::

            @db.cached(ttl=60, key="user:{user_id}")
            async def load_user(user_id: int) -> dict:
                return await fetch_from_the_database(user_id)

            await load_user(7)             # computed once, then read from the cache
            await load_user.invalidate(7)  # forgotten

        Raises:
            InvalidValue: a setting is not a positive number of seconds.
        """
        from .cached import Cached, check_cached

        check_cached(ttl, lease, stale_while_revalidate)

        def decorate(function: Callable[P, Awaitable[R]]) -> Cached[P, R]:
            return Cached(
                self._node,
                self,
                function,
                ttl=ttl,
                key=key,
                lease=lease,
                stale_while_revalidate=stale_while_revalidate,
            )

        return decorate

    async def invalidate(self, *keys: str, ack: Ack = "local") -> int:
        """Forget cached results (or any keys): ``delete_many(keys)``."""
        return await self.delete_many(keys, ack=ack)

    # -- time to live ------------------------------------------------------------------

    def ttl(self, key: str) -> float | None:
        """Seconds left before ``key`` expires, None when it has no time to live.

        Example::

            await db.set("session:9", {"user": 1}, ttl=60)
            db.ttl("session:9")       # 59.99...
            await db.persist("session:9")
            db.ttl("session:9")       # None

        Raises:
            KeyNotFound: the key is absent (or expired).
        """
        return self._keyspace.ttl(key)

    async def expire(self, key: str, seconds: float, *, ack: Ack = "local") -> bool:
        """Give ``key`` ``seconds`` to live from now (replacing any TTL it had);
        return whether the key exists. A TTL change is a ``changed`` event.

        Raises:
            InvalidValue: ``seconds`` is not a positive number of seconds.
        """
        keyspace = self._writable()
        check_key(key, keyspace.limits)
        deadline = self._node.clock.wall() + check_seconds("seconds", seconds)
        return await self._set_deadline(keyspace, key, deadline, ack)

    async def persist(self, key: str, *, ack: Ack = "local") -> bool:
        """Drop the time to live of ``key``: it lives until deleted. Return whether
        it had one (False also when the key is absent)."""
        keyspace = self._writable()
        check_key(key, keyspace.limits)
        if key in keyspace and keyspace.ttl(key) is None:
            return False  # an absent key, or one past its deadline, lapses in the write
        return await self._set_deadline(keyspace, key, _NEVER, ack)

    async def _set_deadline(self, keyspace: Keyspace, key: str, deadline: float, ack: Ack) -> bool:
        if ack != "local":
            self._node.ack_level(ack)
        await self._hold(keyspace, key)  # a TTL write makes this node a holder, as any write
        exists = key in keyspace
        change = keyspace.set_deadline(key, deadline)
        self._after_write(keyspace, deadline)
        await self._node.commit(change, ack)
        return exists
