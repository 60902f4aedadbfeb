"""The configuration of a node process (``pydds serve``).

Each setting comes from, in this order of precedence: a command-line option, a
``PYDDS_*`` environment variable, the TOML file named by ``--config`` (or
``PYDDS_CONFIG``), and the embedded default. The file uses the option names with
``_`` for ``-``::

    name = "n1"
    host = "127.0.0.1"
    port = 7400
    join = ["127.0.0.1:7401"]
    advertise = "10.0.0.5:7400"
    data_dir = "./pydds-data"
    memory = false
    modules = ["package.module:Class?option=value"]
    # or, with typed options:
    # [[modules]]
    # spec = "package.module:Class"
    # option = 5
    log_level = "info"
    log_format = "json"
    loop = "auto"
    stale_after = {cache = 300, sessions = 60}   # seconds idle before a key goes stale
    secrets = ["a-cluster-secret-of-16-bytes-or-more"]
    tokens = ["web:web-secret-0123456789:cache:read+write"]
    tls_cert = "node.pem"
    tls_key = "node-key.pem"
    tls_ca = "ca.pem"
    max_memory = "512MiB"       # bytes the values held here may take (then: eviction)
    eviction = "lru"            # or "lfu": which copies go first past max_memory
    http_idle_timeout = 15      # seconds a connection may go without a request
    http_header_timeout = 10    # seconds a request's line and headers may take
    tombstone_horizon = 21600   # seconds a deleted key is remembered (then pruned)

The environment variables are ``PYDDS_`` and the upper-case name
(``PYDDS_PORT=7500``); lists (``PYDDS_JOIN``, ``PYDDS_MODULES``) are comma-separated,
and so is ``PYDDS_STALE_AFTER=cache=300,sessions=60`` (``--stale-after cache=300``,
repeatable, on the command line). ``expire`` (``PYDDS_EXPIRE``, ``--expire``), the
former name of ``stale_after``, still works with a ``DeprecationWarning``.
Addresses are ``host:port``, an IPv6 host in brackets (``[::1]:7400``); ``host``
alone may be ``::1`` or ``[::1]``. Numbers written as text are ASCII digits (``٣``
and ``²`` are no numbers).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import EvictionPolicy, check_name, parse_bytes, warn_renamed
from .errors import InvalidName, InvalidValue
from .net.ws import normalize

__all__ = ["ConfigError", "ServeConfig", "load_config"]

ENV_PREFIX = "PYDDS_"
LOG_FORMATS = ("text", "json")
LOOPS = ("auto", "uvloop", "asyncio")
_LISTS = ("join", "modules", "secrets", "tokens")
_SECONDS = ("http_idle_timeout", "http_header_timeout", "tombstone_horizon")
#: A number of seconds written as text: ASCII digits, a decimal point at most.
_DECIMAL = re.compile(r"[0-9]{1,15}(\.[0-9]{0,15})?|\.[0-9]{1,15}")
_BOOLS = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
}


class ConfigError(ValueError):
    """A setting is missing, unknown or of the wrong type (``pydds serve`` exits 2)."""


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """Every setting of a node process, with the embedded defaults."""

    name: str | None = None  # the node's name (default: random)
    host: str = "127.0.0.1"  # the address to bind
    port: int = 7400  # the port to bind; 0 picks a free one
    join: tuple[str, ...] = ()  # nodes to join through
    advertise: str | None = None  # the address peers should dial, if not the bound one
    data_dir: str = "./pydds-data"  # where persistence keeps its files
    memory: bool = False  # keep data in memory only (no persistence module by default)
    #: Cluster secrets (the first proves this node; all are accepted: rotation).
    secrets: tuple[str, ...] = ()
    #: Client tokens, ``id:secret[:db+db[:right+right]]`` (or TOML tables).
    tokens: tuple[str | dict[str, Any], ...] = ()
    tls_cert: str | None = None  # a PEM certificate chain: serve https and wss
    tls_key: str | None = None  # its private key
    tls_ca: str | None = None  # PEM CA certificates that peers' certificates must chain to
    #: Module specs, ``package.module:Class?key=value&...`` (or, from a file, tables
    #: ``{spec = "package.module:Class", key = value}``).
    modules: tuple[str | dict[str, Any], ...] = ()
    log_level: str = "info"
    log_format: str = "text"  # "text" or "json" (one JSON object per line)
    loop: str = "auto"  # the event loop: "uvloop", "asyncio", or "auto" (uvloop if installed)
    #: Databases and their staleness time: seconds without a read or write before a
    #: key goes stale on this node (``node.database(name, stale_after=seconds)`` at
    #: start). Not a time to live: nothing is deleted.
    stale_after: tuple[tuple[str, float], ...] = ()
    #: Bytes the values held on this node may take (``Limits.max_memory``); None: no
    #: limit. Past it, copies held elsewhere or on disk are evicted.
    max_memory: int | None = None
    eviction: EvictionPolicy = "lru"  # "lru" or "lfu": which copies go first past max_memory
    #: Seconds an HTTP connection may go without a request (from its opening or its
    #: last answer) before it is closed.
    http_idle_timeout: float = 15.0
    #: Seconds a request's line and headers may take from their first byte.
    http_header_timeout: float = 10.0
    #: Seconds a deleted or expired key is remembered before it is pruned
    #: (``Limits.tombstone_horizon``): longer than any partition or downtime after
    #: which a node should still learn of the delete.
    tombstone_horizon: float = 6 * 3600.0


_FIELDS = {f.name: f for f in dataclasses.fields(ServeConfig)}
#: Former names of settings -> their names now (each use warns).
_RENAMED = {"expire": "stale_after"}


def _current(name: str) -> str:
    """A setting's name now (a former name warns)."""
    new = _RENAMED.get(name)
    if new is None:
        return name
    warn_renamed(name, new, stacklevel=4)
    return new


def _expiry(value: Any, source: str) -> tuple[tuple[str, float], ...]:
    """``{db: seconds}`` (a TOML table), or ``db=seconds`` specs (a list, or one
    comma-separated string) -> ``((db, seconds), ...)``."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, (list, tuple)):
        table: dict[str, Any] = {}
        for spec in value:
            if not isinstance(spec, str) or "=" not in spec:
                raise ConfigError(f"stale_after in {source}: {spec!r} is not DATABASE=SECONDS")
            name, _, seconds = spec.partition("=")
            table[name.strip()] = seconds.strip()
        value = table
    if not isinstance(value, dict):
        raise ConfigError(f"stale_after in {source} must be a table of database = seconds")
    out = []
    for name, seconds in value.items():
        try:
            check_name("database", name)
        except InvalidName as exc:
            raise ConfigError(f"stale_after in {source}: {exc}") from None
        out.append((name, _seconds(seconds, f"stale_after in {source}: {name}")))
    return tuple(out)


def _seconds(value: Any, what: str) -> float:
    """A positive, finite number of seconds: a number, or ASCII decimal text."""
    number = math.nan
    if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        number = float(value.strip())
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value) if abs(value) < 2**63 else math.inf  # 10**400 is no float
    if not (math.isfinite(number) and number > 0):
        raise ConfigError(f"{what} needs a positive number of seconds, not {value!r}")
    return number


def _host(value: str, source: str) -> str:
    """The address to bind: a name or an IP address; an IPv6 one may be bracketed."""
    host = value.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f"host in {source}: {value!r} is not an IPv6 address") from None
    if not host or any(c in host for c in "[]/ "):
        raise ConfigError(f"host in {source} must be a name or an IP address, not {value!r}")
    return host


def _address(value: str, what: str) -> str:
    """A node's address, as ``--join`` and ``--advertise`` take it."""
    try:
        normalize(value.strip(), "wss" if value.strip().startswith("wss://") else "ws")
    except ValueError:
        raise ConfigError(
            f"{what}: {value!r} is not a node address: host:port, ws://host:port or "
            "wss://host:port, an IPv6 host in brackets ([::1]:7400)"
        ) from None
    return value.strip()


def _coerce(name: str, value: Any, source: str) -> Any:
    """Check and convert one setting's value from ``source``."""
    if name == "stale_after":
        return _expiry(value, source)
    if name in _SECONDS:
        return _seconds(value, f"{name} in {source}")
    if name == "max_memory":
        try:
            return parse_bytes(value)
        except InvalidValue as exc:
            raise ConfigError(f"max_memory in {source}: {exc}") from None
    if name in _LISTS:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        # A module may also be a TOML table: {spec = "pkg.mod:Cls", option = value}.
        tables = name in ("modules", "tokens")
        allowed = (str, dict) if tables else (str,)
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, allowed) for v in value):
            kind = "strings or tables" if tables else "strings"
            raise ConfigError(f"{name} in {source} must be a list of {kind}")
        if name == "join":
            return tuple(_address(v, f"join in {source}") for v in value)
        return tuple(value)
    if name == "memory":
        if isinstance(value, str) and value.strip().lower() in _BOOLS:
            value = _BOOLS[value.strip().lower()]
        if not isinstance(value, bool):
            raise ConfigError(f"memory in {source} must be true or false, not {value!r}")
        return value
    if name == "port":
        if isinstance(value, str) and re.fullmatch(r"[0-9]{1,5}", value.strip()):
            value = int(value)
        if type(value) is not int or not 0 <= value <= 65535:
            raise ConfigError(f"port in {source} must be a number from 0 to 65535, not {value!r}")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{name} in {source} must be a string, not {value!r}")
    if name.startswith("tls_") and not Path(value).is_file():
        raise ConfigError(f"{name} in {source}: no file {value}")
    if name == "log_format" and value not in LOG_FORMATS:
        raise ConfigError(f"log_format in {source} must be 'text' or 'json', not {value!r}")
    if name == "eviction" and value not in ("lru", "lfu"):
        raise ConfigError(f"eviction in {source} must be 'lru' or 'lfu', not {value!r}")
    if name == "loop" and value not in LOOPS:
        raise ConfigError(f"loop in {source} must be auto, uvloop or asyncio, not {value!r}")
    if name == "log_level" and not isinstance(logging.getLevelName(value.upper()), int):
        raise ConfigError(f"log_level in {source} must be debug, info, warning or error")
    if name == "host":
        return _host(value, source)
    if name == "advertise":
        return _address(value, f"advertise in {source}")
    return value


def _from_file(path: str) -> dict[str, Any]:
    try:
        with Path(path).open("rb") as file:
            table = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the config file {path} is not valid TOML: {exc}") from None
    settings = {}
    for key, value in table.items():
        name = _current(key.replace("-", "_"))
        if name not in _FIELDS:
            raise ConfigError(f"unknown setting {key!r} in {path}")
        settings[name] = _coerce(name, value, path)
    return settings


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    settings = {}
    for name in (*_FIELDS, *_RENAMED):
        variable = ENV_PREFIX + name.upper()
        if environ.get(variable):  # set and not empty
            current = _current(name)
            if name == current or current not in settings:  # the name now wins
                settings[current] = _coerce(current, environ[variable], variable)
    return settings


def load_config(
    options: Mapping[str, Any],
    environ: Mapping[str, str],
    config_file: str | None = None,
) -> ServeConfig:
    """Merge the settings: ``options`` (command line; None or empty means not
    given) over ``environ`` over the config file (``config_file``, else
    ``PYDDS_CONFIG``) over the defaults.

    Example::

        config = load_config({"port": 7500}, os.environ)

    Raises:
        ConfigError: an unknown setting, a bad value, or an unreadable file.
    """
    merged: dict[str, Any] = {}
    path = config_file or environ.get(ENV_PREFIX + "CONFIG")
    if path:
        merged.update(_from_file(path))
    merged.update(_from_env(environ))
    for given, value in options.items():
        if given not in _FIELDS and given not in _RENAMED:
            raise ConfigError(f"unknown setting {given!r}")
        if value is None or ((given in _LISTS or given in ("stale_after", "expire")) and not value):
            continue
        name = _current(given)
        merged[name] = _coerce(name, value, "the command line")
    return ServeConfig(**merged)
