"""The OpenAPI 3.1 description of a node's HTTP API, served at ``GET /v1/openapi.json``.

This module is the one source of the description: ``docs/openapi.json`` is its
output (``python -m pydds.openapi > docs/openapi.json``), and the tests check that
the copy in docs/ is what a node serves, and that every route of a node's app is
described here and nothing else is.

Described: every route of ``http_api.py``, ``GET /healthz``, ``GET /metrics``
(Prometheus text) and this document itself. Not described: the WebSocket route
``/v1/link`` that peers and clients link to, which speaks pydds's own binary
protocol once upgraded (docs/security.md).
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any

from aiohttp import web

from . import __version__

__all__ = ["OPENAPI_PATH", "document", "openapi_handler", "render"]

#: Where a node serves this description.
OPENAPI_PATH = "/v1/openapi.json"

Json = dict[str, Any]

# -- schemas --------------------------------------------------------------------------

#: The name rules of databases and event names (``config.check_name``).
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,127}$"
#: A write's ack level (``node.parse_ack``): a level, ``durable``, or ``durable+`` a
#: level (a space stands for an unencoded ``+``).
_LEVEL = r"(local|majority|all|0*[1-9][0-9]*)"
ACK_PATTERN = rf"^({_LEVEL}|durable|durable[+ ]{_LEVEL})$"
#: Seconds in a query (``http_api._seconds``): ASCII digits, a fraction, not zero.
SECONDS_PATTERN = r"^(?!0+(\.0+)?$)[0-9]{1,15}(\.[0-9]{1,9})?$"
#: The kinds of events a stream may ask for (``EventKind``, but ``overflow``, which
#: every stream gets).
KINDS = [
    "created",
    "changed",
    "deleted",
    "expired",
    "custom",
    "joined",
    "left",
    "unreachable",
    "reachable",
    "stale",
    "warmed",
    "evicted",
    "memory_full",
]
_KINDS_PATTERN = "(" + "|".join(KINDS) + ")"

#: The error codes by status (``http_api.py``'s docstring; docs/http.md, Errors).
ERROR_CODES: dict[int, list[str]] = {
    400: ["bad_json", "bad_request", "invalid_value", "invalid_name"],
    401: ["unauthorized"],
    403: ["forbidden"],
    404: ["not_found"],
    409: ["wrong_type"],
    413: ["too_large"],
    503: ["unavailable", "storage_error", "closed"],
    504: ["ack_timeout"],
}


def _ref(kind: str, name: str) -> Json:
    return {"$ref": f"#/components/{kind}/{name}"}


def _schema(name: str) -> Json:
    return _ref("schemas", name)


def _json(schema: Json, description: str) -> Json:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_SCHEMAS: Json = {
    "Error": {
        "type": "object",
        "description": "Every error: a stable code and a message for people.",
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string", "description": "the stable code"},
            "message": {"type": "string"},
        },
    },
    "Name": {
        "type": "string",
        "description": "1 to 128 characters of A-Z a-z 0-9 _ . : -, starting with a letter, "
        "a digit or _",
        "pattern": NAME_PATTERN,
    },
    "Health": {
        "type": "object",
        "required": ["status", "node", "version"],
        "properties": {
            "status": {"const": "ok"},
            "node": {"type": "string", "description": "the node's name"},
            "version": {"type": "string", "description": "pydds's version"},
        },
    },
    "Closed": {
        "type": "object",
        "required": ["status", "node"],
        "properties": {"status": {"const": "closed"}, "node": {"type": "string"}},
    },
    "Member": {
        "type": "object",
        "required": ["name", "address", "role", "state", "link"],
        "properties": {
            "name": {"type": "string"},
            "address": {"type": ["string", "null"], "description": "where it accepts links"},
            "role": {"type": "string"},
            "state": {"enum": ["self", "alive", "indirect", "suspect", "joining"]},
            "link": {
                "oneOf": [_schema("Traffic"), {"type": "null"}],
                "description": "what the link to it carried since it opened; null: no link",
            },
        },
    },
    "Traffic": {
        "type": "object",
        "required": ["bytes_in", "bytes_out", "messages_in", "messages_out"],
        "properties": {
            name: {"type": "integer", "minimum": 0}
            for name in ("bytes_in", "bytes_out", "messages_in", "messages_out")
        },
    },
    "Client": {
        "type": "object",
        "required": ["name", "link"],
        "properties": {"name": {"type": "string"}, "link": _schema("Traffic")},
    },
    "Token": {
        "type": "object",
        "required": ["token", "rights", "databases", "credentials"],
        "properties": {
            "token": {
                "type": ["string", "null"],
                "description": "the token's id; null: a cluster secret, or a node without "
                "credentials",
            },
            "rights": {
                "type": "array",
                "items": {"enum": ["read", "write", "emit"]},
                "description": "what it may do",
            },
            "databases": {
                "type": ["array", "null"],
                "items": {"type": "string"},
                "description": "the databases it reaches; null: every database",
            },
            "credentials": {
                "type": "boolean",
                "description": "whether the node asks for a bearer token",
            },
        },
    },
    "ChangedKeys": {
        "type": "object",
        "required": ["keys", "complete", "offset"],
        "properties": {
            "keys": {
                "type": "array",
                "items": {"type": "string"},
                "description": "the keys that changed after the offset, sorted; every key "
                "when not complete",
            },
            "complete": {
                "type": "boolean",
                "description": "whether the log still holds every offset after it",
            },
            "offset": {
                "type": "integer",
                "minimum": 0,
                "description": "the last offset of this node's log when asked: go on from it",
            },
        },
    },
    "KeyInfo": {
        "type": "object",
        "required": ["key", "generation", "held", "stale", "pinned", "holders", "ttl"],
        "properties": {
            "key": {"type": "string"},
            "generation": {"type": "integer", "minimum": 0},
            "held": {"type": "boolean", "description": "whether this node holds its value"},
            "stale": {"type": "boolean", "description": "whether this node's copy is stale"},
            "pinned": {"type": "boolean"},
            "holders": {
                "type": "array",
                "items": {"type": "string"},
                "description": "the peers this node knows to hold its value",
            },
            "ttl": {
                "type": ["number", "null"],
                "minimum": 0,
                "description": "seconds left before the key expires; null: it has no TTL",
            },
        },
    },
    "Cluster": {
        "type": "object",
        "required": ["node", "members", "clients"],
        "properties": {
            "node": {
                "type": "object",
                "required": ["name", "address", "role"],
                "properties": {
                    "name": {"type": "string"},
                    "address": {"type": ["string", "null"]},
                    "role": {"type": "string"},
                },
            },
            "members": {
                "type": "array",
                "description": "every member as this node sees it, this node first",
                "items": _schema("Member"),
            },
            "clients": {
                "type": "array",
                "description": "the clients linked to this node",
                "items": _schema("Client"),
            },
        },
    },
    "StaleAfter": {
        "type": ["number", "null"],
        "description": "seconds without a read or write before a key goes stale on this "
        "node (kept, no longer replicated here; not a time to live); null: never",
        "exclusiveMinimum": 0,
    },
    "Expire": {
        "type": ["number", "null"],
        "description": "the former name of stale_after",
        "exclusiveMinimum": 0,
        "deprecated": True,
    },
    "DefaultTtl": {
        "type": ["number", "null"],
        "description": "the time to live of keys written without one (seconds; every such "
        "write restarts it); null: keys live until deleted",
        "exclusiveMinimum": 0,
    },
    "Database": {
        "type": "object",
        "required": [
            "name",
            "stale_after",
            "expire",
            "ttl",
            "keys",
            "held",
            "stale",
            "tombstones",
            "pins",
        ],
        "properties": {
            "name": _schema("Name"),
            "stale_after": _schema("StaleAfter"),
            "expire": _schema("Expire"),
            "ttl": _schema("DefaultTtl"),
            "keys": {"type": "integer", "minimum": 0},
            "held": {"type": "integer", "minimum": 0, "description": "values held here"},
            "stale": {"type": "integer", "minimum": 0, "description": "held values gone stale"},
            "tombstones": {
                "type": "integer",
                "minimum": 0,
                "description": "deleted or expired keys remembered until their horizon",
            },
            "pins": {
                "type": "array",
                "items": {"type": "string"},
                "description": "the pinned prefixes",
            },
        },
    },
    "Databases": {
        "type": "object",
        "required": ["databases"],
        "properties": {
            "databases": {
                "type": "array",
                "description": "the databases the token reads",
                "items": _schema("Database"),
            }
        },
    },
    "DatabaseSettings": {
        "type": "object",
        "description": "the settings to change: stale_after (or expire, its former name: "
        "not both) and ttl",
        "minProperties": 1,
        "additionalProperties": False,
        "properties": {
            "stale_after": _schema("StaleAfter"),
            "expire": _schema("Expire"),
            "ttl": _schema("DefaultTtl"),
        },
        "not": {"required": ["stale_after", "expire"]},
    },
    "Stats": {
        "type": "object",
        "required": ["events", "modules"],
        "properties": {
            "events": {
                "type": "object",
                "description": "events by kind",
                "additionalProperties": {"type": "integer", "minimum": 0},
            },
            "memory": _schema("Memory"),
            "traffic": {
                **_schema("Traffic"),
                "description": "what every link carried since the node started",
            },
            "groups": {
                "type": "object",
                "description": "consumer groups as this node sees them: consumers (its "
                "own and its peers'), events pending, delivered here, of them again, "
                "given up",
                "additionalProperties": {"type": "integer", "minimum": 0},
            },
            "modules": {
                "type": "object",
                "description": "the snapshot of each module that has one (statistics)",
            },
        },
    },
    "Memory": {
        "type": "object",
        "description": "the values held here, the memory limit, and evictions",
        "required": ["used", "limit", "policy", "held", "evicted", "reloaded", "full"],
        "properties": {
            "used": {"type": "integer", "minimum": 0, "description": "bytes (an estimate)"},
            "limit": {"type": ["integer", "null"], "description": "max_memory; null: none"},
            "policy": {"type": "string", "enum": ["lru", "lfu"]},
            "held": {"type": "integer", "minimum": 0, "description": "values held here"},
            "evicted": _schema("Sources"),
            "reloaded": _schema("Sources"),
            "full": {
                "type": "integer",
                "minimum": 0,
                "description": "times nothing could be evicted past the limit",
            },
        },
    },
    "Sources": {
        "type": "object",
        "description": "copies by where the other copy was: this node's disk, a peer",
        "required": ["disk", "peer"],
        "properties": {
            "disk": {"type": "integer", "minimum": 0},
            "peer": {"type": "integer", "minimum": 0},
        },
    },
    "Value": {"description": "any JSON value (NaN and infinities are not JSON)"},
    "Written": {
        "type": "object",
        "required": ["ok", "created"],
        "properties": {"ok": {"const": True}, "created": {"type": "boolean"}},
    },
    "Ok": {"type": "object", "required": ["ok"], "properties": {"ok": {"const": True}}},
    "GroupAck": {
        "type": "object",
        "required": ["group"],
        "description": "the custom events a group has handled: `ids`, or one `id`",
        "properties": {
            "group": _schema("Name"),
            "ids": {
                "type": "array",
                "minItems": 1,
                "maxItems": 10000,
                "items": {"type": "string", "minLength": 1, "maxLength": 1024},
            },
            "id": {"type": "string", "minLength": 1, "maxLength": 1024},
        },
    },
    "Acked": {
        "type": "object",
        "required": ["acked"],
        "properties": {
            "acked": {
                "type": "integer",
                "minimum": 0,
                "description": "the events that were waiting here for an ack",
            }
        },
    },
    "Counter": {
        "type": "object",
        "required": ["value"],
        "properties": {"value": {"type": "integer", "description": "the new total"}},
    },
    "KeyList": {
        "type": "array",
        "items": {"type": "string", "minLength": 1, "maxLength": 1024},
    },
    "Values": {
        "type": "object",
        "required": ["values"],
        "properties": {
            "values": {"type": "object", "description": "each key found, and its value"}
        },
    },
    "WrittenMany": {
        "type": "object",
        "required": ["ok", "written"],
        "properties": {"ok": {"const": True}, "written": {"type": "integer", "minimum": 0}},
    },
    "Deleted": {
        "type": "object",
        "required": ["deleted"],
        "properties": {"deleted": {"type": "integer", "minimum": 0}},
    },
    "Ttl": {
        "type": "object",
        "required": ["key", "ttl"],
        "properties": {
            "key": {"type": "string"},
            "ttl": {
                "type": ["number", "null"],
                "minimum": 0,
                "description": "seconds left before the key expires; null: it has no TTL",
            },
        },
    },
    "Persisted": {
        "type": "object",
        "required": ["key", "persisted"],
        "properties": {
            "key": {"type": "string"},
            "persisted": {"type": "boolean", "description": "false: the key had no TTL"},
        },
    },
    "Event": {
        "type": "object",
        "description": "the data of one Server-Sent Event (its `event:` is the kind)",
        "required": ["kind", "time"],
        "properties": {
            "kind": {"enum": [*KINDS, "overflow", "gap"]},
            "time": {"type": "number", "description": "seconds since the epoch"},
            "offset": {
                "type": "integer",
                "minimum": 1,
                "description": "its place in the node's event log (also the SSE `id:`); "
                "none on overflow",
            },
            "database": {"type": "string"},
            "key": {"type": "string"},
            "origin": {"type": "string", "description": "the node the change came from"},
            "name": {"type": "string", "description": "a custom event's name"},
            "member": {"type": "string", "description": "a member event's node"},
            "id": {
                "type": "string",
                "description": "a custom event's id, the same on every node",
            },
            "group": {"type": "string", "description": "a group's stream: the group"},
            "attempt": {
                "type": "integer",
                "minimum": 0,
                "description": "a group's stream: the tries before this one",
            },
            "payload": {
                "description": "a custom event's payload; overflow: {dropped: n}; gap: "
                "{from: offset, to: offset}, the offsets the log no longer holds"
            },
            "value": {"description": "with values=1: the value, when this node holds it"},
        },
    },
}

# -- responses ------------------------------------------------------------------------

_ERROR_TEXT = {
    400: (
        "BadRequest",
        "bad_json: the body is not JSON; bad_request: a request that cannot be read; "
        "invalid_value: a value too deep or too large, "
        "a bad body, ack, amount or kinds; invalid_name: a name breaking the rules, a "
        "key too long",
    ),
    401: (
        "Unauthorized",
        "unauthorized: the node has credentials and the bearer token is missing or wrong",
    ),
    403: ("Forbidden", "forbidden: the token does not reach this database or lacks the right"),
    404: ("NotFound", "not_found: no such key or database on this node"),
    409: ("WrongType", "wrong_type: the stored value does not fit the operation"),
    413: ("TooLarge", "too_large: a body larger than max_value_bytes + 64 KiB (not read)"),
    503: (
        "Unavailable",
        "unavailable: the value is held elsewhere and no holder answered in time; "
        "storage_error: ack=durable and the disk failed (the write stands); closed: the "
        "node is shutting down",
    ),
    504: ("AckTimeout", "ack_timeout: too few nodes acknowledged in time (the write stands)"),
}


def _error_response(status: int) -> Json:
    text = _ERROR_TEXT[status][1]
    schema: Json = {
        "allOf": [
            _schema("Error"),
            {"properties": {"error": {"enum": ERROR_CODES[status]}}},
        ]
    }
    response = _json(schema, text)
    if status == 401:
        response["headers"] = {
            "WWW-Authenticate": {
                "required": True,
                "description": 'Bearer realm="pydds"',
                "schema": {"type": "string"},
            }
        }
    return response


_RESPONSES: Json = {_ERROR_TEXT[s][0]: _error_response(s) for s in sorted(_ERROR_TEXT)}


def _errors(*statuses: int) -> Json:
    """The error responses of an operation that needs a token (401 on a node with
    credentials) and may answer ``statuses``."""
    return {str(s): _ref("responses", _ERROR_TEXT[s][0]) for s in sorted({401, *statuses})}


# -- parameters -----------------------------------------------------------------------

_PARAMETERS: Json = {
    "db": {
        "name": "db",
        "in": "path",
        "required": True,
        "description": "a database name",
        "schema": _schema("Name"),
        "example": "cache",
    },
    "key": {
        "name": "key",
        "in": "path",
        "required": True,
        "description": "the key: any 1 to 1024 characters, percent-encoded (`/` as `%2F`, "
        "`%` as `%25`, `.` and `..` as `%2E` and `%2E%2E`)",
        "schema": {"type": "string", "minLength": 1, "maxLength": 1024},
        "example": "user:1",
    },
    "member": {
        "name": "name",
        "in": "path",
        "required": True,
        "description": "a member's node name",
        "schema": {"type": "string", "minLength": 1, "maxLength": 256},
        "example": "n3",
    },
    "ack": {
        "name": "ack",
        "in": "query",
        "description": "when the write answers: `local` (the default), `majority`, `all`, a "
        "number of nodes, `durable` (on this node's disk; needs the persistence module), or "
        "`durable+` one of the others (`+` written as `%2B`, or a space)",
        "schema": {"type": "string", "pattern": ACK_PATTERN, "default": "local"},
    },
    "ttl": {
        "name": "ttl",
        "in": "query",
        "description": "seconds the key lives from now (then it is gone on every node); "
        "without it, the database's default TTL, if any; else a PUT leaves the key without "
        "a TTL and the other writes keep the one it has",
        "schema": {"type": "string", "pattern": SECONDS_PATTERN},
        "example": "60",
    },
}


def _param(name: str) -> Json:
    return _ref("parameters", name)


def _query(name: str, description: str, schema: Json) -> Json:
    return {"name": name, "in": "query", "description": description, "schema": schema}


def _body(schema: Json, description: str, *, required: bool = True) -> Json:
    return {
        "required": required,
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }


# -- operations -----------------------------------------------------------------------


def _op(operation_id: str, summary: str, tag: str, responses: Json, **more: Any) -> Json:
    return {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        **more,
        "responses": responses,
    }


_KEY_PARAMS = [_param("db"), _param("key")]

_PATHS: Json = {
    "/healthz": {
        "get": _op(
            "health",
            "Whether the node serves; needs no token",
            "node",
            {
                "200": _json(_schema("Health"), "the node serves"),
                "503": _json(_schema("Closed"), "the node is closed"),
            },
            security=[],
        )
    },
    "/metrics": {
        "get": _op(
            "metrics",
            "Prometheus metrics, read from the node at each scrape",
            "node",
            {
                "200": {
                    "description": "the Prometheus text format (version 0.0.4)",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **_errors(403),
            },
        )
    },
    OPENAPI_PATH: {
        "get": _op(
            "openapi",
            "This description of the HTTP API; any valid token reads it",
            "node",
            {"200": _json({"type": "object"}, "the OpenAPI 3.1 document"), **_errors()},
        )
    },
    "/v1/cluster": {
        "get": _op(
            "cluster",
            "This node and the members of its cluster",
            "node",
            {"200": _json(_schema("Cluster"), "this node and its members"), **_errors(403)},
        )
    },
    "/v1/token": {
        "get": _op(
            "token",
            "What the request's bearer token may do (a 401: it is not a valid token)",
            "node",
            {"200": _json(_schema("Token"), "its rights and databases"), **_errors()},
        )
    },
    "/v1/cluster/members/{name}": {
        "parameters": [_param("member")],
        "delete": _op(
            "removeMember",
            "Remove a member that crashed or is gone for good: it counts for `majority` and "
            "`all` no more, is dialed no more, and every member learns it (needs a token "
            "that writes every database)",
            "node",
            {"200": _json(_schema("Ok"), "removed"), **_errors(400, 403, 404)},
        ),
    },
    "/v1/stats": {
        "get": _op(
            "stats",
            "Event counts by kind, and what modules report",
            "node",
            {"200": _json(_schema("Stats"), "the statistics"), **_errors(403)},
        )
    },
    "/v1/databases": {
        "get": _op(
            "listDatabases",
            "The databases of this node that the token reads",
            "databases",
            {"200": _json(_schema("Databases"), "names, settings and sizes"), **_errors(403)},
        )
    },
    "/v1/databases/{db}": {
        "parameters": [_param("db")],
        "get": _op(
            "getDatabase",
            "A database's settings and size",
            "databases",
            {"200": _json(_schema("Database"), "the database"), **_errors(400, 403, 404)},
        ),
        "put": _op(
            "putDatabase",
            "Make the database, or change its settings on this node until it restarts",
            "databases",
            {
                "200": _json(_schema("Database"), "the database"),
                **_errors(400, 403, 413, 503),
            },
            requestBody=_body(
                _schema("DatabaseSettings"), '{"stale_after": seconds or null, "ttl": ...}'
            ),
        ),
    },
    "/v1/databases/{db}/keys": {
        "parameters": [_param("db")],
        "get": _op(
            "listKeys",
            "The keys of the database's directory, sorted",
            "keys",
            {
                "200": _json({"type": "array", "items": {"type": "string"}}, "the keys"),
                **_errors(400, 403, 404),
            },
            parameters=[
                _query("prefix", "only keys starting with this", {"type": "string"}),
                _query(
                    "pattern",
                    "only keys matching this shell-style glob: `*`, `?`, `[abc]`, `[!abc]`",
                    {"type": "string"},
                ),
                _query("after", "only keys sorting after this one (paging)", {"type": "string"}),
                _query(
                    "limit",
                    "at most this many keys: the first of them (a page)",
                    {"type": "integer", "minimum": 1, "maximum": 10_000},
                ),
            ],
        ),
    },
    "/v1/databases/{db}/changes": {
        "parameters": [_param("db")],
        "get": _op(
            "changesSince",
            "The keys to read again for a consumer that has this node's events up to an "
            "offset: those changed since, or every key when the log no longer reaches it",
            "keys",
            {
                "200": _json(_schema("ChangedKeys"), "what to read again"),
                **_errors(400, 403, 404),
            },
            parameters=[
                {
                    **_query(
                        "since",
                        "an event's offset (its SSE id)",
                        {"type": "string", "pattern": "^[0-9]{1,18}$"},
                    ),
                    "required": True,
                    "example": "0",
                }
            ],
        ),
    },
    "/v1/databases/{db}/get-many": {
        "parameters": [_param("db")],
        "post": _op(
            "getMany",
            "The values of the keys found among those listed (values held elsewhere are "
            "pulled all at once)",
            "keys",
            {
                "200": _json(_schema("Values"), "the values found"),
                **_errors(400, 403, 413, 503),
            },
            requestBody=_body(_schema("KeyList"), "the keys"),
        ),
    },
    "/v1/databases/{db}/set-many": {
        "parameters": [_param("db")],
        "post": _op(
            "setMany",
            "Set every key of the body to its value, with one acknowledgement round; "
            "every key and value is checked before anything changes",
            "keys",
            {
                "200": _json(_schema("WrittenMany"), "set"),
                **_errors(400, 403, 413, 503, 504),
            },
            parameters=[_param("ack"), _param("ttl")],
            requestBody=_body({"type": "object"}, "the keys and their values"),
        ),
    },
    "/v1/databases/{db}/delete-many": {
        "parameters": [_param("db")],
        "post": _op(
            "deleteMany",
            "Delete the keys listed, with one acknowledgement round",
            "keys",
            {
                "200": _json(_schema("Deleted"), "how many existed"),
                **_errors(400, 403, 413, 503, 504),
            },
            parameters=[_param("ack")],
            requestBody=_body(_schema("KeyList"), "the keys"),
        ),
    },
    "/v1/databases/{db}/keys/{key}": {
        "parameters": _KEY_PARAMS,
        "get": _op(
            "getValue",
            "A key's value (pulled from a holder if this node has none)",
            "keys",
            {"200": _json(_schema("Value"), "the value"), **_errors(400, 403, 404, 503)},
        ),
        "put": _op(
            "setValue",
            "Set the key to the body (a write into a new database makes it)",
            "keys",
            {
                "200": _json(_schema("Written"), "the key was set"),
                "201": _json(_schema("Written"), "the key was made"),
                **_errors(400, 403, 413, 503, 504),
            },
            parameters=[_param("ack"), _param("ttl")],
            requestBody=_body(_schema("Value"), "the value: any JSON value"),
        ),
        "patch": _op(
            "updateValue",
            "Merge the body's fields into the key's value, a JSON object",
            "keys",
            {"200": _json(_schema("Ok"), "merged"), **_errors(400, 403, 409, 413, 503, 504)},
            parameters=[_param("ack"), _param("ttl")],
            requestBody=_body({"type": "object"}, "the fields to merge"),
        ),
        "delete": _op(
            "deleteValue",
            "Delete the key",
            "keys",
            {"200": _json(_schema("Ok"), "deleted"), **_errors(400, 403, 404, 503, 504)},
            parameters=[_param("ack")],
        ),
    },
    "/v1/databases/{db}/keys/{key}/incr": {
        "parameters": _KEY_PARAMS,
        "post": _op(
            "incr",
            "Add to a counter (made if absent; an int value becomes a counter)",
            "keys",
            {
                "200": _json(_schema("Counter"), "the new total"),
                **_errors(400, 403, 409, 503, 504),
            },
            parameters=[
                _query(
                    "amount",
                    "what to add, a 64-bit int (the total stays within -2**63 and 2**64-1)",
                    {
                        "type": "integer",
                        "minimum": -(2**63),
                        "maximum": 2**63 - 1,
                        "default": 1,
                    },
                ),
                _param("ack"),
                _param("ttl"),
            ],
        ),
    },
    "/v1/databases/{db}/keys/{key}/ttl": {
        "parameters": _KEY_PARAMS,
        "get": _op(
            "getTtl",
            "The seconds left before the key expires",
            "keys",
            {"200": _json(_schema("Ttl"), "its time to live"), **_errors(400, 403, 404)},
        ),
    },
    "/v1/databases/{db}/keys/{key}/info": {
        "parameters": _KEY_PARAMS,
        "get": _op(
            "getKeyInfo",
            "Where the key's value is, without reading it: held here, stale, pinned, holders",
            "keys",
            {"200": _json(_schema("KeyInfo"), "the key's place"), **_errors(400, 403, 404)},
        ),
    },
    "/v1/databases/{db}/keys/{key}/expire": {
        "parameters": _KEY_PARAMS,
        "post": _op(
            "expire",
            "Give the key a time to live from now (replacing any it had)",
            "keys",
            {"200": _json(_schema("Ttl"), "its new TTL"), **_errors(400, 403, 404, 503, 504)},
            parameters=[
                {
                    **_query(
                        "seconds",
                        "seconds the key lives from now",
                        {"type": "string", "pattern": SECONDS_PATTERN},
                    ),
                    "required": True,
                    "example": "60",
                },
                _param("ack"),
            ],
        ),
    },
    "/v1/databases/{db}/keys/{key}/persist": {
        "parameters": _KEY_PARAMS,
        "post": _op(
            "persist",
            "Drop the key's time to live: it lives until deleted",
            "keys",
            {
                "200": _json(_schema("Persisted"), "whether it had one"),
                **_errors(400, 403, 404, 503, 504),
            },
            parameters=[_param("ack")],
        ),
    },
    "/v1/events/ack": {
        "post": _op(
            "ack_events",
            "Acknowledge custom events a group's stream gave: no consumer gets them again",
            "events",
            {"200": _json(_schema("Acked"), "acknowledged"), **_errors(400, 403, 413, 503)},
            requestBody=_body(_schema("GroupAck"), "the group and the event ids"),
        )
    },
    "/v1/events/{name}": {
        "post": _op(
            "emit",
            "Emit a custom event with the body as its payload (no body: null)",
            "events",
            {"202": _json(_schema("Ok"), "emitted"), **_errors(400, 403, 413, 503)},
            parameters=[
                {
                    "name": "name",
                    "in": "path",
                    "required": True,
                    "description": "the event's name",
                    "schema": _schema("Name"),
                    "example": "deploy",
                }
            ],
            requestBody=_body(_schema("Value"), "the payload", required=False),
        )
    },
    "/v1/events": {
        "get": _op(
            "events",
            "A stream of the node's events as Server-Sent Events; it does not end",
            "events",
            {
                "200": {
                    "description": "`text/event-stream`: each event is `id: OFFSET`, "
                    "`event: KIND` and `data: ` an Event object (components/schemas/Event); "
                    "a comment `: keepalive` every 15 s while idle; a reader too slow loses "
                    "the oldest events and then receives one `overflow` event",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                **_errors(400, 403, 503),
            },
            parameters=[
                _query("database", "only this database's data events", _schema("Name")),
                _query("prefix", "only keys starting with this", {"type": "string"}),
                _query(
                    "kinds",
                    "only these kinds, comma-separated",
                    {"type": "string", "pattern": f"^{_KINDS_PATTERN}(,{_KINDS_PATTERN})*$"},
                ),
                _query(
                    "names",
                    "only custom events of these names, comma-separated",
                    {"type": "string"},
                ),
                _query(
                    "group",
                    "with `names` (one name, and no other filter): be a consumer of this "
                    "group as long as the stream lasts: each event of the name goes to one "
                    "consumer of the group across the cluster (`POST /v1/events/ack`)",
                    _schema("Name"),
                ),
                _query(
                    "ack_timeout",
                    "with `group`: seconds this consumer has to acknowledge an event before "
                    "it goes to another (30 by default)",
                    {"type": "string", "pattern": "^[0-9]{1,15}(\\.[0-9]{1,9})?$"},
                ),
                _query(
                    "values",
                    "`1`, `true` or `yes`: created and changed events carry the value when "
                    "this node holds it",
                    {"type": "string", "enum": ["1", "true", "yes", "0", "false", "no"]},
                ),
                _query(
                    "since",
                    "an offset: the logged events after it come first (0: all the log "
                    "holds), then the live ones; offsets no longer held make a `gap` event",
                    {"type": "string", "pattern": "^[0-9]{1,18}$"},
                ),
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "description": "as `since` (a browser's EventSource sends it when it "
                    "reconnects); it wins over `since`",
                    "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                },
            ],
        )
    },
}

_DESCRIPTION = """\
The JSON HTTP API of a pydds node process (`pydds serve`); docs/http.md tells the
rest.

Bodies and answers are JSON. Every error is `{"error": code, "message": text}`
with a stable code: 400 `bad_json`, `bad_request`, `invalid_value`, `invalid_name`; 401
`unauthorized`; 403 `forbidden`; 404 `not_found` (also for an unknown path); 405
`method_not_allowed` (a known path with another method; the `Allow` header lists
the methods); 409 `wrong_type`; 413 `too_large`; 503 `unavailable`,
`storage_error`, `closed`; 504 `ack_timeout`.

With credentials configured (`--secret`, `--token`), every path but `/healthz`
needs `Authorization: Bearer ID.SECRET` (a client token, within its databases and
rights) or `Authorization: Bearer CLUSTER-SECRET` (everything); an open node takes
no token.

Not described here: the WebSocket route `/v1/link`, where peers and clients link
with pydds's own protocol (docs/security.md).
"""


@functools.cache
def document() -> Json:
    """The OpenAPI 3.1 document (the same object on every call: do not change it)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pydds HTTP API",
            "version": __version__,
            "description": _DESCRIPTION,
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "tags": [
            {"name": "node", "description": "health, metrics, cluster and statistics"},
            {"name": "databases", "description": "databases and their settings"},
            {"name": "keys", "description": "keys and values"},
            {"name": "events", "description": "custom events and the event stream"},
        ],
        "security": [{"bearerAuth": []}, {}],
        "paths": _PATHS,
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "ID.SECRET or CLUSTER-SECRET",
                    "description": "a client token (`ID.SECRET`) or a cluster secret; "
                    "needed when the node has credentials",
                }
            },
            "schemas": _SCHEMAS,
            "parameters": _PARAMETERS,
            "responses": _RESPONSES,
        },
    }


@functools.cache
def render() -> bytes:
    """The document as served and as kept in docs/openapi.json."""
    return (json.dumps(document(), indent=2, ensure_ascii=False) + "\n").encode()


async def openapi_handler(request: web.Request) -> web.Response:
    """``GET /v1/openapi.json``: the description (any valid token may read it)."""
    return web.Response(body=render(), content_type="application/json")


if __name__ == "__main__":
    sys.stdout.buffer.write(render())
