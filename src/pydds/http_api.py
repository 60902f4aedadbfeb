"""The JSON HTTP API of a node process (see docs/http.md).

Routes (fixed paths)::

    GET    /healthz                              200 {"status": "ok", ...}
    GET    /v1/token                             what the request's token may do
    GET    /v1/cluster                           this node, its members and clients
    DELETE /v1/cluster/members/{name}            remove a member that is gone
    GET    /v1/databases                         names and settings
    GET    /v1/stats                             event counts, and module statistics
    GET    /v1/databases/{db}/keys?prefix=P&pattern=G&after=K&limit=N
                                                 the directory's keys, a JSON list
    GET    /v1/databases/{db}/changes?since=N    the keys to read again after offset N
    POST   /v1/databases/{db}/get-many           body: a list of keys; the found ones' values
    POST   /v1/databases/{db}/set-many?ack=A&ttl=S   body: {key: value}; one ack round
    POST   /v1/databases/{db}/delete-many?ack=A  body: a list of keys; how many existed
    GET    /v1/databases/{db}/keys/{key}         the value
    PUT    /v1/databases/{db}/keys/{key}?ack=A&ttl=S   set (body: any JSON value)
    PATCH  /v1/databases/{db}/keys/{key}?ack=A&ttl=S   merge the body's fields into a dict
    DELETE /v1/databases/{db}/keys/{key}?ack=A   delete
    POST   /v1/databases/{db}/keys/{key}/incr?amount=N&ack=A&ttl=S   add to a counter
    GET    /v1/databases/{db}/keys/{key}/ttl     {"key": k, "ttl": seconds left or null}
    GET    /v1/databases/{db}/keys/{key}/info    held here, stale, pinned, its holders
    POST   /v1/databases/{db}/keys/{key}/expire?seconds=S&ack=A   give the key a TTL
    POST   /v1/databases/{db}/keys/{key}/persist?ack=A   drop the key's TTL
    POST   /v1/events/{name}                     emit a custom event (body: the payload)
    GET    /v1/events?database=D&prefix=P&kinds=a,b&names=n&values=1&since=N
                                                 Server-Sent Events, one per event
                                                 (id: its offset; Last-Event-ID resumes)

Every error is JSON, ``{"error": code, "message": text}``, with a stable code:
400 ``bad_json`` (the body), ``bad_request`` (the rest of the request),
``invalid_value``, ``invalid_name``; 404 ``not_found``; 405
``method_not_allowed``; 409 ``wrong_type``; 413 ``too_large``; 503 ``unavailable``,
``closed``, ``storage_error``; 504 ``ack_timeout``. Keys may hold any character,
percent-encoded in the path (``/`` as ``%2F``) as UTF-8: an escape that is not (``%FF``,
``%zz``), in the path or in a query parameter, is refused rather than read as text.
Numbers in the query are ASCII digits only. A database name or a key in the path
(an empty one too) is checked before anything else, on every route: a bad one is
``invalid_name`` whether or not this node knows the database.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from . import __version__
from .acks import check_ack
from .config import check_key, check_name, check_seconds
from .consumers import Consumer, GroupEvent
from .database import Database
from .errors import (
    AckTimeout,
    Forbidden,
    InvalidName,
    InvalidValue,
    KeyNotFound,
    NodeClosed,
    PathNotFound,
    PyddsError,
    StorageError,
    Unavailable,
    WrongType,
)
from .events import Event, EventKind, Subscription
from .net.auth import OPEN_NODE, Grant
from .net.peers import Traffic
from .net.ws import LINK_PATH
from .node import Node

__all__ = [
    "GRANT",
    "NODE",
    "PUBLIC_ROUTE",
    "add_routes",
    "auth_middleware",
    "authorize",
    "error",
    "error_middleware",
    "event_json",
]

NODE = web.AppKey("node", Node)
#: The event streams being served, closed first when the app shuts down.
STREAMS = web.AppKey("streams", set[Subscription | Consumer])

#: Seconds between two keep-alive comments on an idle event stream.
KEEPALIVE = 15.0
#: Events written to an event stream in one write, at most.
STREAM_BATCH = 256

# In order: the first class that matches gives the status and the code.
_ERRORS: list[tuple[type[Exception], int, str]] = [
    (InvalidName, 400, "invalid_name"),
    (InvalidValue, 400, "invalid_value"),
    (KeyNotFound, 404, "not_found"),
    (PathNotFound, 404, "not_found"),
    (WrongType, 409, "wrong_type"),
    (AckTimeout, 504, "ack_timeout"),
    (StorageError, 503, "storage_error"),
    (Unavailable, 503, "unavailable"),
    (NodeClosed, 503, "closed"),
    (Forbidden, 403, "forbidden"),
    (PyddsError, 400, "invalid_request"),
]
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadJson(web.HTTPBadRequest):
    """A body that is not JSON, or not what its ``Content-Encoding`` says: 400
    ``bad_json`` (aiohttp's other 400s, as a link request without ``Upgrade``, are
    ``bad_request``)."""


def error(status: int, code: str, message: str) -> web.Response:
    """A JSON error response."""
    return web.json_response({"error": code, "message": message}, status=status)


#: Paths served without a bearer token: health, and links (which authenticate
#: themselves by challenge-response).
_UNGUARDED = frozenset({"/healthz", LINK_PATH})
#: Routes named so are served without a bearer token too: the dashboard's files,
#: which hold no data (the page asks this API with the token its user gives it).
#: By route, not by path, so that no path spelling reaches any other route.
PUBLIC_ROUTE = "public_"

#: The grant of the request's bearer token (all rights when the node is open).
GRANT = web.RequestKey("pydds.grant", Grant)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With credentials configured, every route but ``/healthz``, the link route and
    the dashboard's files needs a bearer token: a client token (``ID.SECRET``,
    scoped) or a cluster secret (everything). A link proves itself by
    challenge-response once it is open (no secret on the wire), so its upgrade
    request carries no token."""
    credentials = request.app[NODE].credentials
    route = request.match_info.route.name or ""
    if not credentials.enabled or request.path in _UNGUARDED or route.startswith(PUBLIC_ROUTE):
        request[GRANT] = OPEN_NODE
        return await handler(request)
    grant = credentials.bearer(request.headers.get("Authorization"))
    if grant is None:
        response = error(
            401, "unauthorized", "a bearer token is needed: Authorization: Bearer ID.SECRET"
        )
        response.headers["WWW-Authenticate"] = 'Bearer realm="pydds"'
        return response
    request[GRANT] = grant
    return await handler(request)


def authorize(request: web.Request, right: str, database: str | None = None) -> None:
    """Raises ``Forbidden`` when the request's token lacks ``right`` (on ``database``)."""
    grant: Grant = request[GRANT]
    if not grant.allows(right, database):
        where = f" on {database!r}" if database is not None else ""
        raise Forbidden(f"token {grant.token!r} has no {right} right{where}")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn pydds errors and aiohttp's own HTTP errors into JSON errors (and refuse
    a path or query whose percent-escapes are not UTF-8)."""
    try:
        _check_encoding(request)
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = "bad_json" if isinstance(exc, BadJson) else _HTTP_CODES.get(exc.status, "http_error")
        response = error(exc.status, code, exc.reason if exc.text is None else exc.text)
        for header in ("Allow",):
            if header in exc.headers:
                response.headers[header] = exc.headers[header]
        if exc.headers.get("Connection") == "close":
            response.force_close()
        return response
    except PyddsError as exc:
        for cls, status, code in _ERRORS:
            if isinstance(exc, cls):
                return error(status, code, str(exc))
        raise  # unreachable: PyddsError is the last row


async def _body(request: web.Request) -> Any:
    """The request's body as JSON (a body beyond the app's ``client_max_size`` is a 413).

    Raises:
        BadJson: not JSON, or not what its ``Content-Encoding`` says (400
            ``bad_json``).
        InvalidValue: nested too deep to decode, or a number out of a float's range
            (``1e400``).
    """
    try:
        raw = await request.read()
    except RequestPayloadError as exc:  # Content-Encoding: gzip, and it is not
        encoding = request.headers.get("Content-Encoding", "")
        raise BadJson(  # the rest of the body is not read: the connection ends
            text=f"the body does not decode as its Content-Encoding ({encoding}) says: {exc}",
            headers={"Connection": "close"},
        ) from None
    try:
        return json.loads(raw, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise InvalidValue("the body is nested too deep") from None
    except InvalidValue:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadJson(text=f"the body is not JSON: {exc}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise InvalidValue(f"the number {text[:40]} is out of a float's range")
    return number


#: ``%`` not followed by two hex digits: not a percent-escape.
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _strictly_decodes(raw: str) -> bool:
    """Whether percent-encoded ``raw`` decodes as UTF-8, every escape well formed
    (aiohttp keeps a bad escape as text: ``%FF`` would alias the key ``%FF``)."""
    if "%" not in raw:
        return True
    if _BAD_ESCAPE.search(raw):
        return False
    try:
        unquote_to_bytes(raw).decode("utf-8")
    except UnicodeError:
        return False
    return True


#: Query parameters that are names or keys (a bad one is ``invalid_name``).
_NAME_PARAMETERS = frozenset({"after", "database", "names", "prefix"})


def _check_encoding(request: web.Request) -> None:
    """Refuse a path, or a query parameter, whose percent-escapes are not UTF-8."""
    if not _strictly_decodes(request.rel_url.raw_path):
        raise InvalidName(
            f"the path {request.rel_url.raw_path[:200]!r} is not percent-encoded UTF-8"
        )
    raw_query = request.rel_url.raw_query_string
    if "%" not in raw_query:
        return
    for pair in raw_query.split("&"):
        name, _, value = pair.partition("=")
        if not (_strictly_decodes(name) and _strictly_decodes(value)):
            cls = InvalidName if name in _NAME_PARAMETERS else InvalidValue
            raise cls(f"query parameter {name[:40]!r} is not percent-encoded UTF-8")


def _database_name(request: web.Request) -> str:
    """The database named in the path, checked like any database name."""
    return check_name("database", request.match_info["db"])


def _key(request: web.Request) -> str:
    """The key named in the path, checked (1 to ``max_key_length`` characters)."""
    return check_key(request.match_info["key"], request.app[NODE].limits)


#: An ack level that is a number of nodes: ASCII digits only ("²" and "٣" are not).
_COUNT = re.compile(r"[0-9]{1,6}")
#: An ``amount``: an optional minus and ASCII digits, at most a 64-bit int's width.
_AMOUNT = re.compile(r"-?[0-9]{1,19}")


#: Seconds in the query: ASCII digits, and a fraction (``ttl=1.5``).
_SECONDS = re.compile(r"[0-9]{1,15}(\.[0-9]{1,9})?")


def _seconds(request: web.Request, name: str) -> float | None:
    """The query parameter ``name`` as a positive number of seconds; None if absent."""
    raw = request.query.get(name)
    if raw is None:
        return None
    if not _SECONDS.fullmatch(raw):
        raise InvalidValue(f"{name} must be seconds in ASCII digits (1.5), not {raw[:40]!r}")
    return check_seconds(name, float(raw))


def _ack(request: web.Request) -> str | int:
    # "durable+majority" arrives as "durable majority" unless its "+" was encoded.
    raw = request.query.get("ack", "local").replace(" ", "+")
    level = raw.removeprefix("durable+")
    if len(raw) > 32 or not raw.isascii() or (level.isdigit() and not _COUNT.fullmatch(level)):
        raise InvalidValue(f"ack {raw[:40]!r} is not an ack level")
    ack: str | int = int(raw) if _COUNT.fullmatch(raw) else raw
    check_ack(ack)
    return ack


# Every route checks the database name, then the request's right on it, then the
# key, and only then whether this node knows the database: a name gets the same
# answer on every route, whether or not the database exists.


def _for_write(request: web.Request) -> tuple[Database, str]:
    """The database named in the path (made on first use) and the key, once the
    request may write to it."""
    name = _database_name(request)
    authorize(request, "write", name)
    key = _key(request)
    return request.app[NODE].database(name), key


def _existing(request: web.Request, right: str = "read") -> Database:
    """The database named in the path, once the request has ``right`` on it; 404 if
    this node does not know it."""
    name = _database_name(request)
    authorize(request, right, name)
    return _known(request, name)


def _existing_key(request: web.Request, right: str = "read") -> tuple[Database, str]:
    """The database and the key named in the path, as ``_existing`` finds them."""
    name = _database_name(request)
    authorize(request, right, name)
    key = _key(request)
    return _known(request, name), key


def _known(request: web.Request, name: str) -> Database:
    node = request.app[NODE]
    if name not in node.databases():
        raise KeyNotFound(f"no database {name!r} on this node")
    return node.database(name)


def _member(member: Any, traffic: dict[str, Traffic]) -> dict[str, Any]:
    link = traffic.get(member.name)
    return {
        "name": member.name,
        "address": member.address,
        "role": member.role,
        "state": member.state,
        "link": None if link is None else _traffic_json(link),
    }


def _traffic_json(traffic: Traffic) -> dict[str, int]:
    return dataclasses.asdict(traffic)  # bytes_in, bytes_out, messages_in, messages_out


# -- routes ---------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: 200 once the node serves, 503 once it is closed. It needs no
    token, so it says nothing but the node's health: no database names."""
    node = request.app[NODE]
    if node.closed:
        return web.json_response({"status": "closed", "node": node.name}, status=503)
    return web.json_response({"status": "ok", "node": node.name, "version": __version__})


async def token(request: web.Request) -> web.Response:
    """``GET /v1/token``: what the request's bearer token may do, ``{"token": id or
    null, "rights": [...], "databases": [...] or null (every database),
    "credentials": bool}``. On a node with credentials it needs a valid token as any
    route does (a 401 says the token is not one), so it is how a caller checks one."""
    grant: Grant = request[GRANT]
    databases = None if grant.databases is None else sorted(grant.databases)
    return web.json_response(
        {
            "token": grant.token,
            "rights": sorted(grant.rights),
            "databases": databases,
            "credentials": request.app[NODE].credentials.enabled,
        }
    )


async def cluster(request: web.Request) -> web.Response:
    """``GET /v1/cluster``: this node, every member as it sees them (with what the
    link to each carried since it opened, or null when there is none), and the
    clients linked here."""
    authorize(request, "read")
    node = request.app[NODE]
    traffic = node.traffic()
    return web.json_response(
        {
            "node": {"name": node.name, "address": node.address, "role": node.role},
            "members": [_member(m, traffic) for m in node.members()],
            "clients": [
                {"name": name, "link": _traffic_json(traffic[name])}
                for name in node.clients()
                if name in traffic
            ],
        }
    )


async def remove_member(request: web.Request) -> web.Response:
    """``DELETE /v1/cluster/members/{name}``: remove a member that crashed or is gone
    for good (``Node.remove_member``). A change to the whole cluster: it needs a token
    that writes every database."""
    grant: Grant = request[GRANT]
    if grant.databases is not None:
        raise Forbidden(f"token {grant.token!r} is scoped to databases: it removes no member")
    authorize(request, "write")
    node = request.app[NODE]
    name = request.match_info["name"]
    if name == node.name:
        raise InvalidValue(f"{name!r} is this node: stop it instead (it then leaves)")
    if not node.remove_member(name):
        raise KeyNotFound(f"{name!r} is not a member of this node's cluster")
    return web.json_response({"ok": True})


async def databases(request: web.Request) -> web.Response:
    authorize(request, "read")
    node = request.app[NODE]
    grant: Grant = request[GRANT]
    listing = []
    for name in node.databases():
        if not grant.allows("read", name):
            continue
        listing.append(_database_json(node.database(name)))
    return web.json_response({"databases": listing})


def _database_json(db: Database) -> dict[str, Any]:
    # "expire" is the former name of "stale_after", kept for older callers.
    stale_after = db.stale_after
    keys, held, stale = db.keyspace.counts()
    return {
        "name": db.name,
        "stale_after": stale_after,
        "expire": stale_after,
        "ttl": db.default_ttl,
        "keys": keys,
        "held": held,
        "stale": stale,
        "tombstones": len(db.keyspace.directory) - keys,
        "pins": db.pins(),
    }


async def get_database(request: web.Request) -> web.Response:
    """``GET /v1/databases/{db}``: its settings and size; 404 if this node has none."""
    return web.json_response(_database_json(_existing(request)))


_SETTINGS = frozenset({"stale_after", "expire", "ttl"})


async def put_database(request: web.Request) -> web.Response:
    """``PUT /v1/databases/{db}`` ``{"stale_after": seconds or null, "ttl": seconds
    or null}`` (either or both): make the database or change its settings on this
    node (until the node restarts: ``--stale-after`` keeps the staleness time).
    ``{"expire": ...}``, the former name of ``stale_after``, still works and the
    answer carries ``Deprecation: true``."""
    name = _database_name(request)
    authorize(request, "write", name)
    body = await _body(request)
    if (
        not isinstance(body, dict)
        or not body
        or set(body) - _SETTINGS
        or {"stale_after", "expire"} <= set(body)
    ):
        raise InvalidValue(
            'the body is {"stale_after": seconds or null} and/or {"ttl": seconds or null}'
        )
    for field, seconds in body.items():
        if seconds is not None:
            check_seconds(field, seconds)  # the error names the field given
    settings: dict[str, Any] = {}
    if "ttl" in body:
        settings["ttl"] = body["ttl"]
    for field in ("stale_after", "expire"):
        if field in body:
            settings["stale_after"] = body[field]
    db = request.app[NODE].database(name, **settings)
    response = web.json_response(_database_json(db))
    if "expire" in body:
        response.headers["Deprecation"] = "true"  # RFC 9745: use stale_after
    return response


async def stats(request: web.Request) -> web.Response:
    """``GET /v1/stats``: events by kind, and what modules with a ``snapshot()``
    (the statistics module) report. These are the node's figures, of every database:
    a token scoped to databases gets them empty."""
    authorize(request, "read")
    node = request.app[NODE]
    if request[GRANT].databases is not None:
        return web.json_response({"events": {}, "modules": {}})
    modules = {}
    for module in node.modules:
        snapshot = getattr(module, "snapshot", None)
        if snapshot is not None:
            modules[module.name] = snapshot()
    return web.json_response(
        {
            "events": dict(sorted(node.event_counts.items())),
            "memory": node.evictor.snapshot(),
            "traffic": _traffic_json(node.traffic_total()),
            "groups": node.groups.snapshot(),
            "modules": modules,
        }
    )


#: Keys a page may ask for at most (``limit``).
MAX_PAGE = 10_000


async def keys(request: web.Request) -> web.Response:
    """``GET /v1/databases/{db}/keys?prefix=P&pattern=G&after=K&limit=N``: the keys,
    sorted; with ``after``, those after it; with ``limit`` (1 to ``MAX_PAGE``), the
    first N (a page: give its last key as ``after`` for the next)."""
    db = _existing(request)
    query = request.query
    limit = None
    if "limit" in query:
        raw = query["limit"]
        if not _COUNT.fullmatch(raw) or not 1 <= int(raw) <= MAX_PAGE:
            raise InvalidValue(f"limit is a number from 1 to {MAX_PAGE}, not {raw[:40]!r}")
        limit = int(raw)
    after = query.get("after")
    return web.json_response(
        db.keys(query.get("prefix", ""), pattern=query.get("pattern"), after=after, limit=limit)
    )


async def changes(request: web.Request) -> web.Response:
    """``GET /v1/databases/{db}/changes?since=N``: the keys to read again for a
    consumer that has this node's events up to offset N (``Database.changes_since``):
    ``{"keys": [...], "complete": bool, "offset": the log's last offset}``."""
    db = _existing(request)
    raw = request.query.get("since")
    if raw is None or not _OFFSET.fullmatch(raw):
        raise InvalidValue("changes needs since=N, an offset in ASCII digits")
    got = db.changes_since(int(raw))
    return web.json_response({"keys": got.keys, "complete": got.complete, "offset": got.offset})


async def _key_list(request: web.Request) -> list[str]:
    """A body that is a JSON list of keys, each checked."""
    body = await _body(request)
    if not isinstance(body, list):
        raise InvalidValue("the body is a JSON list of keys")
    limits = request.app[NODE].limits
    return [check_key(key, limits) for key in body]


async def get_many(request: web.Request) -> web.Response:
    """``POST /v1/databases/{db}/get-many`` with a list of keys: ``{"values": {key:
    value}}`` of those found (a database this node does not know: none)."""
    name = _database_name(request)
    authorize(request, "read", name)
    wanted = await _key_list(request)
    node = request.app[NODE]
    if name not in node.databases():
        return web.json_response({"values": {}})
    return web.json_response({"values": await node.database(name).get_many(wanted)})


async def set_many(request: web.Request) -> web.Response:
    """``POST /v1/databases/{db}/set-many?ack=A&ttl=S`` with ``{key: value, ...}``:
    set them all, one acknowledgement round; ``{"ok": true, "written": n}``."""
    name = _database_name(request)
    authorize(request, "write", name)
    ack, ttl = _ack(request), _seconds(request, "ttl")
    items = await _body(request)
    if not isinstance(items, dict):
        raise InvalidValue("the body is a JSON object of keys and their values")
    await request.app[NODE].database(name).set_many(items, ack=ack, ttl=ttl)
    return web.json_response({"ok": True, "written": len(items)})


async def delete_many(request: web.Request) -> web.Response:
    """``POST /v1/databases/{db}/delete-many?ack=A`` with a list of keys: delete
    them; ``{"deleted": n}``, how many existed."""
    name = _database_name(request)
    authorize(request, "write", name)
    ack = _ack(request)
    doomed = await _key_list(request)
    node = request.app[NODE]
    if name not in node.databases():
        return web.json_response({"deleted": 0})
    return web.json_response({"deleted": await node.database(name).delete_many(doomed, ack=ack)})


async def get_value(request: web.Request) -> web.Response:
    db, key = _existing_key(request)
    return web.json_response(await db.get(key))


async def put_value(request: web.Request) -> web.Response:
    db, key = _for_write(request)
    ack = _ack(request)
    ttl = _seconds(request, "ttl")
    value = await _body(request)
    created = key not in db
    await db.set(key, value, ack=ack, ttl=ttl)
    return web.json_response({"ok": True, "created": created}, status=201 if created else 200)


async def patch_value(request: web.Request) -> web.Response:
    db, key = _for_write(request)
    ack = _ack(request)
    ttl = _seconds(request, "ttl")
    fields = await _body(request)
    if not isinstance(fields, dict):
        raise InvalidValue("PATCH takes a JSON object of the fields to merge")
    await db.update(key, fields, ack=ack, ttl=ttl)
    return web.json_response({"ok": True})


async def delete_value(request: web.Request) -> web.Response:
    db, key = _existing_key(request, "write")
    if not await db.delete(key, ack=_ack(request)):
        raise KeyNotFound(f"key {key!r} is not in database {db.name!r}")
    return web.json_response({"ok": True})


async def incr(request: web.Request) -> web.Response:
    """``POST /v1/databases/{db}/keys/{key}/incr?amount=N&ack=A``: add to a counter;
    answers ``{"value": total}``."""
    db, key = _for_write(request)
    raw = request.query.get("amount", "1")
    if not _AMOUNT.fullmatch(raw):  # int() would take "٣", " 1", "1_0" and 5000 digits
        raise InvalidValue(f"amount must be a 64-bit integer in ASCII digits, not {raw[:40]!r}")
    total = await db.incr(key, int(raw), ack=_ack(request), ttl=_seconds(request, "ttl"))
    return web.json_response({"value": total})


async def get_ttl(request: web.Request) -> web.Response:
    """``GET /v1/databases/{db}/keys/{key}/ttl``: ``{"key": k, "ttl": seconds}``,
    the seconds left before the key expires (null: it has no TTL); 404 if absent."""
    db, key = _existing_key(request)
    return web.json_response({"key": key, "ttl": db.ttl(key)})


async def key_info(request: web.Request) -> web.Response:
    """``GET /v1/databases/{db}/keys/{key}/info``: where the key's value is, without
    reading it: ``{"key", "generation", "held" (here), "stale", "pinned", "holders"
    (the peers this node knows to hold it), "ttl"}``; 404 if absent."""
    db, key = _existing_key(request)
    if key not in db:
        raise KeyNotFound(f"key {key!r} is not in database {db.name!r}")
    keyspace = db.keyspace
    return web.json_response(
        {
            "key": key,
            "generation": keyspace.generation(key),
            "held": keyspace.holds(key),
            "stale": keyspace.is_stale(key),
            "pinned": keyspace.pinned(key),
            "holders": request.app[NODE].holders(db.name, key),
            "ttl": db.ttl(key),
        }
    )


async def expire(request: web.Request) -> web.Response:
    """``POST /v1/databases/{db}/keys/{key}/expire?seconds=S&ack=A``: the key expires
    ``S`` seconds from now; ``{"key": k, "ttl": S}``, 404 if absent."""
    db, key = _existing_key(request, "write")
    seconds = _seconds(request, "seconds")
    if seconds is None:
        raise InvalidValue("expire needs seconds=S")
    if not await db.expire(key, seconds, ack=_ack(request)):
        raise KeyNotFound(f"key {key!r} is not in database {db.name!r}")
    return web.json_response({"key": key, "ttl": seconds})


async def persist(request: web.Request) -> web.Response:
    """``POST /v1/databases/{db}/keys/{key}/persist?ack=A``: drop the key's TTL;
    ``{"key": k, "persisted": bool}`` (false: it had none), 404 if absent."""
    db, key = _existing_key(request, "write")
    ack = _ack(request)
    if key not in db:
        raise KeyNotFound(f"key {key!r} is not in database {db.name!r}")
    return web.json_response({"key": key, "persisted": await db.persist(key, ack=ack)})


async def emit(request: web.Request) -> web.Response:
    authorize(request, "emit")
    node = request.app[NODE]
    name = check_name("event", request.match_info["name"])
    payload = await _body(request) if request.can_read_body else None
    await node.emit(name, payload)
    return web.json_response({"ok": True}, status=202)


def event_json(event: Event, *, with_value: bool = False) -> dict[str, Any]:
    """An event as a JSON object (what ``GET /v1/events`` sends).

    With ``with_value``, ``created`` and ``changed`` events carry the key's value
    when this node holds it.
    """
    out: dict[str, Any] = {"kind": event.kind.value, "time": event.time}
    if event.offset:
        out["offset"] = event.offset
    if event.database is not None:
        out["database"] = event.database
        out["key"] = event.key
    if event.origin:
        out["origin"] = event.origin
    if event.name is not None:
        out["name"] = event.name
    if event.member is not None:
        out["member"] = event.member
    if event.packed_payload is not None:
        out["payload"] = event.payload
    if event.id is not None:
        out["id"] = event.id
    if with_value and event.kind in (EventKind.CREATED, EventKind.CHANGED):
        # Deleted since, or not held here: the event says only that it changed.
        with contextlib.suppress(KeyNotFound, Unavailable):
            out["value"] = event.value()
    return out


def _sse(event: Event, with_value: bool) -> bytes:
    data = json.dumps(event_json(event, with_value=with_value), separators=(",", ":"))
    if event.offset:  # a reconnect with Last-Event-ID resumes after it
        return f"id: {event.offset}\nevent: {event.kind.value}\ndata: {data}\n\n".encode()
    return f"event: {event.kind.value}\ndata: {data}\n\n".encode()


#: An offset: ASCII digits, at most 18 of them (Event.offset stays below 2**63).
_OFFSET = re.compile(r"[0-9]{1,18}")


def _since(request: web.Request) -> int | None:
    """Where the stream starts: ``Last-Event-ID`` (a browser's reconnect), else the
    ``since`` parameter; None: live events only."""
    raw = request.headers.get("Last-Event-ID")
    what = "Last-Event-ID"
    if raw is None or not raw.strip():
        raw, what = request.query.get("since"), "since"
    if raw is None:
        return None
    if _OFFSET.fullmatch(raw.strip()) is None:
        raise InvalidValue(f"{what} must be an event offset in ASCII digits, not {raw[:40]!r}")
    return int(raw.strip())


def _listed(request: web.Request, name: str) -> list[str] | None:
    raw = request.query.get(name)
    return None if raw is None else [part for part in raw.split(",") if part]


_KINDS = frozenset(kind.value for kind in EventKind)


def _event_filters(
    request: web.Request,
) -> tuple[str | None, list[str] | None, list[str] | None]:
    """The stream's ``database``, ``names`` and ``kinds``: names checked as names
    are in paths; ``kinds`` known kinds, at least one when the parameter is given."""
    database = request.query.get("database")
    if database is not None:
        check_name("database", database)
    names = _listed(request, "names")
    for name in names or ():
        check_name("event", name)
    kinds = _listed(request, "kinds")
    if kinds is not None:
        unknown = sorted(set(kinds) - _KINDS)
        if unknown or not kinds:
            what = f"unknown kinds {unknown}"[:200] if unknown else "kinds= names no kind"
            raise InvalidValue(f"{what}; kinds are {', '.join(sorted(_KINDS))}")
    return database, names, kinds


async def events(request: web.Request) -> web.StreamResponse:
    """``GET /v1/events``: a Server-Sent Events stream (``id:`` the event's offset,
    ``event:`` the kind, ``data:`` the JSON object), with a comment every
    ``KEEPALIVE`` seconds while idle. ``?since=N`` or a ``Last-Event-ID`` header
    replays the logged events after offset ``N`` first. The stream's queue is
    bounded: a slow reader loses the oldest events and receives an ``overflow``
    event saying how many."""
    node = request.app[NODE]
    query = request.query
    grant: Grant = request[GRANT]
    database, names, kinds = _event_filters(request)
    if "group" in query:
        return await _group_events(request, names)
    # A token scoped to databases sees the events of one of them, named.
    authorize(request, "read", database or ("" if grant.databases else None))
    since = _since(request)
    subscription = node.events(
        database=database,
        prefix=query.get("prefix") or None,
        kinds=kinds,
        names=names,
        since=since,
    )
    with_value = query.get("values", "") in ("1", "true", "yes")
    return await _stream(
        request, subscription, b": pydds events\n\n", lambda e: _sse(e, with_value)
    )


async def _stream(
    request: web.Request,
    source: Subscription | Consumer,
    greeting: bytes,
    encode: Callable[[Any], bytes],
) -> web.StreamResponse:
    """Server-Sent Events of what ``source`` gives, in batches, with a comment every
    ``KEEPALIVE`` seconds while idle, until the reader goes or ``source`` closes
    (then closed, as it is when the app shuts down: ``STREAMS``)."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    streams = request.app[STREAMS]
    streams.add(source)
    try:
        await response.prepare(request)
        await response.write(greeting)
        while True:
            try:
                first = await source.get(timeout=KEEPALIVE)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            except (StopAsyncIteration, NodeClosed):
                break  # the node or the app is closing
            batch = [first, *source.ready(STREAM_BATCH - 1)]
            await response.write(b"".join(map(encode, batch)))
    except ConnectionError:
        pass  # the reader went away
    finally:
        streams.discard(source)
        source.close()
    return response


async def _group_events(request: web.Request, names: list[str] | None) -> web.StreamResponse:
    """``GET /v1/events?names=N&group=G``: a consumer of group ``G`` for the custom
    events ``N``, as long as the stream lasts (``ack_timeout=S``, 30 by default).
    Each event is a Server-Sent Event ``custom`` whose data has its ``id``, ``group``
    and ``attempt``; ``POST /v1/events/ack`` acknowledges it. Events the stream had
    not acknowledged when it ends go to the group's other consumers."""
    node = request.app[NODE]
    query = request.query
    group = check_name("group", query["group"])
    if names is None or len(names) != 1:
        raise InvalidValue("a group consumes one event name: names=NAME&group=GROUP")
    if {"database", "prefix", "kinds", "since"} & set(query) or "Last-Event-ID" in request.headers:
        raise InvalidValue("a group's stream takes names, group and ack_timeout only")
    _authorize_custom(request)
    ack_timeout = _seconds(request, "ack_timeout") or 30.0
    consumer = node.consume(names[0], group, ack_timeout=ack_timeout)
    greeting = f": pydds consumer {consumer.id} of {group}\n\n".encode()
    return await _stream(request, consumer, greeting, _group_sse)


def _authorize_custom(request: web.Request) -> None:
    """Custom events are no database's: a token scoped to databases reads none."""
    grant: Grant = request[GRANT]
    authorize(request, "read", "" if grant.databases else None)


def _group_sse(event: GroupEvent) -> bytes:
    data = {
        "kind": "custom",
        "name": event.name,
        "id": event.id,
        "origin": event.origin,
        "group": event.group,
        "attempt": event.attempt,
        "payload": event.payload,
    }
    return f"event: custom\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


#: Event ids acknowledged in one ``POST /v1/events/ack`` at most.
MAX_ACKS = 10_000


async def ack_events(request: web.Request) -> web.Response:
    """``POST /v1/events/ack`` with ``{"group": G, "ids": [...]}`` (or ``"id"``): the
    group has handled those custom events; ``{"acked": n}``, those that were waiting
    here for an ack (an id acknowledged already, or unknown, counts for nothing)."""
    _authorize_custom(request)
    node = request.app[NODE]
    body = await _body(request)
    if not isinstance(body, dict) or not isinstance(body.get("group"), str):
        raise InvalidValue('the body is {"group": GROUP, "ids": [ID, ...]}')
    group = check_name("group", body["group"])
    ids = body.get("ids", [body["id"]] if "id" in body else None)
    if not isinstance(ids, list) or not ids or len(ids) > MAX_ACKS:
        raise InvalidValue(f"ids is a list of 1 to {MAX_ACKS} event ids")
    if not all(isinstance(ident, str) and 0 < len(ident) <= 1024 for ident in ids):
        raise InvalidValue("an event id is a string of 1 to 1024 characters")
    acked = sum(node.ack(group, ident) for ident in ids)
    return web.json_response({"acked": acked})


async def _end_streams(app: web.Application) -> None:
    streams: set[Subscription | Consumer] = app[STREAMS]
    for subscription in list(streams):
        subscription.close()


def add_routes(app: web.Application) -> None:
    """Add the HTTP API's routes to ``app``."""
    app[STREAMS] = set()
    app.on_shutdown.append(_end_streams)
    # A database name or a key may be empty in the path, so that an empty one is
    # refused as invalid_name as any bad name is, not a 404 of an unknown path. A key
    # is any character, a newline too (".+" would not match one).
    db = "/v1/databases/{db:[^{}/]*}"
    key = db + "/keys/{key:[\\s\\S]*}"
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/v1/token", token)
    app.router.add_get("/v1/cluster", cluster)
    app.router.add_delete("/v1/cluster/members/{name}", remove_member)
    app.router.add_get("/v1/databases", databases)
    app.router.add_get("/v1/stats", stats)
    app.router.add_get(db, get_database)
    app.router.add_put(db, put_database)
    app.router.add_get(db + "/keys", keys)
    app.router.add_get(db + "/changes", changes)
    app.router.add_post(db + "/get-many", get_many)
    app.router.add_post(db + "/set-many", set_many)
    app.router.add_post(db + "/delete-many", delete_many)
    app.router.add_post(key + "/incr", incr)
    app.router.add_post(key + "/expire", expire)
    app.router.add_post(key + "/persist", persist)
    app.router.add_get(key + "/ttl", get_ttl)  # before the value's route, which it would match
    app.router.add_get(key + "/info", key_info)
    app.router.add_get(key, get_value)
    app.router.add_put(key, put_value)
    app.router.add_patch(key, patch_value)
    app.router.add_delete(key, delete_value)
    app.router.add_post("/v1/events/ack", ack_events)  # before an event of that name
    app.router.add_post("/v1/events/{name}", emit)
    # No HEAD: a stream has no end to stop at after the headers.
    app.router.add_get("/v1/events", events, allow_head=False)
