"""The client commands: ``get``, ``set``, ``update``, ``incr``, ``delete``, ``keys``,
``get-many``, ``set-many``, ``delete-many``, ``ttl``, ``expire``, ``persist``,
``watch``, ``emit`` and ``status``, talking to a node over its HTTP API.

Exit codes: 0 success; 1 the key (or database) was not found; 2 bad usage (wrong
options, a value that is not JSON or that the node refuses as invalid); 3 the node
is unreachable, refused the credentials (401, 403) or failed (unavailable,
acknowledgement timeout, wrong type, ...).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote

import click

from .http import ApiError, NodeApi, Unreachable, key_path
from .options import client_options, option

__all__ = ["COMMANDS"]

EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_FAILED = 3

P = ParamSpec("P")
R = TypeVar("R")


def _api() -> NodeApi:
    return NodeApi(
        option("node"), timeout=option("timeout"), token=option("token"), ca=option("tls_ca")
    )


def _handled(command: Callable[P, R]) -> Callable[P, R]:
    """Turn the API's errors into messages on stderr and exit codes."""

    @wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except Unreachable as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_FAILED)
        except ApiError as exc:
            click.echo(f"error: {exc.code}: {exc.message}", err=True)
            if exc.status == 404:
                sys.exit(EXIT_NOT_FOUND)
            sys.exit(EXIT_USAGE if exc.status in (400, 413) else EXIT_FAILED)

    return run


def _json_argument(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(
            f"not JSON ({exc}); quote strings: '\"text\"'", param_hint=what
        ) from None


def _ack_query(ack: str, ttl: float | None = None) -> dict[str, str]:
    query = {} if ack == "local" else {"ack": ack}
    if ttl is not None:
        query["ttl"] = _seconds(ttl)
    return query


def _seconds(seconds: float) -> str:
    """Seconds as the API takes them: digits, a fraction (never ``1e-05``)."""
    return f"{seconds:.9f}".rstrip("0").rstrip(".")


def _print(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False))


def _done(answer: Any) -> None:
    """What a write prints: OK, or with ``--json`` the node's answer."""
    if option("as_json"):
        _print(answer)
    else:
        click.echo("OK")


ack_option = click.option(
    "--ack",
    default="local",
    show_default=True,
    metavar="LEVEL",
    help=(
        "when the write returns: local (applied here), majority, all, N (that many"
        " nodes have it), durable (on this node's disk), or durable+majority,"
        " durable+all, durable+N (both)"
    ),
)


ttl_option = click.option(
    "--ttl",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="the key lives that many seconds from now (default: the database's TTL, if any)",
)


@click.command("get")
@click.argument("database")
@click.argument("key")
@client_options
@_handled
def get_command(database: str, key: str) -> None:
    """Print the value of KEY in DATABASE as JSON (exit code 1 if absent)."""
    _print(_api().call("GET", key_path(database, key)))


@click.command("set")
@click.argument("database")
@click.argument("key")
@click.argument("value")
@ack_option
@ttl_option
@client_options
@_handled
def set_command(database: str, key: str, value: str, ack: str, ttl: float | None) -> None:
    """Set KEY in DATABASE to VALUE, a JSON text ('{"a": 1}', '"text"', 42)."""
    body = _json_argument(value, "VALUE")
    _done(_api().call("PUT", key_path(database, key), body, _ack_query(ack, ttl)))


@click.command("update")
@click.argument("database")
@click.argument("key")
@click.argument("fields")
@ack_option
@ttl_option
@client_options
@_handled
def update_command(database: str, key: str, fields: str, ack: str, ttl: float | None) -> None:
    """Merge FIELDS (a JSON object) into the dict value of KEY."""
    body = _json_argument(fields, "FIELDS")
    if not isinstance(body, dict):
        raise click.BadParameter("must be a JSON object", param_hint="FIELDS")
    _done(_api().call("PATCH", key_path(database, key), body, _ack_query(ack, ttl)))


@click.command("incr", context_settings={"ignore_unknown_options": True})
@click.argument("database")
@click.argument("key")
@click.argument("amount", type=int, default=1)
@ack_option
@ttl_option
@client_options
@_handled
def incr_command(database: str, key: str, amount: int, ack: str, ttl: float | None) -> None:
    """Add AMOUNT (default 1, may be negative) to the counter KEY, made if absent;
    print the total."""
    query = {"amount": str(amount), **_ack_query(ack, ttl)}
    total = _api().call("POST", key_path(database, key) + "/incr", None, query)
    if option("as_json"):
        _print(total)
    else:
        click.echo(total["value"])


@click.command("delete")
@click.argument("database")
@click.argument("key")
@ack_option
@client_options
@_handled
def delete_command(database: str, key: str, ack: str) -> None:
    """Delete KEY from DATABASE (exit code 1 if absent)."""
    _done(_api().call("DELETE", key_path(database, key), None, _ack_query(ack)))


@click.command("ttl")
@click.argument("database")
@click.argument("key")
@client_options
@_handled
def ttl_command(database: str, key: str) -> None:
    """Print the seconds left before KEY expires, or "none" when it has no TTL
    (--json: the node's answer; exit code 1 if absent)."""
    answer = _api().call("GET", key_path(database, key) + "/ttl")
    if option("as_json"):
        _print(answer)
    else:
        click.echo("none" if answer["ttl"] is None else f"{answer['ttl']:.3f}")


@click.command("expire")
@click.argument("database")
@click.argument("key")
@click.argument("seconds", type=click.FloatRange(min=0, min_open=True))
@ack_option
@client_options
@_handled
def expire_command(database: str, key: str, seconds: float, ack: str) -> None:
    """KEY expires SECONDS from now, whatever TTL it had (exit code 1 if absent)."""
    query = {"seconds": _seconds(seconds), **_ack_query(ack)}
    _done(_api().call("POST", key_path(database, key) + "/expire", None, query))


@click.command("persist")
@click.argument("database")
@click.argument("key")
@ack_option
@client_options
@_handled
def persist_command(database: str, key: str, ack: str) -> None:
    """Drop the TTL of KEY: it lives until deleted (exit code 1 if absent)."""
    _done(_api().call("POST", key_path(database, key) + "/persist", None, _ack_query(ack)))


@click.command("keys")
@click.argument("database")
@click.option("--prefix", default="", help="only keys that start with this")
@click.option("--pattern", default=None, help="only keys matching this glob ('user:*')")
@client_options
@_handled
def keys_command(database: str, prefix: str, pattern: str | None) -> None:
    """List the keys of DATABASE, one per line (--json: one JSON list)."""
    query = {"prefix": prefix} if prefix else {}
    if pattern is not None:
        query["pattern"] = pattern
    listed = _api().call("GET", _database_path(database) + "/keys", None, query or None)
    if option("as_json"):
        _print(listed)
    else:
        for key in listed:
            click.echo(key)


def _database_path(database: str) -> str:
    return f"/v1/databases/{quote(database, safe='')}"


@click.command("get-many")
@click.argument("database")
@click.argument("keys", nargs=-1, required=True)
@client_options
@_handled
def get_many_command(database: str, keys: tuple[str, ...]) -> None:
    """Print the values of the KEYS found in DATABASE, as one JSON object."""
    answer = _api().call("POST", _database_path(database) + "/get-many", list(keys))
    _print(answer if option("as_json") else answer["values"])


@click.command("set-many")
@click.argument("database")
@click.argument("items")
@ack_option
@ttl_option
@client_options
@_handled
def set_many_command(database: str, items: str, ack: str, ttl: float | None) -> None:
    """Set each key of ITEMS, a JSON object ('{"k1": 1, "k2": "two"}'), to its
    value: one acknowledgement round for all."""
    body = _json_argument(items, "ITEMS")
    if not isinstance(body, dict):
        raise click.BadParameter("must be a JSON object", param_hint="ITEMS")
    _done(_api().call("POST", _database_path(database) + "/set-many", body, _ack_query(ack, ttl)))


@click.command("delete-many")
@click.argument("database")
@click.argument("keys", nargs=-1, required=True)
@ack_option
@client_options
@_handled
def delete_many_command(database: str, keys: tuple[str, ...], ack: str) -> None:
    """Delete the KEYS from DATABASE; print how many existed."""
    path = _database_path(database) + "/delete-many"
    answer = _api().call("POST", path, list(keys), _ack_query(ack))
    if option("as_json"):
        _print(answer)
    else:
        click.echo(answer["deleted"])


@click.command("watch")
@click.argument("database", required=False)
@click.option("--prefix", default=None, help="only keys that start with this")
@click.option("--kinds", default=None, help="only these kinds, comma-separated")
@click.option("--names", default=None, help="only custom events of these names")
@click.option("--values", "with_values", is_flag=True, help="include values that are held")
@click.option("--count", type=click.IntRange(min=1), default=None, help="stop after N events")
@click.option(
    "--since",
    type=click.IntRange(min=0),
    default=None,
    metavar="OFFSET",
    help="first the logged events after this offset (0: all the log holds)",
)
@client_options
@_handled
def watch_command(
    database: str | None,
    prefix: str | None,
    kinds: str | None,
    names: str | None,
    with_values: bool,
    count: int | None,
    since: int | None,
) -> None:
    """Print events as they happen, one JSON object per line (Ctrl-C stops); each
    has its offset, for a later --since."""
    query = {"database": database, "prefix": prefix, "kinds": kinds, "names": names}
    query_strings = {k: v for k, v in query.items() if v}
    if since is not None:
        query_strings["since"] = str(since)
    if with_values:
        query_strings["values"] = "1"
    seen = 0
    api = _api()

    def opened() -> None:
        click.echo(f"watching events at {api.base} (Ctrl-C stops)", err=True)

    try:
        for event in api.stream("/v1/events", query_strings, opened):
            _print(event)
            seen += 1
            if count is not None and seen >= count:
                return
    except KeyboardInterrupt:
        return


@click.command("emit")
@click.argument("name")
@click.argument("payload", required=False)
@client_options
@_handled
def emit_command(name: str, payload: str | None) -> None:
    """Emit the custom event NAME with PAYLOAD (JSON; default null)."""
    body = None if payload is None else _json_argument(payload, "PAYLOAD")
    _done(_api().call("POST", f"/v1/events/{quote(name, safe='')}", body))


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _members_table(members: list[dict[str, Any]]) -> str:
    rows = [["MEMBER", "ROLE", "STATE", "ADDRESS"]]
    rows += [[m["name"], m["role"], m["state"], m["address"] or "-"] for m in members]
    return _table(rows)


@click.command("status")
@client_options
@_handled
def status_command() -> None:
    """Show the node, the cluster's members and the databases (--json: one object)."""
    api = _api()
    cluster = api.call("GET", "/v1/cluster")
    databases = api.call("GET", "/v1/databases")["databases"]
    stats = api.call("GET", "/v1/stats")
    if option("as_json"):
        _print({**cluster, "databases": databases, "stats": stats})
        return
    me = cluster["node"]
    click.echo(f"node {me['name']} ({me['role']}) at {me['address'] or '-'}\n")
    click.echo(_members_table(cluster["members"]) + "\n")
    rows = [["DATABASE", "KEYS", "STALE AFTER"]]
    rows += [
        [
            d["name"],
            str(d["keys"]),
            "never" if d["stale_after"] is None else f"{d['stale_after']:g}s",
        ]
        for d in databases
    ]
    click.echo(_table(rows))
    memory = stats.get("memory")
    if memory:
        limit = "no limit" if memory["limit"] is None else f"limit {memory['limit']} bytes"
        evicted, reloaded = memory["evicted"], memory["reloaded"]
        click.echo(
            f"\nmemory: {memory['used']} bytes held in {memory['held']} values ({limit},"
            f" {memory['policy']}); evicted {evicted['disk']} to disk, {evicted['peer']}"
            f" held elsewhere; reloaded {reloaded['disk']} from disk, {reloaded['peer']}"
            f" from peers; full {memory['full']} times"
        )
    statistics = stats.get("modules", {}).get("stats")
    if statistics:
        for title, name in (("READS", "hot_reads"), ("WRITES", "hot_writes")):
            hot = statistics[name]
            if hot:
                table = [[f"HOT KEYS BY {title} ({statistics['window']:g}s)", "DATABASE", "COUNT"]]
                table += [[h["key"], h["database"], str(h["count"])] for h in hot]
                click.echo("\n" + _table(table))
        r = statistics["replication"]
        click.echo(f"\nreplication: {r['bytes_in']} bytes in, {r['bytes_out']} bytes out")


@click.group("members")
def members_command() -> None:
    """The cluster's members: list them, or remove one that is gone."""


@members_command.command("list")
@client_options
@_handled
def members_list_command() -> None:
    """List the members as the node sees them (--json: the node's answer)."""
    cluster = _api().call("GET", "/v1/cluster")
    if option("as_json"):
        _print(cluster["members"])
        return
    click.echo(_members_table(cluster["members"]))


@members_command.command("remove")
@click.argument("name")
@client_options
@_handled
def members_remove_command(name: str) -> None:
    """Remove member NAME, which crashed or is gone for good: it counts for majority
    and all acknowledgements no more, and every member learns it (exit code 1 if
    it is no member)."""
    _done(_api().call("DELETE", f"/v1/cluster/members/{quote(name, safe='')}"))


COMMANDS = [
    get_command,
    set_command,
    update_command,
    incr_command,
    delete_command,
    keys_command,
    get_many_command,
    set_many_command,
    delete_many_command,
    ttl_command,
    expire_command,
    persist_command,
    watch_command,
    emit_command,
    status_command,
    members_command,
]
