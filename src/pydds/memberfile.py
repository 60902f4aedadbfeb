"""The members a node knew, on disk: ``pydds-members.json`` beside its data
(synchronous; the persistence module runs it in its thread).

A node that restarts dials the members it knew as well as those its ``join`` names
(as Serf's snapshot or Redis Cluster's ``nodes.conf`` do): without them a node that
left (SIGTERM: its peers drop it at once and dial it no more) and had no ``join`` of
its own, as the first node of a cluster, would come back alone, and acknowledge
``majority`` writes alone. The file holds hints, not data: a damaged or unreadable
one is set aside with a warning and the node starts with its ``join`` alone. It is
written whole, to a temporary file renamed over the old one (after an fsync), so a
crash leaves the old list or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "MAX_MEMBERS",
    "MEMBERS_FILE",
    "Remembered",
    "load_members",
    "load_remembered",
    "save_members",
]

log = logging.getLogger("pydds.storage")

MEMBERS_FILE = "pydds-members.json"
#: Members the file holds at most (the first, by name, of a larger cluster).
MAX_MEMBERS = 10_000
#: Bytes the file may have (beyond: damaged); names and addresses are short.
_MAX_BYTES = 8 << 20
_VERSION = 1


@dataclass(frozen=True)
class Remembered:
    """What the file says: the members, and when the node was last in touch with its
    cluster (wall clock; None when it does not say)."""

    members: list[tuple[str, str]] = field(default_factory=list)
    touched: float | None = None


def load_remembered(directory: str | Path) -> Remembered:
    """What the file holds (nothing if there is no file). A file that does not read
    is set aside (``.damaged-TIME``) with a warning."""
    path = Path(directory) / MEMBERS_FILE
    try:
        with path.open("rb") as file:
            raw = file.read(_MAX_BYTES + 1)
    except FileNotFoundError:
        return Remembered()
    except OSError as exc:
        log.warning("%s cannot be read (%s): the node joins only what its join names", path, exc)
        return Remembered()
    touched = None
    try:
        if len(raw) > _MAX_BYTES:
            raise ValueError(f"over {_MAX_BYTES} bytes")
        data = json.loads(raw)
        touched = _touched(data)  # even beside a damaged member list
        return Remembered(_parse(data), touched)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        aside = path.with_name(f"{MEMBERS_FILE}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
        log.warning(
            "%s is damaged (%s): kept at %s; the node joins only what its join names",
            path,
            exc,
            aside,
        )
        with contextlib.suppress(OSError):
            path.rename(aside)
        return Remembered(touched=touched)


def load_members(directory: str | Path) -> list[tuple[str, str]]:
    """The (name, address) of each member the file lists (``load_remembered``)."""
    return load_remembered(directory).members


def _touched(data: object) -> float | None:
    touched = data.get("touched") if isinstance(data, dict) else None
    if isinstance(touched, (int, float)) and not isinstance(touched, bool):
        return float(touched) if math.isfinite(touched) else None
    return None


def _parse(data: object) -> list[tuple[str, str]]:
    if not isinstance(data, dict) or data.get("version") != _VERSION:
        raise ValueError(f"not a version {_VERSION} member list")
    members = data.get("members")
    if not isinstance(members, list):
        raise ValueError("no list of members")
    out = []
    for member in members[:MAX_MEMBERS]:
        if not isinstance(member, dict):
            raise ValueError("a member is not an object")
        name, address = member.get("name"), member.get("address")
        if not (isinstance(name, str) and isinstance(address, str) and name and address):
            raise ValueError("a member without a name or an address")
        if len(name) > 256 or len(address) > 1024:
            raise ValueError("a member's name or address is too long")
        out.append((name, address))
    return out


def save_members(
    directory: str | Path, members: Iterable[tuple[str, str]], touched: float | None = None
) -> None:
    """Write the list of (name, address) whole, in place of the file's, with when the
    node was last in touch with its cluster (``touched``, wall clock).

    Raises:
        OSError: it could not be written (the old file stays as it was).
    """
    folder = Path(directory)
    path = folder / MEMBERS_FILE
    listed = sorted(set(members))[:MAX_MEMBERS]
    body: dict[str, object] = {
        "version": _VERSION,
        "members": [{"name": n, "address": a} for n, a in listed],
    }
    if touched is not None:
        body["touched"] = touched
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as file:
        json.dump(body, file, indent=1)
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(path)
    with contextlib.suppress(OSError):  # the rename itself, on disk (not on every OS)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
