"""Rich display in Jupyter: compact HTML tables for nodes, databases and events.

Every piece of user data (names, keys, values, payloads) is escaped: a key may be
``<script>``. Tables are bounded (``ROWS`` rows, then a line saying how many more),
so that displaying a node of a million keys stays cheap.
"""

from __future__ import annotations

import datetime
import html
import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .database import Database
    from .events import Event
    from .node import Node

__all__ = ["database_html", "event_html", "node_html"]

#: Rows shown per table at most.
ROWS = 20
#: Characters of a value shown at most.
PREVIEW = 80

_STYLE = "border-collapse:collapse;font-size:90%;margin:2px 0 8px 0"
_CELL = "border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top"


def _cell(value: Any, tag: str = "td") -> str:
    return f'<{tag} style="{_CELL}">{html.escape(str(value))}</{tag}>'


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], total: int | None = None) -> str:
    """An HTML table of ``rows`` (at most ``ROWS``; ``total`` says how many exist)."""
    head = "".join(_cell(h, "th") for h in headers)
    body = []
    shown = 0
    for row in rows:
        if shown == ROWS:
            break
        body.append("<tr>" + "".join(_cell(c) for c in row) + "</tr>")
        shown += 1
    more = ""
    if total is not None and total > shown:
        more = f"<div style='font-size:85%;color:#666'>... and {total - shown} more</div>"
    return f'<table style="{_STYLE}"><tr>{head}</tr>{"".join(body)}</table>{more}'


def preview(value: Any) -> str:
    """A short JSON text of a value."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= PREVIEW else text[: PREVIEW - 1] + "…"


def _when(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds).strftime("%H:%M:%S.%f")[:-3]


def _title(text: str) -> str:
    return f"<div style='font-weight:bold;margin-top:4px'>{html.escape(text)}</div>"


def node_html(node: Node) -> str:
    """A node: who it is, its members and links, its databases, its recent events."""
    state = "closed" if node.closed else "open"
    parts = [
        _title(f"pydds {node.role} {node.name} ({state})"),
        table(
            ("address", "client id", "modules"),
            [
                (
                    node.address or "-",
                    node.client_id,
                    ", ".join(m.name for m in node.modules) or "-",
                )
            ],
        ),
    ]
    members = node.members()
    parts.append(_title("members"))
    parts.append(
        table(
            ("name", "role", "state", "address"),
            ((m.name, m.role, m.state, m.address or "-") for m in members),
            len(members),
        )
    )
    traffic = node.traffic()
    if traffic:
        parts.append(_title("links"))
        parts.append(
            table(
                ("peer", "bytes in", "bytes out", "messages in", "messages out"),
                (
                    (peer, t.bytes_in, t.bytes_out, t.messages_in, t.messages_out)
                    for peer, t in sorted(traffic.items())
                ),
                len(traffic),
            )
        )
    if not node.closed:
        names = node.databases()
        parts.append(_title("databases"))
        rows = []
        for name in names[:ROWS]:
            db = node.database(name)
            keys, held, stale = db.keyspace.counts()
            stale_after = "never" if db.stale_after is None else f"{db.stale_after:g} s"
            rows.append((name, keys, held, stale, stale_after))
        parts.append(table(("database", "keys", "held", "stale", "stale after"), rows, len(names)))
    recent = list(reversed(node.recent_events()))
    if recent:
        parts.append(_title("recent events"))
        parts.append(table(_EVENT_HEADERS, (_event_row(e) for e in recent), len(recent)))
    return "".join(parts)


def database_html(db: Database) -> str:
    """A database: its settings and counts, and its keys (held, stale, a preview)."""
    keyspace = db.keyspace
    keys, held, stale = keyspace.counts()
    stale_after = "never" if db.stale_after is None else f"{db.stale_after:g} s"
    parts = [
        _title(f"database {db.name}"),
        table(
            ("keys", "held here", "stale here", "stale after"), [(keys, held, stale, stale_after)]
        ),
    ]
    rows = []
    for key in keyspace.keys()[:ROWS]:
        if not keyspace.holds(key):
            rows.append((key, "no", "", "(held elsewhere: get pulls it)"))
            continue
        value = keyspace.read(key, fresh=False)
        rows.append((key, "yes", "yes" if keyspace.is_stale(key) else "", preview(value)))
    parts.append(table(("key", "held", "stale", "value"), rows, keys))
    return "".join(parts)


_EVENT_HEADERS = ("time", "kind", "database", "key", "origin", "name / member / payload")


def _event_row(event: Event) -> tuple[Any, ...]:
    detail = event.name or event.member or ""
    if event.packed_payload is not None:
        detail = f"{detail} {preview(event.payload)}".strip()
    return (
        _when(event.time),
        event.kind.value,
        event.database or "",
        event.key or "",
        event.origin,
        detail,
    )


def event_html(event: Event) -> str:
    """One event as a one-row table."""
    return table(_EVENT_HEADERS, [_event_row(event)])
