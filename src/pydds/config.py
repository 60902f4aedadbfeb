"""Limits and settings of a node and of its databases.

Every buffer and size in pydds has a limit named here, with the policy that applies
when it is reached documented beside it.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from typing import Literal

from .errors import InvalidName, InvalidValue

__all__ = ["DatabaseSettings", "EvictionPolicy", "Limits", "check_key", "check_name", "parse_bytes"]

#: Which copies go first past ``Limits.max_memory``.
EvictionPolicy = Literal["lru", "lfu"]

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,127}")


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits of one node. Input beyond a limit raises :class:`pydds.InvalidValue`.

    Example::

        node = pydds.Node(limits=pydds.Limits(max_value_bytes=1 << 20))
        cache = pydds.Node(limits=pydds.Limits(max_memory=512 << 20, eviction="lfu"))
    """

    max_depth: int = 64
    """Containers (dicts and lists) nested deeper than this are refused."""
    max_value_bytes: int = 16 * 1024 * 1024
    """A value or payload whose msgpack encoding is larger than this is refused."""
    max_key_length: int = 1024
    """Keys longer than this many characters are refused."""
    live_docs: int = 4096
    """Value documents kept live in memory; beyond this the least recently used one is
    kept encoded (a few hundred bytes instead of about 3 KB) and loaded again on use."""
    event_queue: int = 10_000
    """Default bound of a subscriber's event queue (see ``Node.events``)."""
    max_databases: int = 10_000
    """Databases a node has at most; making another raises ``InvalidValue`` (and a peer
    that would make one closes its link)."""
    max_keys: int = 10_000_000
    """Keys a database has at most; a write that would add one raises ``InvalidValue``
    (a client that would add one through its gateway closes its link)."""
    early_updates: int = 10_000
    """Value updates that arrived before the directory entry of their generation are
    held until it arrives; past this many, the oldest is dropped (anti-entropy repairs).
    Only nodes send them: a client's update of a value its gateway has no entry for
    closes its link."""
    early_bytes: int = 64 * 1024 * 1024
    """Bytes of such updates held per database at most; beyond, the oldest are dropped."""
    event_log: int = 1_000_000
    """Events the node's event log keeps at most (``Node.events(since=...)`` replays
    them); past it, the oldest go (a replay from before them starts with a ``gap``).
    0: no log (events have no offsets, ``since`` is refused)."""
    event_log_bytes: int = 64 * 1024 * 1024
    """Bytes the event log keeps at most (each event counts 160 bytes, its delta and
    its payload)."""
    event_log_age: float = 3600.0
    """Seconds an event stays in the log at most."""
    tombstone_horizon: float = 6 * 3600.0
    """Seconds a deleted or expired key's entry (its tombstone) is kept; then every
    node in touch with its cluster forgets it (memory, store, what a joining node
    receives). A node last in touch before another forgot tombstones reconciles its
    directory with that node's when they link (docs/semantics.md, "Deleted keys").
    Every node of a cluster should have the same."""
    max_memory: int | None = None
    """Bytes the values held on this node may take (``Node.footprint``, an estimate:
    directories are not in it); past it, copies are evicted by ``eviction``, but only
    copies another node holds or this node's store keeps (a read reloads those from
    disk). None: no limit. See docs/semantics.md, "A memory limit"."""
    eviction: EvictionPolicy = "lru"
    """Which copies go first past ``max_memory``: ``"lru"`` (least recently used) or
    ``"lfu"`` (least frequently used, counts halving every minute)."""

    def __post_init__(self) -> None:
        check_seconds("tombstone_horizon", self.tombstone_horizon)
        if self.max_memory is not None and (
            isinstance(self.max_memory, bool)
            or not isinstance(self.max_memory, int)
            or self.max_memory <= 0
        ):
            raise InvalidValue(
                f"max_memory must be a positive number of bytes or None, not {self.max_memory!r}"
            )
        if self.eviction not in ("lru", "lfu"):
            raise InvalidValue(f"eviction must be 'lru' or 'lfu', not {self.eviction!r}")


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    """Settings of one database."""

    stale_after: float | None = None
    """Seconds without a read or write after which a key goes stale on a node (kept,
    no longer replicated there); None: never. Not a time to live: nothing is deleted."""

    ttl: float | None = None
    """The time to live of a key written without one: every such write gives the
    key this many seconds more; None: keys live until deleted (a ``set`` without a
    ``ttl`` then clears a key's TTL, other writes keep it)."""


def check_seconds(what: str, seconds: object) -> float:
    """Check a positive, finite number of seconds (``what``: its name, for the error)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise InvalidValue(f"{what} must be seconds or None, not {seconds!r}")
    # An int too large for a float (10**400) is no number of seconds either.
    if (type(seconds) is int and not 0 < seconds <= 2**53) or not (
        math.isfinite(seconds) and seconds > 0
    ):
        raise InvalidValue(f"{what} must be a positive number of seconds, not {seconds}")
    return seconds


_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "k": 1 << 10,
    "m": 1 << 20,
    "g": 1 << 30,
    "t": 1 << 40,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
}
_SIZE = re.compile(r"([0-9]{1,15}(?:\.[0-9]{1,6})?) ?([A-Za-z]{0,3})")


def parse_bytes(size: object) -> int:
    """A number of bytes from an int or a text such as ``"512MiB"``, ``"1.5GB"`` or
    ``"100m"`` (``k``/``m``/``g``/``t`` and ``KiB``... are powers of 1024, ``kB``,
    ``MB``... powers of 1000).

    Raises:
        InvalidValue: not a positive size.
    """
    if isinstance(size, int) and not isinstance(size, bool):
        number = size
    else:
        match = _SIZE.fullmatch(size.strip()) if isinstance(size, str) else None
        unit = _UNITS.get(match.group(2).lower()) if match is not None else None
        if match is None or unit is None:
            raise InvalidValue(f"not a size in bytes: {size!r} (examples: 512MiB, 2GB, 1048576)")
        number = int(float(match.group(1)) * unit)
    if number <= 0:
        raise InvalidValue(f"a size must be positive, not {size!r}")
    return number


def warn_renamed(old: str, new: str, *, stacklevel: int = 2) -> None:
    """Say that a setting was renamed (a ``DeprecationWarning``); the old name works."""
    warnings.warn(
        f"{old} is deprecated: it is now called {new} (the staleness time, not a time to live)",
        DeprecationWarning,
        stacklevel=stacklevel + 1,
    )


def check_name(kind: str, name: object) -> str:
    """Check a database or event name: 1 to 128 characters of ``A-Z a-z 0-9 _ . : -``,
    not starting with ``.``, ``:`` or ``-`` (names may end up in paths and URLs).

    Raises:
        InvalidName: the name breaks these rules.
    """
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise InvalidName(
            f"invalid {kind} name {name!r}: use 1 to 128 characters of A-Z a-z 0-9 _ . : -, "
            "starting with a letter, digit or _"
        )
    return name


def check_key(key: object, limits: Limits) -> str:
    """Check a key: any non-empty string of valid Unicode up to ``limits.max_key_length``.

    Raises:
        InvalidName: the key is not a string, empty, too long or not encodable as UTF-8.
    """
    if type(key) is not str:
        raise InvalidName(f"a key must be a str, not {type(key).__name__}")
    if not key or len(key) > limits.max_key_length:
        raise InvalidName(f"a key must have 1 to {limits.max_key_length} characters")
    if not key.isascii():
        try:
            key.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidName(f"key {key!r} is not valid Unicode") from exc
    return key
