"""Persistence: a node's data in one SQLite file, crash-safe, restored at start.

The node journals every update that changes its state (local writes, changes from
peers, pulled values, directory entries, deletions); this module appends them to
the store's log in group commits (all that arrived while the previous commit was
being written go in one transaction), from a thread of its own, and folds the log
into one state per key from time to time (compaction). ``ack="durable"`` writes wait
for the commit that holds them.

At start, before the node listens or joins, the stored directory and values are
restored (no events: restoring is no change); then the node catches up with the
cluster as any joining node does. Stale keys stay on disk. See ``storage.py`` for
the file, its checksums and what happens to a damaged one.

When the disk is full or failing, commits fail: durable writes raise
``pydds.StorageError`` (the write stands in memory), and the updates stay queued
and are tried again every ``retry`` seconds. The queue is bounded
(``max_pending`` updates); past it the oldest are dropped and counted
(``dropped``); a restart then re-syncs them from peers.

The members the node knows are kept too (``pydds-members.json``, ``memberfile.py``),
written when one joins or leaves and when the node stops: a restarted node dials
them as well as its ``join``.

A node with a memory limit evicts copies to the store (``spill``): the whole state
of a value goes into its ``state`` row with the next commit, and a read loads it
back from there (``load_value``). A spilled copy may be the last one in the
cluster, so spills are never dropped: the node spills only within ``spill_room`` (the
last commit worked, nothing was ever dropped, fewer than ``MAX_SPILLS`` copies and
``MAX_SPILL_BYTES`` wait). A spill merges with the state row of its generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack

from ..crdt.directory import merge_updates
from ..errors import InvalidUpdate, StorageError
from ..eventfile import EventFile
from ..eventlog import EventLog, Record
from ..events import Event, EventKind
from ..keyspace import Journal, Keyspace
from ..memberfile import load_remembered, save_members
from ..net.membership import MemberState
from ..storage import Loaded, Row, SqliteStore, merge
from .base import EventFilter, Module

if TYPE_CHECKING:
    from ..node import Node

__all__ = ["Persistence"]

log = logging.getLogger("pydds.persist")

#: Offsets the node's event log moves past before the disk's copy is trimmed to it.
EVENTS_TRIM = 10_000
#: Evicted copies waiting for the disk at most, and their bytes; the node evicts to
#: disk no more meanwhile (copies held elsewhere may still go).
MAX_SPILLS = 10_000
MAX_SPILL_BYTES = 64 << 20


def _number(value: Any, name: str, kind: type[int] | type[float]) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, not {value!r}") from None
    if number <= 0:
        raise ValueError(f"{name} must be positive, not {value!r}")
    return number


#: Seconds between two writes of the member list for the node's time in touch, at
#: most (with the data's commits; a member joining or leaving writes it at once).
TOUCHED_EVERY = 60.0


class Persistence(Module):
    """Keeps the node's data in ``path/pydds.sqlite3`` (default ``./pydds-data``).

    Example::

        node = pydds.Node(modules=[Persistence(path="/var/lib/pydds")])
        async with node:
            await node.database("orders").set("o1", {...}, ack="durable")

    From the command line: ``pydds serve --data-dir DIR`` (persistence is the
    embedded default) or ``--module 'pydds.modules.persist:Persistence?path=DIR'``.

    Args:
        path: the data directory (made if missing).
        compact_at: log rows after which a compaction runs.
        max_pending: updates queued for the disk at most (see the module docstring).
        retry: seconds between attempts while the disk fails.
        max_page_count: a cap on the file's size in pages (tests use it to make a
            full disk); 0: none.
    """

    name = "persist"
    events = EventFilter(kinds=[EventKind.JOINED, EventKind.LEFT])  # the member list
    start_timeout = 300.0  # a large store takes a while to restore
    stop_timeout = 30.0

    def __init__(
        self,
        path: str = "pydds-data",
        compact_at: int | str = 100_000,
        max_pending: int | str = 1_000_000,
        retry: float | str = 1.0,
        max_page_count: int | str = 0,
    ) -> None:
        self.path = Path(path)
        self.compact_at = _number(compact_at, "compact_at", int)
        self.max_pending = _number(max_pending, "max_pending", int)
        self.retry = _number(retry, "retry", float)
        self.max_page_count = int(max_page_count)
        self.restored = 0  # values restored at start
        self.commits = 0  # transactions written
        self.written = 0  # updates written
        self.dropped = 0  # updates dropped from a full queue (never written)
        self.failures = 0  # commits that failed
        self.compactions = 0  # compaction chunks done
        self._store: SqliteStore | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[Row] = []
        #: Copies evicted from memory, not on disk yet: never dropped (``can_spill``
        #: says no once there are ``MAX_SPILLS``), read back by ``load_value``.
        self._spills: dict[tuple[str, str], tuple[int, bytes]] = {}
        self._failing = False  # the last write failed
        self._touched_saved = 0.0  # when the member list (and time in touch) was written
        self._spill_bytes = 0  # bytes of those copies
        self._seq = 0  # updates journaled so far
        self._done = 0  # updates journaled and then written (or dropped)
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._since_compaction = 0
        self._closing = False
        self._events: list[tuple[int, bytes]] = []  # logged events, for the disk
        self._events_trimmed = 0  # the disk's event log holds nothing up to here
        self._log: EventLog | None = None
        self._event_file: EventFile | None = None
        self._node: Node | None = None
        self.events_written = 0  # events of the node's log written
        self.events_dropped = 0  # events dropped from a full queue (not replayed after a restart)

    # -- life ---------------------------------------------------------------------------

    async def start(self, node: Node) -> None:
        loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="pydds-persist")
        self._store = await loop.run_in_executor(
            self._executor, lambda: SqliteStore(self.path, max_page_count=self.max_page_count)
        )
        horizon, clock = node.limits.tombstone_horizon, node.clock
        self._store.prune_before = lambda: clock.wall() - horizon
        loaded = await loop.run_in_executor(self._executor, self._store.load)
        prepared = await loop.run_in_executor(self._executor, self._prepare, loaded)
        recovery = self._store.recovery
        keyspaces = {}
        for name, directory, states in prepared:
            # On the event loop: CRDT documents belong to the thread that made them.
            keyspace = keyspaces[name] = node.database(name).keyspace
            try:
                self.restored += keyspace.restore(directory, states)
            except InvalidUpdate:
                log.error("the stored directory of %r does not load; it re-syncs", name)
                recovery.damaged_keys.add((name, ""))  # its values are lost with it
        if recovery.damaged or recovery.lost_rows or recovery.damaged_keys:
            # The keys with a value whose rows passed their checksums (decoding or not).
            stored = {(name, key) for name, values in loaded.values.items() for key in values}
            self._count_lost(keyspaces, stored)
        log.info("restored %d values from %s", self.restored, self._store.path)
        event_log = node.event_log
        if event_log is not None:
            self._event_file = await loop.run_in_executor(self._executor, EventFile, self.path)
            events, last = await loop.run_in_executor(
                self._executor, self._event_file.load, event_log.count
            )
            event_log.load(_decoded(events), last)
            self._events_trimmed = event_log.horizon
            self._log = event_log
            event_log.journal = self._journal_event
        remembered = await loop.run_in_executor(self._executor, load_remembered, self.path)
        if remembered.touched is not None:  # the directories are as current as then
            for keyspace in keyspaces.values():
                keyspace.touched_at = min(keyspace.touched_at, remembered.touched)
        node.remember_members(remembered.members)
        self._node = node
        self._writer = loop.create_task(self._write_forever(), name="pydds persistence")
        node.attach_store(self)

    async def on_event(self, event: Event) -> None:
        """A member joined or left: the member list on disk follows."""
        await self._save_members()

    async def _save_members(self) -> None:
        node, executor = self._node, self._executor
        if node is None or executor is None:
            return
        # Members that linked here (alive, indirect, suspect): one never linked, as a
        # remembered one that did not answer, is not written back, so the list forgets
        # nodes gone for good after one run.
        members = [
            (m.name, m.address)
            for m in node.members()[1:]
            if m.address is not None and m.state is not MemberState.JOINING
        ]
        self._touched_saved = node.clock.now()
        try:
            await asyncio.get_running_loop().run_in_executor(
                executor, save_members, self.path, members, node.last_in_touch()
            )
        except OSError as exc:
            log.warning("the member list could not be written: %s", exc)

    def _count_lost(self, keyspaces: dict[str, Keyspace], stored: set[tuple[str, str]]) -> None:
        """Count the keys lost to damage and say what was lost (a warning).

        A key is known lost when a row naming it failed its checksum (or its updates
        do not decode) and its value was not restored; or when its value was stored
        but the directory, damaged itself, no longer lists it (``stored``: the keys
        with a value in the store), so that restoring had to drop it. The
        directory's other keys with no value here were lost with the parts of the
        file that could not be read, or never held by this node: they are counted
        apart (``missing_keys``).
        """
        assert self._store is not None
        recovery = self._store.recovery
        unheld = {
            (name, key)
            for name, keyspace in keyspaces.items()
            for key in keyspace.keys(prefix="")  # every live key
            if not keyspace.holds(key)
        }
        lost = unheld & recovery.damaged_keys
        # A value of a key the directory does not list live is stale (its key was
        # deleted), unless the directory lost entries: then it is lost.
        directory_damaged = {
            name
            for name in keyspaces
            if (name, "") in recovery.damaged_keys or (recovery.damaged and not recovery.complete)
        }
        # Only names that rows passing their checksums gave: a failed row's name may be
        # damaged too (it counts among the lost rows).
        lost |= {
            (name, key)
            for name, key in stored
            if name in directory_damaged and not keyspaces[name].holds(key)
        }
        recovery.lost_keys += len(lost)
        if recovery.lost_rows or recovery.unnamed_states or not recovery.complete:
            recovery.missing_keys = len(unheld - lost)
        if recovery.damaged and not recovery.recovered and not recovery.complete:
            what = "nothing could be read from it: every key it held is lost"
        else:
            what = f"{recovery.lost_keys} keys lost"
            if recovery.missing_keys:
                what += (
                    f", {recovery.missing_keys} more have no value here (lost with what"
                    " could not be read, or never held here)"
                )
            if recovery.unread_pages:
                what += f"; {recovery.unread_pages} pages of it could not be read"
        log.warning(
            "store %s: %s%d values restored, %s; %d rows lost; peers re-sync what they have",
            self._store.path,
            f"damaged, kept at {recovery.moved_to}; " if recovery.damaged else "",
            self.restored,
            what,
            recovery.lost_rows,
        )

    def _prepare(self, loaded: Loaded) -> list[tuple[str, bytes | None, dict[str, Any]]]:
        """Merge each key's stored updates into one (in the store's thread)."""
        assert self._store is not None
        recovery = self._store.recovery
        prepared = []
        for name in sorted({*loaded.directories, *loaded.values}):
            directory = None
            updates = loaded.directories.get(name, [])
            if updates:
                try:
                    directory = merge_updates(updates, prune_before=self._store.prune_before())
                except InvalidUpdate:
                    log.error("the stored directory of %r does not decode; it re-syncs", name)
                    recovery.damaged_keys.add((name, ""))  # its values are lost with it
            states: dict[str, tuple[int, bytes]] = {}
            for key, (gen, value_updates) in loaded.values.get(name, {}).items():
                try:
                    states[key] = (gen, merge(value_updates))
                except Exception:  # counted lost unless the key is held after all
                    recovery.damaged_keys.add((name, key))
            prepared.append((name, directory, states))
        return prepared

    async def stop(self) -> None:
        """Write what is queued and the member list, then close the store."""
        await self._save_members()  # before the node leaves: whom to dial next time
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            await self._writer
        if self._spills:
            log.error(
                "%d values evicted from memory were not written (the disk failed): this "
                "node has lost its copies of them (other nodes may hold them)",
                len(self._spills),
            )
        if self._pending:
            log.error(
                "%d updates were not written (the disk failed); peers re-sync them after a restart",
                len(self._pending),
            )
        if self._store is not None and self._executor is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._store.close)
        if self._event_file is not None and self._executor is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._event_file.close)
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(StorageError("the store closed before writing this"))
        self._waiters.clear()

    # -- what the node calls -----------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Its counters since the process started, as JSON-ready data (``GET
        /v1/stats`` lists it under the module's name)."""
        return {
            "commits": self.commits,
            "written": self.written,
            "dropped": self.dropped,
            "failures": self.failures,
            "compactions": self.compactions,
            "restored": self.restored,
            "pending": len(self._pending),
            "spills_pending": len(self._spills),
            "events_written": self.events_written,
            "events_dropped": self.events_dropped,
        }

    def journal(self, database: str) -> Journal:
        def journal(key: str, gen: int, update: bytes) -> None:
            if not update and self._spills:  # that generation is gone: so is its copy
                spilled = self._spills.get((database, key))
                if spilled is not None and spilled[0] <= gen:
                    del self._spills[(database, key)]
                    self._spill_bytes -= len(spilled[1])
            self._pending.append((database, key, gen, update))
            self._seq += 1
            if len(self._pending) > self.max_pending:
                drop = len(self._pending) - self.max_pending
                del self._pending[:drop]
                self.dropped += drop
            if not self._wake.is_set():
                self._wake.set()

        return journal

    @property
    def spill_room(self) -> int:
        if self._writer is None or self._closing or self._failing or self.dropped:
            return 0
        if self._spill_bytes >= MAX_SPILL_BYTES:
            return 0
        return max(0, MAX_SPILLS - len(self._spills))

    def spill(self, database: str, key: str, gen: int, state: bytes) -> None:
        old = self._spills.get((database, key))
        if old is not None:
            self._spill_bytes -= len(old[1])
        self._spills[(database, key)] = (gen, state)
        self._spill_bytes += len(state)
        if not self._wake.is_set():
            self._wake.set()

    async def load_value(self, database: str, key: str) -> tuple[int, bytes] | None:
        spilled = self._spills.get((database, key))
        if spilled is not None:
            return spilled
        assert self._store is not None
        store = self._store
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, store.load_value, database, key
        )

    def _append(self, batch: list[Row], spills: list[Row], events: list[tuple[int, bytes]]) -> None:
        """Write a group commit (in the store's thread): the data, then its events."""
        assert self._store is not None
        if batch or spills:
            self._store.append(batch, spills)
        if events and self._event_file is not None:
            try:
                self._event_file.append(events)
            except StorageError as exc:  # derived: the data went in; a replay has a gap
                log.error("%s (%d events of the log are not on disk)", exc, len(events))
                self.events_dropped += len(events)

    def _trim_events(self, horizon: int) -> None:
        if self._event_file is not None:
            self._event_file.trim(horizon)

    def _journal_event(self, record: Record) -> None:
        """Queue an event of the node's log for the disk (bounded: ``max_pending``),
        without its delta: the data's own rows have it, and a replayed event reads
        the value as it is now."""
        offset, kind, database, key, origin, _, name, member, when, payload, ident = record
        fields = [kind.value, database, key, origin, None, name, member, when, payload, ident]
        self._events.append((offset, msgpack.packb(fields, use_bin_type=True)))
        if len(self._events) > self.max_pending:
            drop = len(self._events) - self.max_pending
            del self._events[:drop]
            self.events_dropped += drop
        if not self._wake.is_set():
            self._wake.set()

    def barrier(self) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._done >= self._seq:
            future.set_result(None)
        else:
            self._waiters.append((self._seq, future))
            self._wake.set()
        return future

    # -- the writer --------------------------------------------------------------------

    async def _write_forever(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._store is not None
        assert self._executor is not None
        store, executor = self._store, self._executor
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending or self._spills or self._events:
                batch, self._pending = self._pending, []
                events, self._events = self._events, []
                if events and self._log is not None and events[0][0] <= self._log.horizon:
                    horizon = self._log.horizon  # trimmed from the log before the disk had them
                    events = [event for event in events if event[0] > horizon]
                spills = [(db, key, gen, state) for (db, key), (gen, state) in self._spills.items()]
                upto = self._seq
                try:
                    await loop.run_in_executor(executor, self._append, batch, spills, events)
                except StorageError as exc:
                    self.failures += 1
                    self._failing = True
                    log.error("%s (%d updates wait to be written)", exc, len(batch))
                    self._pending[:0] = batch
                    self._events[:0] = events
                    self._fail_waiters(upto, exc)
                    if self._closing:
                        return
                    await asyncio.sleep(self.retry)
                    continue
                self._failing = False
                for db, key, _, state in spills:  # on disk: unless spilled again since
                    if self._spills.get((db, key), (0, b""))[1] is state:
                        del self._spills[(db, key)]
                        self._spill_bytes -= len(state)
                self.commits += 1
                self.events_written += len(events)
                self.written += len(batch)
                self._since_compaction += len(batch)
                if self._node is not None and (
                    self._node.clock.now() - self._touched_saved >= TOUCHED_EVERY
                ):
                    await self._save_members()  # when the node was last in touch
                self._done = upto
                self._release_waiters()
            if self._closing:
                return
            horizon = self._log.horizon if self._log is not None else 0
            if horizon - self._events_trimmed >= EVENTS_TRIM:  # what the log dropped
                with contextlib.suppress(StorageError):  # tried again after the next
                    await loop.run_in_executor(executor, self._trim_events, horizon)
                    self._events_trimmed = horizon
            if self._since_compaction >= self.compact_at:
                self._since_compaction = 0
                await self._compact(loop, executor, store)

    async def _compact(
        self, loop: asyncio.AbstractEventLoop, executor: ThreadPoolExecutor, store: SqliteStore
    ) -> None:
        """Fold the log, a chunk at a time so that commits go on in between."""
        while not self._closing:
            try:
                folded = await loop.run_in_executor(executor, store.compact)
            except StorageError as exc:
                log.error("%s", exc)
                return
            if not folded:
                return
            self.compactions += 1
            if self._pending:  # let the writer commit between two chunks
                self._wake.set()
                return

    async def compact(self) -> int:
        """Fold the whole log into the states now, and drop the events the node's
        event log no longer holds; return the rows folded.

        Raises:
            StorageError: the disk is full or failing.
        """
        assert self._store is not None
        assert self._executor is not None
        loop, total = asyncio.get_running_loop(), 0
        if self._log is not None:
            horizon = self._log.horizon
            await loop.run_in_executor(self._executor, self._trim_events, horizon)
            self._events_trimmed = horizon
        while folded := await loop.run_in_executor(self._executor, self._store.compact):
            total += folded
            self.compactions += 1
        return total

    def _release_waiters(self) -> None:
        waiters = self._waiters
        while waiters and waiters[0][0] <= self._done:
            _, future = waiters.popleft()
            if not future.done():
                future.set_result(None)

    def _fail_waiters(self, upto: int, exc: StorageError) -> None:
        waiters = self._waiters
        while waiters and waiters[0][0] <= upto:
            _, future = waiters.popleft()
            if not future.done():
                future.set_exception(StorageError(str(exc)))


def _decoded(events: list[tuple[int, bytes]]) -> list[Record]:
    """The records of the events the store kept (one that does not decode is left
    out: it falls in no hole, as a replay cannot tell)."""
    out: list[Record] = []
    for offset, data in events:
        try:
            fields = msgpack.unpackb(data, raw=False)
            if len(fields) == 9:  # written before custom events kept their ids
                fields.append(None)
            kind, database, key, origin, delta, name, member, when, payload, ident = fields
            if not isinstance(ident, str):
                ident = None  # no id to resume from or deduplicate by
            out.append(
                (
                    offset,
                    EventKind(kind),
                    database,
                    key,
                    origin,
                    delta,
                    name,
                    member,
                    when,
                    payload,
                    ident,
                )
            )
        except (ValueError, TypeError, msgpack.UnpackException):
            log.error("a stored event (offset %d) does not decode; it is left out", offset)
    return out
