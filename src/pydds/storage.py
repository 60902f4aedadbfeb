"""A crash-safe store of CRDT updates in one SQLite file (synchronous; the
persistence module runs it in a thread of its own).

Layout
------
``log`` holds every update as it happened, appended in group commits; ``state``
holds, per database and key, the updates of the log folded into one (compaction).
Key ``""`` is a database's directory. An empty update is a tombstone: the key's
generation ``gen`` is gone, and with it every update of that generation or older.
Every row carries a CRC-32 of its database, key, generation and data, so a damaged
row is detected and skipped, never loaded.

Durability: WAL journal, ``synchronous=FULL`` (a commit is on disk when it
returns). SQLite checks the WAL's frames itself, so a write torn by a crash is
dropped whole.

Salvage: a file SQLite finds damaged (``PRAGMA quick_check``, or tables missing: a
file cut short, or no SQLite file at all), or whose WAL has commits past a frame
that fails its checksum (damage, not a torn write), is salvaged at open. Every row
that reads and passes its checksum is copied into a new file, from both tables:
first through SQLite (going on past the parts that fail), then from the pages of
the file and its WAL read directly, which finds the leaves that no query reaches
past a damaged or missing page. The new file replaces the damaged one only once it
is complete and on disk; the damaged one is kept aside. ``Recovery`` says what was
recovered and lost; the rest re-syncs from peers.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import math
import mmap
import os
import shutil
import sqlite3
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pycrdt import merge_updates

from .crdt import directory as directories
from .crdt.ydoc import YDoc
from .errors import StorageError

__all__ = [
    "FILE_NAME",
    "Loaded",
    "Recovery",
    "Row",
    "SqliteStore",
    "checksum",
    "fold_updates",
    "merge",
]

log = logging.getLogger("pydds.storage")

FILE_NAME = "pydds.sqlite3"
#: (database, key, generation, update); key "" is the directory; b"" a tombstone.
Row = tuple[str, str, int, bytes]
#: what reading a damaged file raises (a message of SQLite's may quote bytes that are
#: no UTF-8, which the sqlite3 module then fails to decode)
_READ_ERRORS = (sqlite3.Error, UnicodeDecodeError)


def _text(raw: bytes) -> str | bytes:
    """A text column's value: bytes that are no UTF-8 (damage that SQLite's check
    does not see) stay bytes, so their row fails its checksum instead of the read."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw


_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY,
    db TEXT NOT NULL, key TEXT NOT NULL, gen INTEGER NOT NULL,
    data BLOB NOT NULL, crc INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS state (
    db TEXT NOT NULL, key TEXT NOT NULL, gen INTEGER NOT NULL,
    data BLOB NOT NULL, crc INTEGER NOT NULL,
    PRIMARY KEY (db, key)
) WITHOUT ROWID;
"""


#: ``PRAGMA auto_vacuum``'s value for INCREMENTAL.
_INCREMENTAL = 2


def checksum(db: str, key: str, gen: int, data: bytes) -> int:
    """The CRC-32 of a row."""
    head = f"{db}\0{key}\0{gen}\0".encode()
    return zlib.crc32(data, zlib.crc32(head))


@dataclass
class Recovery:
    """What opening a store found wrong (all zero for a sound one)."""

    damaged: bool = False  # SQLite found the file damaged (or it is no store): salvaged
    moved_to: str | None = None  # where the damaged file is kept
    recovered: int = 0  # rows copied out of the damaged file
    lost_rows: int = 0  # rows that failed their checksum or could not be read
    recovered_keys: int = 0  # keys with a value among the rows recovered
    #: keys known lost: named by a row that failed and not held after the restore, or
    #: whose updates do not decode (the persistence module counts them)
    lost_keys: int = 0
    #: keys the restored directories list with no value here after a salvage: lost
    #: with the unreadable parts of the file, or never held by this node
    missing_keys: int = 0
    complete: bool = True  # every page of the damaged file was read
    unread_pages: int = 0  # pages damaged, cut off or of no known kind (then more is lost)
    #: damaged cells of the state table that do not say whose state they held (not
    #: rows lost: a key they cost shows among ``missing_keys``)
    unnamed_states: int = 0
    #: (database, key) of the rows that failed their checksum
    damaged_keys: set[tuple[str, str]] = field(default_factory=set)


@dataclass
class Loaded:
    """A store's content: per database, its directory's updates and its values."""

    directories: dict[str, list[bytes]] = field(default_factory=dict)
    #: database -> key -> (generation, updates of that generation, in order)
    values: dict[str, dict[str, tuple[int, list[bytes]]]] = field(default_factory=dict)


class _Fold:
    """Folds one key's rows, in order, into its current generation's updates."""

    __slots__ = ("gen", "gone", "updates")

    def __init__(self) -> None:
        self.gen = 0  # 0 for a directory, whose updates all fold together
        self.gone = -1  # the highest generation known to be gone
        self.updates: list[bytes] = []

    def add(self, gen: int, data: bytes) -> None:
        if not data:  # a tombstone
            self.gone = max(self.gone, gen)
            if self.gen <= gen:
                self.gen, self.updates = 0, []
        elif gen <= self.gone:
            return
        elif gen > self.gen:
            self.gen, self.updates = gen, [data]
        elif gen == self.gen:
            self.updates.append(data)


def merge(updates: list[bytes]) -> bytes:
    """One update of many (pycrdt raises on one that does not decode)."""
    return updates[0] if len(updates) == 1 else bytes(merge_updates(*updates))


def fold_updates(updates: list[bytes]) -> bytes:
    """One update of many, without the content they deleted: applied to a document
    (which garbage-collects it) and encoded again. Merging updates as they are keeps
    every replaced value; 10,000 sets of one small dict merge to 640 KB and fold to
    under 100 bytes.

    A document leaves out an update still waiting for one it depends on. The log
    never holds one: each row is what a document integrated (its delta), so what it
    depends on is in earlier rows of its key. Only a row lost to damage leaves its
    followers waiting, and those could not be read before it arrives either: the
    key re-syncs from peers, which send all of it.

    Raises:
        InvalidUpdate: an update does not decode (pycrdt's own errors from the merge).
    """
    merged = merge(updates)
    doc = YDoc(0, "value", merged)
    try:
        folded = doc.diff()
    finally:
        doc.close()
    return folded if len(folded) < len(merged) else merged


class SqliteStore:
    """The store in ``directory/pydds.sqlite3``; one process at a time (a lock file).

    Example::

        store = SqliteStore("pydds-data")
        store.append([("cache", "k", 1, update)])
        loaded = store.load()
        store.close()

    Raises:
        StorageError: the directory cannot be made, or another process uses it.
    """

    def __init__(self, directory: str | os.PathLike[str], *, max_page_count: int = 0) -> None:
        self.directory = Path(directory)
        self.path = self.directory / FILE_NAME
        self.recovery = Recovery()
        #: Tombstones of a directory gone before this wall-clock time are dropped when
        #: its row is folded (the persistence module sets it from the node's horizon).
        self.prune_before: Callable[[], float] = lambda: -math.inf
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock: IO[bytes] | None = (self.directory / f"{FILE_NAME}.lock").open("ab")
        except OSError as exc:
            raise StorageError(f"cannot use {self.directory}: {exc.strerror}") from None
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            raise StorageError(f"{self.directory} is in use by another pydds process") from None
        try:
            self._finish_interrupted()
            if self.path.exists() and not self._sound():
                self._salvage()
            self._db = self._connect(self.path)
        except BaseException:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)  # the next attempt may take it
            self._lock.close()
            self._lock = None
            raise
        if max_page_count:  # a size cap: tests use it to fill the "disk"
            self._db.execute(f"PRAGMA max_page_count = {int(max_page_count)}")

    # -- opening -----------------------------------------------------------------------

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.text_factory = _text
        # Pages freed by compaction go back to the file system (``_give_back``): a
        # new file is made so; an older one is rebuilt so once (VACUUM).
        db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.executescript(_SCHEMA)
        (mode,) = db.execute("PRAGMA auto_vacuum").fetchone()
        if mode != _INCREMENTAL:
            db.execute("VACUUM")
        return db

    def _sound(self) -> bool:
        """Whether SQLite finds the file sound and holding the store's tables (read
        only: a damaged file is never written to)."""
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            try:
                result = db.execute("PRAGMA quick_check").fetchall()
                tables = {
                    table: [(r[1], r[5]) for r in db.execute(f"PRAGMA table_info({table})")]
                    for table in _TABLES
                }
            finally:
                db.close()
        except _READ_ERRORS as exc:
            log.error("%s is damaged: %s", self.path, exc)
            return False
        if result != [("ok",)]:
            log.error("%s is damaged: %s", self.path, "; ".join(r[0] for r in result[:5]))
            return False
        if tables != _COLUMNS:  # missing, or their schema's text is damaged
            log.error("%s is damaged: its tables are not the store's: %s", self.path, tables)
            return False
        if _Wal(Path(f"{self.path}-wal")).broken:
            log.error("%s is damaged: its WAL has commits past a frame that fails", self.path)
            return False
        return True

    def _salvage(self) -> None:
        """Copy what can be read of the damaged file into a new one, then swap them.

        The damaged file stays in place until its replacement is complete and on disk
        (``pydds.sqlite3.salvaged-TAG``, fsynced); only then are the damaged file and
        its WAL kept aside (``pydds.sqlite3.damaged-TAG``, hard links) and the new file
        renamed over it. A crash at any point leaves either the damaged file, which is
        salvaged again, or the complete new file, whose swap ``_finish_salvage`` ends.
        """
        tag = self._tag()
        salvaged = self.directory / f"{_SALVAGED}{tag}"
        temporary = self.directory / _SALVAGING
        found = _Found()
        _read_sql(self.path, found)
        _read_pages(self.path, found)
        try:
            temporary.unlink(missing_ok=True)
            found.write(temporary)
            _fsync(temporary)
            temporary.rename(salvaged)
            _fsync(self.directory)
        except (OSError, sqlite3.Error) as exc:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            raise StorageError(f"cannot salvage {self.path}: {exc}") from None
        moved = self._finish_salvage(tag)
        self.recovery = Recovery(
            damaged=True,
            moved_to=str(moved),
            recovered=found.recovered,
            lost_rows=found.lost_rows,
            recovered_keys=found.keys(),
            complete=found.complete,
            unread_pages=found.unread_pages,
            unnamed_states=found.unnamed_states,
            damaged_keys=found.damaged_keys,
        )
        log.warning(
            "salvaged %s: %d rows recovered (values of %d keys), %d rows lost%s; "
            "the damaged file is kept at %s",
            self.path,
            self.recovery.recovered,
            self.recovery.recovered_keys,
            self.recovery.lost_rows,
            "" if found.complete else f", {found.unread_pages} pages could not be read",
            moved,
        )

    def _tag(self) -> str:
        """A name for this salvage that no earlier one took."""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for n in range(1000):
            tag = f"{stamp}.{n}" if n else stamp
            names = (f"{_DAMAGED}{tag}", f"{_DAMAGED}{tag}-wal", f"{_SALVAGED}{tag}")
            if not any((self.directory / name).exists() for name in names):
                return tag
        raise StorageError(f"cannot salvage {self.path}: too many salvages in {self.directory}")

    def _finish_salvage(self, tag: str) -> Path:
        """Keep the damaged file aside and put the salvaged one in its place; return
        where the damaged file is kept. Every step can be done again after a crash."""
        moved = self.directory / f"{_DAMAGED}{tag}"
        try:
            for suffix in ("", "-wal", "-shm"):
                source, kept = Path(f"{self.path}{suffix}"), Path(f"{moved}{suffix}")
                if source.exists() and not kept.exists():
                    try:
                        os.link(source, kept)
                    except OSError:  # no hard links here: a copy
                        shutil.copyfile(source, kept)
                        _fsync(kept)
            _fsync(self.directory)
            # The damaged WAL must not be applied to the new file.
            for suffix in ("-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            os.replace(self.directory / f"{_SALVAGED}{tag}", self.path)
            _fsync(self.directory)
        except OSError as exc:
            raise StorageError(f"cannot salvage {self.path}: {exc}") from None
        return moved

    def _finish_interrupted(self) -> None:
        """End the swap of a salvage that a crash interrupted, if any."""
        (self.directory / _SALVAGING).unlink(missing_ok=True)
        done = sorted(self.directory.glob(f"{_SALVAGED}*"))
        if not done:
            return
        tag = done[-1].name.removeprefix(_SALVAGED)
        moved = self._finish_salvage(tag)
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            rows = sum(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in _TABLES)
        finally:
            db.close()
        self.recovery = Recovery(damaged=True, moved_to=str(moved), recovered=rows, complete=False)
        log.warning(
            "finished the salvage of %s that a crash interrupted (the damaged file is "
            "kept at %s); what it recovered and lost was reported then",
            self.path,
            moved,
        )

    # -- writing -------------------------------------------------------------------------

    def append(self, rows: Iterable[Row], states: Iterable[Row] = ()) -> None:
        """Append ``rows`` to the log, and put ``states`` (whole copies of values:
        evicted from memory) in their keys' states, in one transaction, on disk when
        this returns. A state of a generation older than the one stored is ignored.

        Raises:
            StorageError: the disk is full or failing; nothing was written.
        """
        try:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO log (db, key, gen, data, crc) VALUES (?, ?, ?, ?, ?)",
                [(db, key, gen, data, checksum(db, key, gen, data)) for db, key, gen, data in rows],
            )
            self._put_states(states)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise StorageError(f"cannot write to {self.path}: {exc}") from None

    def _put_states(self, states: Iterable[Row]) -> None:
        """Put whole copies into their keys' states, inside a transaction: one of the
        generation stored merges with it, one of a newer replaces it, one of an
        older is ignored."""
        db = self._db
        for name, key, gen, data in states:
            row = db.execute(
                "SELECT gen, data, crc FROM state WHERE db = ? AND key = ?", (name, key)
            ).fetchone()
            if row is not None and _good((name, key, *row)) is not None:
                if row[0] > gen:
                    continue
                if row[0] == gen and row[1]:
                    try:
                        data = fold_updates([row[1], data])
                    except Exception:  # pycrdt's errors (and pyo3 panics): the new one
                        log.error("the stored state of %r in %r does not decode", key, name)
            db.execute(
                "INSERT OR REPLACE INTO state VALUES (?, ?, ?, ?, ?)",
                (name, key, gen, data, checksum(name, key, gen, data)),
            )

    def log_size(self) -> int:
        """Rows in the log (not yet compacted)."""
        (count,) = self._db.execute("SELECT count(*) FROM log").fetchone()
        return int(count)

    def compact(self, chunk: int = 20_000) -> int:
        """Fold up to ``chunk`` of the oldest log rows into the states; return how many.

        Raises:
            StorageError: the disk is full or failing; nothing changed.
        """
        db = self._db
        try:
            rows = db.execute(
                "SELECT id, db, key, gen, data, crc FROM log ORDER BY id LIMIT ?", (chunk,)
            ).fetchall()
            if not rows:
                return 0
            folds: dict[tuple[str, str], _Fold] = {}
            lost = 0
            for _, name, key, gen, data, crc in rows:
                if _good((name, key, gen, data, crc)) is None:
                    lost += 1
                    continue
                fold = folds.get((name, key))
                if fold is None:
                    fold = folds[(name, key)] = _Fold()
                    state = db.execute(
                        "SELECT gen, data, crc FROM state WHERE db = ? AND key = ?", (name, key)
                    ).fetchone()
                    if state is not None and _good((name, key, *state)) is not None:
                        fold.add(state[0], state[1])
                fold.add(gen, data)
            db.execute("BEGIN")
            for (name, key), fold in folds.items():
                merged = self._fold_state(name, key, fold)
                if merged is None:
                    db.execute("DELETE FROM state WHERE db = ? AND key = ?", (name, key))
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO state VALUES (?, ?, ?, ?, ?)",
                        (name, key, fold.gen, merged, checksum(name, key, fold.gen, merged)),
                    )
            db.execute("DELETE FROM log WHERE id <= ?", (rows[-1][0],))
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise StorageError(f"cannot compact {self.path}: {exc}") from None
        try:
            self._give_back()
        except sqlite3.Error as exc:  # folded and committed: the room waits for the next
            log.warning("compacted %s, but could not give its free pages back: %s", self.path, exc)
        if lost:
            log.error(
                "compaction of %s dropped %d rows that failed their checksum", self.path, lost
            )
        return len(rows)

    def _give_back(self) -> None:
        """Return the pages that compaction freed to the file system: the free pages
        move to the end of the file and are cut off, and the WAL, which then holds
        them, is checkpointed and truncated. Writes wait for it (they are queued
        meanwhile); a reader would only delay the WAL's truncation to the next one."""
        db = self._db
        (free,) = db.execute("PRAGMA freelist_count").fetchone()
        if free:
            # sqlite3_exec steps it to the end; a cursor would free one page per step
            db.executescript("PRAGMA incremental_vacuum;")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def _fold_state(self, name: str, key: str, fold: _Fold) -> bytes | None:
        """The one update of a fold; None when nothing is left (or it does not decode).
        A directory's drops the tombstones gone before ``prune_before()``."""
        if not fold.updates:
            return None  # deleted: the older rows of the log are folded already
        try:
            if not key:
                return directories.merge_updates(fold.updates, prune_before=self.prune_before())
            return fold_updates(fold.updates)
        except Exception:  # pycrdt raises its own errors (and pyo3 panics) on bad bytes
            log.error("dropped the updates of %r in %r: they do not decode", key, name)
            return None

    # -- reading -------------------------------------------------------------------------

    def load_value(self, name: str, key: str) -> tuple[int, bytes] | None:
        """The state row of one key (a copy spilled there, or the log folded into
        it): (generation, update); None if there is none or it fails its checksum.

        Raises:
            StorageError: the file cannot be read.
        """
        try:
            row = self._db.execute(
                "SELECT gen, data, crc FROM state WHERE db = ? AND key = ?", (name, key)
            ).fetchone()
        except _READ_ERRORS as exc:
            raise StorageError(f"cannot read {self.path}: {exc}") from None
        if row is None or _good((name, key, *row)) is None or not row[1]:
            return None
        return row[0], row[1]

    def load(self) -> Loaded:
        """Everything the store holds, folded per key, checksums verified."""
        folds: dict[tuple[str, str], _Fold] = {}
        queries = (
            "SELECT db, key, gen, data, crc FROM state",
            "SELECT db, key, gen, data, crc FROM log ORDER BY id",
        )
        for query in queries:
            for name, key, gen, data, crc in self._db.execute(query):
                if _good((name, key, gen, data, crc)) is None:
                    self.recovery.lost_rows += 1
                    if isinstance(name, str) and isinstance(key, str):
                        self.recovery.damaged_keys.add((name, key))
                    continue
                fold = folds.get((name, key))
                if fold is None:
                    fold = folds[(name, key)] = _Fold()
                if key:
                    fold.add(gen, data)
                elif data:
                    fold.updates.append(data)
        loaded = Loaded()
        for (name, key), fold in folds.items():
            if not key:
                loaded.directories[name] = fold.updates
            elif fold.updates:
                loaded.values.setdefault(name, {})[key] = (fold.gen, fold.updates)
        return loaded

    def close(self) -> None:
        """Close the file and release the lock (idempotent)."""
        if self._lock is None:
            return
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
        self._lock.close()
        self._lock = None


# -- salvage ---------------------------------------------------------------------------

_TABLES = ("log", "state")
#: each table's columns as ``PRAGMA table_info`` gives them: (name, place in the key)
_COLUMNS = {
    "log": [("id", 1), ("db", 0), ("key", 0), ("gen", 0), ("data", 0), ("crc", 0)],
    "state": [("db", 1), ("key", 2), ("gen", 0), ("data", 0), ("crc", 0)],
}
_SALVAGING = f"{FILE_NAME}.salvaging"  # a salvage being written (incomplete)
_SALVAGED = f"{FILE_NAME}.salvaged-"  # + tag: a complete salvage about to replace the file
_DAMAGED = f"{FILE_NAME}.damaged-"  # + tag (+ -wal, -shm): a damaged file, kept

#: (database, key, generation, update, checksum) as a row of ``state``, or of ``log``
#: after its id; anything else a damaged file may hold instead.
_Fields = Sequence[object]


def _good(fields: _Fields) -> Row | None:
    """The row of ``fields`` if they are one that passes its checksum."""
    if len(fields) != 5:
        return None
    db, key, gen, data, crc = fields
    if (
        isinstance(db, str)
        and isinstance(key, str)
        and isinstance(gen, int)
        and isinstance(data, bytes)
        and crc == checksum(db, key, gen, data)
    ):
        return db, key, gen, data
    return None


class _Found:
    """The rows read out of a damaged file, each once, checksums verified."""

    def __init__(self) -> None:
        self.log: dict[int, Row] = {}  # id -> row
        self.state: dict[tuple[str, str], Row] = {}
        self.extra: list[Row] = []  # more states of a key read from pages (the log folds them)
        self.direct: set[tuple[str, str]] = set()  # keys whose state was read from a page
        self.bad: set[tuple[str, object]] = set()  # rows that failed, by table and id
        self.unnamed = 0  # log rows that failed and say nothing of what they were
        #: Cells of the state table that failed and do not say whose state they held.
        #: Not counted as rows lost: the table holds one state per key, a page may be
        #: an older copy of one whose newer copy read, and a key whose state is gone
        #: and not in the log has no value after the restore (``missing_keys``).
        self.unnamed_states = 0
        #: damaged log cells whose ids do not read, between the ids of the cells
        #: beside them on their page: (id before, id after, how many cells)
        self.gaps: list[tuple[int, int, int]] = []
        self.damaged_keys: set[tuple[str, str]] = set()  # named by a row that failed
        self.complete = False  # every page of the file was read
        self.unread_pages = 0

    @property
    def lost_rows(self) -> int:
        return len(self.bad) + self.unnamed + sum(self._gap_lost(*gap) for gap in self.gaps)

    def _gap_lost(self, before: int, after: int, cells: int) -> int:
        """How many of a gap's cells are lost: those the ids between its neighbours
        that were not found elsewhere (an older copy of the page, SQLite) can be."""
        missing = sum(1 for rowid in range(before + 1, after) if rowid not in self.log)
        return min(cells, missing)

    def add_log(self, rowid: int, fields: _Fields) -> None:
        if rowid in self.log:
            return
        row = _good(fields)
        if row is None:
            self._failed(("log", rowid), fields)
        else:
            self.log[rowid] = row
            self.bad.discard(("log", rowid))

    def add_log_failure(self, rowid: int | None) -> None:
        """A cell of the log that is damaged (its id, if that much reads)."""
        self._failed(None if rowid is None else ("log", rowid), ())

    def add_log_gap(self, before: int, after: int, cells: int) -> None:
        """Damaged cells of the log whose ids do not read, on a page whose cells
        beside them have the ids ``before`` and ``after`` (a page's cells are in id
        order): they are lost unless the rows between were found elsewhere."""
        if after - before > 1 << 16:  # the neighbours' ids misread: count them all
            self.unnamed += cells
        else:
            self.gaps.append((before, after, cells))

    def add_state(self, fields: _Fields, *, direct: bool = False) -> None:
        """A state row; ``direct``: read from a page of the file, not through SQLite
        (a page may be an older copy: a key SQLite read is not taken again)."""
        row = _good(fields)
        if row is None:
            db, key = (fields[0], fields[1]) if len(fields) == 5 else (None, None)
            named = isinstance(db, str) and isinstance(key, str)
            if named:
                self._failed(("state", (db, key)), fields)
            else:
                self.unnamed_states += 1
            return
        name = (row[0], row[1])
        known = self.state.get(name)
        if known is None:
            self.state[name] = row
            self.bad.discard(("state", name))
            if direct:
                self.direct.add(name)
        elif direct and name in self.direct and row != known and row not in self.extra:
            self.extra.append(row)

    def _failed(self, ident: tuple[str, object] | None, fields: _Fields) -> None:
        if ident is None:
            self.unnamed += 1
        elif not (ident[1] in self.log if ident[0] == "log" else ident[1] in self.state):
            self.bad.add(ident)
        if len(fields) == 5 and isinstance(fields[0], str) and isinstance(fields[1], str):
            self.damaged_keys.add((fields[0], fields[1]))

    @property
    def recovered(self) -> int:
        return len(self.log) + len(self.state) + len(self.extra)

    def rows(self) -> Iterator[Row]:
        """Every row in the order the store folds them: states, then the log."""
        yield from self.state.values()
        for rowid in sorted(self.log):
            yield self.log[rowid]
        yield from self.extra

    def keys(self) -> int:
        """Keys with a value in what was found."""
        folds: dict[tuple[str, str], _Fold] = {}
        for db, key, gen, data in self.rows():
            if key:
                folds.setdefault((db, key), _Fold()).add(gen, data)
        return sum(1 for fold in folds.values() if fold.updates)

    def write(self, path: Path) -> None:
        """Write what was found into a new file at ``path`` (made durable by the caller)."""
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode = OFF")  # a new file, thrown away if incomplete
            db.executescript(_SCHEMA)
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO state (db, key, gen, data, crc) VALUES (?, ?, ?, ?, ?)",
                [(*row, checksum(*row)) for row in self.state.values()],
            )
            top = max(self.log, default=0)
            extra = enumerate(self.extra, top + 1)
            db.executemany(
                "INSERT INTO log (id, db, key, gen, data, crc) VALUES (?, ?, ?, ?, ?, ?)",
                [(i, *row, checksum(*row)) for i, row in (*self.log.items(), *extra)],
            )
            db.execute("COMMIT")
        finally:
            db.close()


def _fsync(path: Path) -> None:
    """Flush a file, or a directory's entries, to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _reads(old: sqlite3.Connection, query: str, params: Sequence[object]) -> bool:
    """Whether the first row of ``query`` reads."""
    try:
        old.execute(query, params).fetchone()
    except _READ_ERRORS:
        return False
    return True


def _read_sql(path: Path, found: _Found) -> None:
    """Read both tables through SQLite (its WAL included), going on past what fails."""
    try:
        old = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except _READ_ERRORS:
        return
    old.text_factory = _text
    try:
        with contextlib.suppress(*_READ_ERRORS):
            old.execute("PRAGMA cell_size_check = ON")  # more damage detected, less misread
        _read_log(old, found)
        _read_state(old, found)
    finally:
        old.close()


_LOG_AFTER = "SELECT id, db, key, gen, data, crc FROM log WHERE id > ? ORDER BY id"


def _read_log(old: sqlite3.Connection, found: _Found) -> None:
    """The log in id order; past a part that fails, from the first id that reads."""

    def reads(at: int) -> bool:
        return _reads(old, _LOG_AFTER + " LIMIT 1", (at,))

    after: int | None = 0
    while after is not None:
        try:
            for rowid, *fields in old.execute(_LOG_AFTER, (after,)):
                if rowid <= after:  # a damaged page leads the scan back
                    raise sqlite3.DatabaseError("out of order")
                found.add_log(rowid, fields)
                after = rowid
            return
        except _READ_ERRORS:
            after = _skip(reads, after)


def _skip(reads: Callable[[int], bool], after: int) -> int | None:
    """The smallest start past ``after`` from which the table reads again (about:
    damage need not be in one piece); None if none does. At most 125 probes."""
    step = 1
    while not reads(after + step):
        step *= 2
        if after + step >= 1 << 63:
            return None
    failed, ok = after + step // 2, after + step
    while ok - failed > 1:
        middle = (failed + ok) // 2
        if reads(middle):
            ok = middle
        else:
            failed = middle
    return ok


_STATE_FROM = "SELECT db, key, gen, data, crc FROM state WHERE (db, key) {} (?, ?) ORDER BY {}"


def _read_state(old: sqlite3.Connection, found: _Found) -> None:
    """``state`` (WITHOUT ROWID: ordered by database and key) from its first key on,
    jumping past a part that fails to the nearest start that reads; once no start
    does, the rest backwards from its last key, until that fails too."""
    forward = _STATE_FROM.format(">=", "db, key")
    start: tuple[str, str] | None = ("", "")
    stuck = ("", "")
    starts: Iterator[tuple[str, str]] = iter(())
    for _ in range(1_000_000):  # bounded: every round reads a key or takes the next start
        if start is None:
            break
        at = start
        try:
            for fields in old.execute(forward, start):
                if isinstance(fields[0], str) and isinstance(fields[1], str):
                    if (fields[0], fields[1]) < start:  # a damaged page leads the scan back
                        raise sqlite3.DatabaseError("out of order")
                    start = (fields[0], fields[1] + "\0")  # the next key after it
                found.add_state(fields)
            return
        except _READ_ERRORS:
            if start != at:  # it read on from there: jump from where it failed
                stuck, starts = start, _successors(*start)
            # else the last jump was too short: the next, longer one
            start = next((s for s in starts if _reads(old, forward, s)), None)
    backward = _STATE_FROM.format(">=", "db DESC, key DESC")
    with contextlib.suppress(*_READ_ERRORS):
        for fields in old.execute(backward, stuck):
            found.add_state(fields)


def _successors(db: str, key: str) -> Iterator[tuple[str, str]]:
    """Starts past ``(db, key)``, nearest first: past the keys that begin with each
    ever shorter part of ``key``, then past the database."""
    for i in range(len(key) - 1, -1, -1):
        if (c := _next_char(key[i])) is not None:
            yield db, key[:i] + c
    for i in range(len(db) - 1, -1, -1):
        if (c := _next_char(db[i])) is not None:
            yield db[:i] + c, ""


def _next_char(c: str) -> str | None:
    code = ord(c) + 1
    if 0xD800 <= code < 0xE000:  # surrogates are no text
        code = 0xE000
    return chr(code) if code <= 0x10FFFF else None


# The file's pages, read without SQLite (https://www.sqlite.org/fileformat2.html), as
# SQLite's own recovery does: a leaf whose parent page is damaged or cut off, which no
# query can reach, still holds its rows, and their checksums say which are intact.

_MAGIC = b"SQLite format 3\x00"
_PAGE_SIZES = tuple(1 << n for n in range(9, 17))
_INDEX_INTERIOR, _TABLE_INTERIOR, _INDEX_LEAF, _TABLE_LEAF = 2, 5, 10, 13
_SCHEMA_TYPES = ("table", "index", "view", "trigger")


class _Bad(Exception):
    """A page or cell that does not parse."""


def _u16(data: bytes | mmap.mmap, at: int) -> int:
    return int.from_bytes(data[at : at + 2], "big")


def _u32(data: bytes | mmap.mmap, at: int) -> int:
    return int.from_bytes(data[at : at + 4], "big")


def _varint(data: bytes | mmap.mmap, at: int, end: int) -> tuple[int, int]:
    """A SQLite varint at ``at`` and where it ends."""
    value = 0
    for i in range(9):
        if at >= end:
            raise _Bad
        byte = data[at]
        at += 1
        if i == 8:
            value = (value << 8) | byte
            break
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            break
    return (value - (1 << 64) if value >= 1 << 63 else value), at


_INT_SIZES = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8}


def _record(payload: bytes) -> list[object]:
    """The values of a record (text that is not UTF-8 stays bytes)."""
    size, at = _varint(payload, 0, len(payload))
    if not 0 < size <= len(payload):
        raise _Bad
    types = []
    while at < size:
        kind, at = _varint(payload, at, size)
        types.append(kind)
    values: list[object] = []
    body = size
    for kind in types:
        if kind in (0, 8, 9):
            values.append(None if kind == 0 else kind - 8)
            continue
        if kind in _INT_SIZES:
            n = _INT_SIZES[kind]
        elif kind == 7:
            n = 8
        elif kind >= 12:
            n = (kind - 12) // 2
        else:
            raise _Bad
        raw = payload[body : body + n]
        if len(raw) < n:
            raise _Bad
        body += n
        if kind in _INT_SIZES:
            values.append(int.from_bytes(raw, "big", signed=True))
        elif kind == 7:
            values.append(struct.unpack(">d", raw)[0])
        elif kind % 2 == 0:
            values.append(raw)
        else:
            try:
                values.append(raw.decode())
            except UnicodeDecodeError:
                values.append(raw)
    return values


def _page_size(header: bytes) -> int:
    """The page size a file's header gives (0: it is no SQLite header)."""
    if len(header) < 100 or header[:16] != _MAGIC:
        return 0
    size = _u16(header, 16)
    size = 65536 if size == 1 else size
    return size if size in _PAGE_SIZES else 0


class _Wal:
    """What a WAL file holds now: of the frames with its salts (older frames are
    left from before it restarted), the newest of each page, and whether it is
    damaged (https://www.sqlite.org/fileformat2.html#the_write_ahead_log).

    SQLite reads the frames up to the first that fails its checksum, as after a
    write torn by a crash. A commit after such a frame was written once that frame
    was on disk (each commit is synced): the frame was damaged afterwards, and SQLite
    would silently drop every later commit.
    """

    def __init__(self, path: Path) -> None:
        self.size = 0  # its page size (0: no WAL that reads)
        self.pages: dict[int, bytes] = {}
        self.db_pages = 0  # the database's size in pages at the last commit that reads
        self.broken = False
        try:
            data = path.read_bytes()
        except OSError:
            return
        if len(data) < 32:
            return
        magic, _, size, _, salt1, salt2, sum1, sum2 = struct.unpack(">8I", data[:32])
        if magic not in (0x377F0682, 0x377F0683) or size not in _PAGE_SIZES:
            self.broken = len(data) > 32
            return
        order = ">" if magic & 1 else "<"
        sums = _wal_sum(order, data[:24], (0, 0))
        if sums != (sum1, sum2):
            self.broken = len(data) > 32
            return
        self.size, frame, whole = size, 24 + size, True
        for at in range(32, len(data) - frame + 1, frame):
            number, commit, s1, s2, c1, c2 = struct.unpack(">6I", data[at : at + 24])
            if (s1, s2) != (salt1, salt2) or not number:
                whole = False
                continue
            page = data[at + 24 : at + frame]
            if whole:
                sums = _wal_sum(order, data[at : at + 8] + page, sums)
                whole = sums == (c1, c2)
                if whole and commit:
                    self.db_pages = commit
            if commit and not whole:
                self.broken = True
            self.pages[number] = page


def _wal_sum(order: str, data: bytes, sums: tuple[int, int]) -> tuple[int, int]:
    """SQLite's running checksum of a WAL, over ``data``."""
    s0, s1 = sums
    words = struct.unpack(f"{order}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


class _Pages:
    """The cells of a file's b-tree pages (the newest copy of each, its WAL's if it
    has one), for one page size."""

    def __init__(self, main: bytes | mmap.mmap, wal: dict[int, bytes], size: int) -> None:
        self.main, self.wal, self.size = main, wal, size
        first = self.page(1)
        usable = size - (first[20] if len(first) > 20 else 0)
        self.header = _page_size(first) == size and usable >= 480
        self.usable = usable if self.header else size
        self.count = len(main) // size  # how many pages the file should have
        if self.header and first[92:96] == first[24:28]:  # the page count is valid
            self.count = max(self.count, _u32(first, 28))
        #: (page type, rowid of a table leaf's cell, the record or None if it is damaged)
        self.cells: list[tuple[int, int | None, list[object] | None]] = []
        self.good = 0  # rows that pass their checksum
        #: damaged log cells with no id, between two cells of the log on their page:
        #: (id before, id after, how many)
        self.gaps: list[tuple[int, int, int]] = []
        self.overflow: set[int] = set()
        self.unread = 0  # pages that are damaged, missing or of no known kind

    def page(self, number: int) -> bytes:
        page = self.wal.get(number)
        if page is None:
            page = self.main[(number - 1) * self.size : number * self.size]
        return page

    def read(self, db_pages: int) -> None:
        """Read every page there is (``db_pages``: how many the WAL says the file has,
        or 0); those that should be there and are not (cut off) count as unread."""
        self.count = max(self.count, db_pages)
        free = self._freelist() if self.header else set()
        lock_page = (1 << 30) // self.size + 1  # the page at 1 GiB holds no data
        # With auto_vacuum (the header names the largest root page), pointer-map
        # pages, which hold no rows, come every usable // 5 + 1 pages from page 2.
        ptrmap = self.usable // 5 + 1 if self.header and _u32(self.page(1), 52) else 0
        present = len(self.main) // self.size
        beyond = sorted(number for number in self.wal if number > present)
        other, seen = [], 0
        for number in itertools.chain(range(1, present + 1), beyond):
            seen += number <= self.count
            if number in free or number == lock_page:
                continue
            if ptrmap and number >= 2 and (number - 2) % ptrmap == 0:
                continue
            page = self.page(number)
            top = 100 if number == 1 else 0
            kind = page[top]
            if kind not in (_INDEX_INTERIOR, _TABLE_INTERIOR, _INDEX_LEAF, _TABLE_LEAF):
                other.append(number)  # overflow, or damaged: known once every cell is read
            elif not self._page(page, top, kind):
                self.unread += 1
        self.unread += len(set(other) - self.overflow) + max(0, self.count - seen)
        if not self.header:
            self.unread += 1  # how many pages are missing is unknown

    def _freelist(self) -> set[int]:
        """The pages on the freelist (not read: what they hold was deleted), or none
        if the list itself does not add up."""
        free: set[int] = set()
        trunk = _u32(self.page(1), 32)
        while trunk:
            page = self.page(trunk)
            if trunk < 1 or trunk in free or len(page) < self.size:
                return set()
            free.add(trunk)
            leaves = _u32(page, 4)
            if leaves > self.usable // 4 - 2:
                return set()
            free.update(_u32(page, 8 + 4 * i) for i in range(leaves))
            trunk = _u32(page, 0)
        return free if len(free) == _u32(self.page(1), 36) else set()

    def _page(self, page: bytes, top: int, kind: int) -> bool:
        """Read a b-tree page's cells; whether all of them parsed."""
        interior = kind in (_INDEX_INTERIOR, _TABLE_INTERIOR)
        cells = _u16(page, top + 3)
        pointers = top + (12 if interior else 8)
        end = self.usable
        if pointers + 2 * cells > end:
            return False
        whole, first = True, len(self.cells)
        for i in range(cells):
            at = _u16(page, pointers + 2 * i)
            try:
                if not pointers + 2 * cells <= at < end:
                    raise _Bad
                self._cell(page, kind, at, end)
            except _Bad:
                whole = False
                if kind != _TABLE_INTERIOR:
                    self.cells.append((kind, None, None))
        if kind == _TABLE_LEAF and not whole:
            self._bound_gaps(first)
        return whole

    def _bound_gaps(self, first: int) -> None:
        """Of a table leaf's cells (from ``first``), the runs of damaged ones with no
        id between two rows of the log become gaps: their ids are between those."""
        page, run = self.cells[first:], 0
        kept: list[tuple[int, int | None, list[object] | None]] = []
        before: int | None = None
        for cell in page:
            _, rowid, fields = cell
            if rowid is None and fields is None:
                run += 1
                continue
            log_row = fields is not None and len(fields) == 6 and fields[0] is None
            if run and before is not None and log_row and rowid is not None and rowid > before:
                self.gaps.append((before, rowid, run))
            else:
                kept.extend([(_TABLE_LEAF, None, None)] * run)
            kept.append(cell)
            before, run = (rowid if log_row else None), 0
        kept.extend([(_TABLE_LEAF, None, None)] * run)
        self.cells[first:] = kept

    def _cell(self, page: bytes, kind: int, at: int, end: int) -> None:
        if kind == _TABLE_INTERIOR:
            return  # child pages and ids only
        if kind == _INDEX_INTERIOR:
            at += 4  # the child page
        total, at = _varint(page, at, end)
        rowid = None
        if kind == _TABLE_LEAF:
            rowid, at = _varint(page, at, end)
        if not 0 < total < 1 << 31:
            raise _Bad
        local = self._local(total, kind == _TABLE_LEAF)
        if at + local + (4 if local < total else 0) > end:
            raise _Bad
        payload = page[at : at + local]
        if local < total:
            payload += self._overflow(_u32(page, at + local), total - local)
        try:
            fields: list[object] | None = _record(payload)
        except _Bad:
            fields = None
        self.cells.append((kind, rowid, fields))
        if fields is not None and _good(fields[-5:]) is not None:
            self.good += 1

    def _local(self, total: int, table_leaf: bool) -> int:
        """How much of a payload is in its cell (the rest is on overflow pages)."""
        usable = self.usable
        most = usable - 35 if table_leaf else (usable - 12) * 64 // 255 - 23
        if total <= most:
            return total
        least = (usable - 12) * 32 // 255 - 23
        local = least + (total - least) % (usable - 4)
        return local if local <= most else least

    def _overflow(self, number: int, left: int) -> bytes:
        parts = []
        while left > 0:
            page = self.page(number)
            if number < 1 or number in self.overflow or len(page) < 4:
                raise _Bad
            self.overflow.add(number)
            part = page[4 : 4 + min(left, self.usable - 4)]
            parts.append(part)
            left -= len(part)
            number = _u32(page, 0)
        return b"".join(parts)


def _read_pages(path: Path, found: _Found) -> None:
    """Every row on the pages of the file and its WAL, read without SQLite."""
    wal = _Wal(Path(f"{path}-wal"))
    try:
        with path.open("rb") as file:
            empty = os.fstat(file.fileno()).st_size == 0
            main = b"" if empty else mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        main = b""
    try:
        size = _page_size(wal.pages.get(1) or main[:100]) or wal.size
        # No page size to trust: the one that finds the most intact rows.
        sizes = [size] if size else list(_PAGE_SIZES)
        best: _Pages | None = None
        for size in sizes:
            pages = _Pages(main, wal.pages if size == wal.size else {}, size)
            pages.read(wal.db_pages if size == wal.size else 0)
            if best is None or pages.good > best.good:
                best = pages
        assert best is not None
        for kind, rowid, fields in best.cells:
            if kind == _TABLE_LEAF:
                if fields is not None and len(fields) == 6 and fields[0] is None:
                    assert rowid is not None
                    found.add_log(rowid, fields[1:])
                elif not (fields and len(fields) == 5 and fields[0] in _SCHEMA_TYPES):
                    found.add_log_failure(rowid)
            else:  # an index (of state): rows in its every page
                found.add_state(fields or (), direct=True)
        for gap in best.gaps:
            found.add_log_gap(*gap)
        found.complete = best.header and best.unread == 0 and not wal.broken
        found.unread_pages = best.unread
    finally:
        if isinstance(main, mmap.mmap):
            main.close()
