"""The event log on disk: one SQLite file beside the data's (synchronous; the
persistence module runs it in its thread).

The events are kept apart from the data (``storage.py``) on purpose: they are
derived (the data's rows say what is), they are bounded by the log's own limits and
not by the live data, and a damaged events file costs a ``gap`` in a replay, never a
value, so it is simply set aside and started anew. Each row is an event packed with
msgpack (without its delta: the data's rows have it) and a CRC-32 of its offset and
bytes; a row failing it is left out.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
import zlib
from collections.abc import Iterable
from pathlib import Path

from .errors import StorageError

__all__ = ["EVENTS_FILE", "EventFile"]

log = logging.getLogger("pydds.storage")

EVENTS_FILE = "pydds-events.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    offset INTEGER PRIMARY KEY, data BLOB NOT NULL, crc INTEGER NOT NULL
);
"""


def _crc(offset: int, data: bytes) -> int:
    return zlib.crc32(data, zlib.crc32(offset.to_bytes(8, "big")))


class EventFile:
    """``directory/pydds-events.sqlite3``, made if missing, set aside if damaged.

    Example::

        events = EventFile("pydds-data")
        events.append([(1, b"...")])
        rows, last = events.load(1000)
    """

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / EVENTS_FILE
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f"{EVENTS_FILE}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
            log.warning(
                "%s is damaged (%s): kept at %s, the event log starts anew", self.path, exc, aside
            )
            self.path.rename(aside)
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{self.path}{suffix}").unlink()
            self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")  # derived data: a crash may lose the last
            db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            db.executescript(_SCHEMA)
            if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("quick_check failed")
        except BaseException:
            db.close()
            raise
        return db

    def append(self, events: Iterable[tuple[int, bytes]]) -> None:
        """Write ``events`` (offset, packed event) in one transaction.

        Raises:
            StorageError: the disk is full or failing.
        """
        try:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO events VALUES (?, ?, ?)",
                [(offset, data, _crc(offset, data)) for offset, data in events],
            )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise StorageError(f"cannot write to {self.path}: {exc}") from None

    def load(self, limit: int) -> tuple[list[tuple[int, bytes]], int]:
        """The newest ``limit`` events, oldest first (those failing their checksum
        left out), and the greatest offset written (0: none).

        Raises:
            StorageError: the file cannot be read.
        """
        try:
            rows = self._db.execute(
                "SELECT offset, data, crc FROM events ORDER BY offset DESC LIMIT ?", (limit,)
            ).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read {self.path}: {exc}") from None
        last = rows[0][0] if rows else 0
        good = [(offset, data) for offset, data, crc in rows if crc == _crc(offset, data)]
        return good[::-1], last

    def trim(self, upto: int) -> None:
        """Delete the events up to offset ``upto``, but the newest (numbering goes on
        from it), and give the room back.

        Raises:
            StorageError: the disk is failing.
        """
        try:
            self._db.execute(
                "DELETE FROM events WHERE offset <= ?"
                " AND offset < (SELECT max(offset) FROM events)",
                (upto,),
            )
            self._db.executescript("PRAGMA incremental_vacuum;")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot trim {self.path}: {exc}") from None

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
