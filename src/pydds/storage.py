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
dropped whole. A file SQLite finds damaged (``PRAGMA quick_check``) is moved aside
and what can still be read from it, row by row, is copied into a new file; the
rest re-syncs from peers.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pycrdt import merge_updates

from .errors import StorageError

__all__ = ["FILE_NAME", "Loaded", "Recovery", "Row", "SqliteStore", "checksum", "merge"]

log = logging.getLogger("pydds.storage")

FILE_NAME = "pydds.sqlite3"
#: (database, key, generation, update); key "" is the directory; b"" a tombstone.
Row = tuple[str, str, int, bytes]

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


def checksum(db: str, key: str, gen: int, data: bytes) -> int:
    """The CRC-32 of a row."""
    head = f"{db}\0{key}\0{gen}\0".encode()
    return zlib.crc32(data, zlib.crc32(head))


@dataclass
class Recovery:
    """What opening a damaged store found (all zero for a sound one)."""

    damaged: bool = False  # SQLite reported the file damaged
    moved_to: str | None = None  # where the damaged file was kept
    recovered: int = 0  # rows copied out of the damaged file
    lost_rows: int = 0  # rows that failed their checksum or could not be read
    lost_keys: int = 0  # keys whose updates did not decode (dropped)


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
        if self.path.exists() and not self._sound():
            self._salvage()
        self._db = self._connect(self.path)
        if max_page_count:  # a size cap: tests use it to fill the "disk"
            self._db.execute(f"PRAGMA max_page_count = {int(max_page_count)}")

    # -- opening -----------------------------------------------------------------------

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.executescript(_SCHEMA)
        return db

    def _sound(self) -> bool:
        try:
            db = sqlite3.connect(self.path)
            try:
                result = db.execute("PRAGMA quick_check").fetchall()
                db.execute("SELECT count(*) FROM log").fetchone()
                db.execute("SELECT count(*) FROM state").fetchone()
            finally:
                db.close()
        except sqlite3.DatabaseError as exc:
            log.error("%s is damaged: %s", self.path, exc)
            return False
        if result != [("ok",)]:
            log.error("%s is damaged: %s", self.path, "; ".join(r[0] for r in result[:5]))
            return False
        return True

    def _salvage(self) -> None:
        """Move the damaged file aside and copy what can be read into a new one."""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        moved = self.path.with_name(f"{FILE_NAME}.damaged-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                source.rename(f"{moved}{suffix}")
        self.recovery = Recovery(damaged=True, moved_to=str(moved))
        rows = list(self._readable(moved))
        fresh = self._connect(self.path)
        try:
            fresh.execute("BEGIN")
            for table, row in rows:
                fresh.execute(f"INSERT OR REPLACE INTO {table} VALUES (?, ?, ?, ?, ?)", row)
            fresh.execute("COMMIT")
        finally:
            fresh.close()
        log.error(
            "recovered %d rows from the damaged store (kept at %s); lost %d; "
            "the rest re-syncs from peers",
            self.recovery.recovered,
            moved,
            self.recovery.lost_rows,
        )

    def _readable(self, path: Path) -> Iterator[tuple[str, tuple[object, ...]]]:
        """Every row of a damaged file that reads and passes its checksum."""
        try:
            old = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        except sqlite3.DatabaseError:
            return
        try:
            yield from self._salvage_table(old, "state", "db, key, gen, data, crc", None)
            yield from self._salvage_table(old, "log", "db, key, gen, data, crc, id", "id")
        finally:
            old.close()

    def _salvage_table(
        self, old: sqlite3.Connection, table: str, columns: str, rowid: str | None
    ) -> Iterator[tuple[str, tuple[object, ...]]]:
        def good(row: tuple[object, ...]) -> bool:
            db, key, gen, data, crc = row[:5]
            ok = (
                isinstance(db, str)
                and isinstance(key, str)
                and isinstance(gen, int)
                and isinstance(data, bytes)
                and crc == checksum(db, key, gen, data)
            )
            if ok:
                self.recovery.recovered += 1
            else:
                self.recovery.lost_rows += 1
            return ok

        try:
            rows = old.execute(f"SELECT {columns} FROM {table}").fetchall()
        except sqlite3.DatabaseError:
            rows = None
        if rows is not None:
            for row in rows:
                if good(row):
                    yield table, (row[5], *row[:5]) if rowid else row
            return
        if rowid is None:
            self.recovery.lost_rows += 1  # the table cannot be read at all
            return
        # Row by row, skipping what does not read.
        try:
            (top,) = old.execute(f"SELECT max({rowid}) FROM {table}").fetchone()
        except sqlite3.DatabaseError:
            top = None
        for i in range(1, (top or 0) + 1):
            try:
                row = old.execute(f"SELECT {columns} FROM {table} WHERE id = ?", (i,)).fetchone()
            except sqlite3.DatabaseError:
                self.recovery.lost_rows += 1
                continue
            if row is not None and good(row):
                yield table, (row[5], *row[:5])

    # -- writing -------------------------------------------------------------------------

    def append(self, rows: Iterable[Row]) -> None:
        """Append ``rows`` in one transaction, on disk when this returns.

        Raises:
            StorageError: the disk is full or failing; nothing was written.
        """
        try:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO log (db, key, gen, data, crc) VALUES (?, ?, ?, ?, ?)",
                [(db, key, gen, data, checksum(db, key, gen, data)) for db, key, gen, data in rows],
            )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise StorageError(f"cannot write to {self.path}: {exc}") from None

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
                if crc != checksum(name, key, gen, data):
                    lost += 1
                    continue
                fold = folds.get((name, key))
                if fold is None:
                    fold = folds[(name, key)] = _Fold()
                    state = db.execute(
                        "SELECT gen, data, crc FROM state WHERE db = ? AND key = ?", (name, key)
                    ).fetchone()
                    if state is not None and state[2] == checksum(name, key, state[0], state[1]):
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
        if lost:
            log.error(
                "compaction of %s dropped %d rows that failed their checksum", self.path, lost
            )
        return len(rows)

    def _fold_state(self, name: str, key: str, fold: _Fold) -> bytes | None:
        """The one update of a fold; None when nothing is left (or it does not decode)."""
        if not fold.updates:
            return None  # deleted: the older rows of the log are folded already
        try:
            return merge(fold.updates)
        except Exception:  # pycrdt raises its own errors (and pyo3 panics) on bad bytes
            log.error("dropped the updates of %r in %r: they do not decode", key, name)
            return None

    # -- reading -------------------------------------------------------------------------

    def load(self) -> Loaded:
        """Everything the store holds, folded per key, checksums verified."""
        folds: dict[tuple[str, str], _Fold] = {}
        queries = (
            "SELECT db, key, gen, data, crc FROM state",
            "SELECT db, key, gen, data, crc FROM log ORDER BY id",
        )
        for query in queries:
            for name, key, gen, data, crc in self._db.execute(query):
                if crc != checksum(name, key, gen, data):
                    self.recovery.lost_rows += 1
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
