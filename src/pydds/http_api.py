"""The JSON HTTP API of a node process (see docs/http.md).

Routes (fixed paths)::

    GET    /healthz                              200 {"status": "ok", ...}
    GET    /v1/cluster                           this node and its members
    GET    /v1/databases                         names and settings
    GET    /v1/stats                             event counts, and module statistics
    GET    /v1/databases/{db}/keys?prefix=P      the directory's keys, a JSON list
    GET    /v1/databases/{db}/keys/{key}         the value
    PUT    /v1/databases/{db}/keys/{key}?ack=A   set (body: any JSON value)
    PATCH  /v1/databases/{db}/keys/{key}?ack=A   merge the body's fields into a dict
    DELETE /v1/databases/{db}/keys/{key}?ack=A   delete
    POST   /v1/databases/{db}/keys/{key}/incr?amount=N&ack=A   add to a counter
    POST   /v1/events/{name}                     emit a custom event (body: the payload)
    GET    /v1/events?database=D&prefix=P&kinds=a,b&names=n&values=1
                                                 Server-Sent Events, one per event

Every error is JSON, ``{"error": code, "message": text}``, with a stable code:
400 ``bad_json``, ``invalid_value``, ``invalid_name``; 404 ``not_found``; 405
``method_not_allowed``; 409 ``wrong_type``; 413 ``too_large``; 503 ``unavailable``,
``closed``, ``storage_error``; 504 ``ack_timeout``. Keys may hold any character,
percent-encoded in the path (``/`` as ``%2F``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from . import __version__
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
from .net.ws import LINK_PATH
from .node import Node, check_ack

__all__ = [
    "GRANT",
    "NODE",
    "add_routes",
    "auth_middleware",
    "authorize",
    "error_middleware",
    "event_json",
]

NODE = web.AppKey("node", Node)
#: The event streams being served, closed first when the app shuts down.
STREAMS = web.AppKey("streams", set[Subscription])

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
    400: "bad_json",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, code: str, message: str) -> web.Response:
    """A JSON error response."""
    return web.json_response({"error": code, "message": message}, status=status)


#: Paths served without a bearer token: health, and links (which authenticate
#: themselves by challenge-response).
_UNGUARDED = frozenset({"/healthz", LINK_PATH})

#: The grant of the request's bearer token (all rights when the node is open).
GRANT = web.RequestKey("pydds.grant", Grant)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With credentials configured, every route but ``/healthz`` and the link route
    needs a bearer token: a client token (``ID.SECRET``, scoped) or a cluster secret
    (everything). A link proves itself by challenge-response once it is open (no
    secret on the wire), so its upgrade request carries no token."""
    credentials = request.app[NODE].credentials
    if not credentials.enabled or request.path in _UNGUARDED:
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
    """Turn pydds errors and aiohttp's own HTTP errors into JSON errors."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        response = error(exc.status, code, exc.reason if exc.text is None else exc.text)
        for header in ("Allow",):
            if header in exc.headers:
                response.headers[header] = exc.headers[header]
        return response
    except PyddsError as exc:
        for cls, status, code in _ERRORS:
            if isinstance(exc, cls):
                return error(status, code, str(exc))
        raise  # unreachable: PyddsError is the last row


async def _body(request: web.Request) -> Any:
    """The request's body as JSON (a body beyond the app's ``client_max_size`` is a 413)."""
    raw = await request.read()
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(text=f"the body is not JSON: {exc}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _ack(request: web.Request) -> str | int:
    # "durable+majority" arrives as "durable majority" unless its "+" was encoded.
    ack: str | int = request.query.get("ack", "local").replace(" ", "+")
    if isinstance(ack, str) and ack.isdigit():
        ack = int(ack)
    check_ack(ack)
    return ack


def _for_write(request: web.Request) -> Database:
    """The database named in the path (made on first use), once the request may
    write to it."""
    name = request.match_info["db"]
    authorize(request, "write", name)
    return request.app[NODE].database(name)


def _existing(request: web.Request) -> Database:
    """The database named in the path; 404 if this node does not know it."""
    node = request.app[NODE]
    name = request.match_info["db"]
    if name not in node.databases():
        raise KeyNotFound(f"no database {name!r} on this node")
    return node.database(name)


def _member(member: Any) -> dict[str, Any]:
    return {
        "name": member.name,
        "address": member.address,
        "role": member.role,
        "state": member.state,
    }


# -- routes ---------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: 200 once the node serves, 503 once it is closed."""
    node = request.app[NODE]
    if node.closed:
        return web.json_response({"status": "closed", "node": node.name}, status=503)
    return web.json_response(
        {"status": "ok", "node": node.name, "version": __version__, "databases": node.databases()}
    )


async def cluster(request: web.Request) -> web.Response:
    authorize(request, "read")
    node = request.app[NODE]
    return web.json_response(
        {
            "node": {"name": node.name, "address": node.address, "role": node.role},
            "members": [_member(m) for m in node.members()],
        }
    )


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
    return {"name": db.name, "expire": db.expire, "keys": len(db)}


async def get_database(request: web.Request) -> web.Response:
    """``GET /v1/databases/{db}``: its settings and size; 404 if this node has none."""
    authorize(request, "read", request.match_info["db"])
    return web.json_response(_database_json(_existing(request)))


async def put_database(request: web.Request) -> web.Response:
    """``PUT /v1/databases/{db}`` ``{"expire": seconds or null}``: make the database
    or change its expiry on this node (until the node restarts: ``--expire`` keeps
    it)."""
    authorize(request, "write", request.match_info["db"])
    body = await _body(request)
    if not isinstance(body, dict) or set(body) != {"expire"}:
        raise InvalidValue('the body is {"expire": seconds} or {"expire": null}')
    db = request.app[NODE].database(request.match_info["db"], expire=body["expire"])
    return web.json_response(_database_json(db))


async def stats(request: web.Request) -> web.Response:
    """``GET /v1/stats``: events by kind, and what modules with a ``snapshot()``
    (the statistics module) report."""
    authorize(request, "read")
    node = request.app[NODE]
    modules = {}
    for module in node.modules:
        snapshot = getattr(module, "snapshot", None)
        if snapshot is not None:
            modules[module.name] = snapshot()
    return web.json_response(
        {"events": dict(sorted(node.event_counts.items())), "modules": modules}
    )


async def keys(request: web.Request) -> web.Response:
    authorize(request, "read", request.match_info["db"])
    db = _existing(request)
    return web.json_response(db.keys(prefix=request.query.get("prefix", "")))


async def get_value(request: web.Request) -> web.Response:
    authorize(request, "read", request.match_info["db"])
    db = _existing(request)
    return web.json_response(await db.get(request.match_info["key"]))


async def put_value(request: web.Request) -> web.Response:
    db = _for_write(request)
    ack = _ack(request)
    value = await _body(request)
    key = request.match_info["key"]
    created = key not in db
    await db.set(key, value, ack=ack)
    return web.json_response({"ok": True, "created": created}, status=201 if created else 200)


async def patch_value(request: web.Request) -> web.Response:
    db = _for_write(request)
    ack = _ack(request)
    fields = await _body(request)
    if not isinstance(fields, dict):
        raise InvalidValue("PATCH takes a JSON object of the fields to merge")
    await db.update(request.match_info["key"], fields, ack=ack)
    return web.json_response({"ok": True})


async def delete_value(request: web.Request) -> web.Response:
    authorize(request, "write", request.match_info["db"])
    db = _existing(request)
    key = request.match_info["key"]
    if not await db.delete(key, ack=_ack(request)):
        raise KeyNotFound(f"key {key!r} is not in database {db.name!r}")
    return web.json_response({"ok": True})


async def incr(request: web.Request) -> web.Response:
    """``POST /v1/databases/{db}/keys/{key}/incr?amount=N&ack=A``: add to a counter;
    answers ``{"value": total}``."""
    db = _for_write(request)
    raw = request.query.get("amount", "1")
    try:
        amount = int(raw)
    except ValueError:
        raise InvalidValue(f"amount must be an integer, not {raw!r}") from None
    total = await db.incr(request.match_info["key"], amount, ack=_ack(request))
    return web.json_response({"value": total})


async def emit(request: web.Request) -> web.Response:
    authorize(request, "emit")
    node = request.app[NODE]
    payload = await _body(request) if request.can_read_body else None
    await node.emit(request.match_info["name"], payload)
    return web.json_response({"ok": True}, status=202)


def event_json(event: Event, *, with_value: bool = False) -> dict[str, Any]:
    """An event as a JSON object (what ``GET /v1/events`` sends).

    With ``with_value``, ``created`` and ``changed`` events carry the key's value
    when this node holds it.
    """
    out: dict[str, Any] = {"kind": event.kind.value, "time": event.time}
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
    if with_value and event.kind in (EventKind.CREATED, EventKind.CHANGED):
        # Deleted since, or not held here: the event says only that it changed.
        with contextlib.suppress(KeyNotFound, Unavailable):
            out["value"] = event.value()
    return out


def _sse(event: Event, with_value: bool) -> bytes:
    data = json.dumps(event_json(event, with_value=with_value), separators=(",", ":"))
    return f"event: {event.kind.value}\ndata: {data}\n\n".encode()


def _listed(request: web.Request, name: str) -> list[str] | None:
    raw = request.query.get(name)
    return None if raw is None else [part for part in raw.split(",") if part]


async def events(request: web.Request) -> web.StreamResponse:
    """``GET /v1/events``: a Server-Sent Events stream (``event:`` the kind,
    ``data:`` the JSON object), with a comment every ``KEEPALIVE`` seconds while
    idle. The stream's queue is bounded: a slow reader loses the oldest events and
    receives an ``overflow`` event saying how many."""
    node = request.app[NODE]
    query = request.query
    grant: Grant = request[GRANT]
    # A token scoped to databases sees the events of one of them, named.
    authorize(request, "read", query.get("database") or ("" if grant.databases else None))
    subscription = node.events(
        database=query.get("database") or None,
        prefix=query.get("prefix") or None,
        kinds=_listed(request, "kinds"),
        names=_listed(request, "names"),
    )
    with_value = query.get("values", "") in ("1", "true", "yes")
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    streams = request.app[STREAMS]
    streams.add(subscription)
    try:
        await response.prepare(request)
        await response.write(b": pydds events\n\n")
        while True:
            try:
                first = await subscription.get(timeout=KEEPALIVE)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            except StopAsyncIteration:
                break  # the node or the app is closing
            batch = [first, *subscription.ready(STREAM_BATCH - 1)]
            await response.write(b"".join(_sse(e, with_value) for e in batch))
    except ConnectionError:
        pass  # the reader went away
    finally:
        streams.discard(subscription)
        subscription.close()
    return response


async def _end_streams(app: web.Application) -> None:
    streams: set[Subscription] = app[STREAMS]
    for subscription in list(streams):
        subscription.close()


def add_routes(app: web.Application) -> None:
    """Add the HTTP API's routes to ``app``."""
    app[STREAMS] = set()
    app.on_shutdown.append(_end_streams)
    key = "/v1/databases/{db}/keys/{key:.+}"
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/v1/cluster", cluster)
    app.router.add_get("/v1/databases", databases)
    app.router.add_get("/v1/stats", stats)
    app.router.add_get("/v1/databases/{db}", get_database)
    app.router.add_put("/v1/databases/{db}", put_database)
    app.router.add_get("/v1/databases/{db}/keys", keys)
    app.router.add_post("/v1/databases/{db}/keys/{key:.+}/incr", incr)
    app.router.add_get(key, get_value)
    app.router.add_put(key, put_value)
    app.router.add_patch(key, patch_value)
    app.router.add_delete(key, delete_value)
    app.router.add_post("/v1/events/{name}", emit)
    app.router.add_get("/v1/events", events)
