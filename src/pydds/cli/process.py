"""The node process behind ``pydds serve``: settings in, a node serving until a
signal, an exit code out (the codes are listed in docs/http.md).

Every start-up error is one line on stderr (``error: ...``), never a traceback, and
nothing is created (no data directory) before the node's port is known to be free.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import logging
import os
import signal
import socket
import ssl
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from ..collector import tune_gc
from ..config import Limits
from ..errors import ModuleError, PyddsError
from ..logs import configure_logging
from ..loops import resolve_loop, run
from ..modules import Module, load_module
from ..modules.persist import Persistence
from ..net.auth import RIGHTS, ClientToken, Credentials
from ..net.ws import LINK_PATH, WebSocketTransport
from ..node import Node
from ..serve_config import ConfigError, ServeConfig, load_config
from ..server import NodeRunner, make_app

__all__ = ["credentials_of", "host_port", "protected", "serve", "start", "tls_contexts"]

log = logging.getLogger("pydds")


async def serve(
    config: ServeConfig,
    modules: Sequence[Module] = (),
    *,
    stop: asyncio.Event | None = None,
) -> None:
    """Run a node as ``config`` says, with ``modules``, until SIGINT or SIGTERM (or
    ``stop`` is set).

    One aiohttp application serves the HTTP API, ``/metrics`` and the link route
    (``/v1/link``) on one port; on a signal the node closes its links and stops,
    and the coroutine returns.
    """
    server_ssl, client_ssl = tls_contexts(config)
    runner = functools.partial(
        NodeRunner,
        idle_timeout=config.http_idle_timeout,
        header_timeout=config.http_header_timeout,
    )
    transport = WebSocketTransport(server_ssl=server_ssl, client_ssl=client_ssl, runner=runner)
    node = Node(
        config.name,
        listen=host_port(config.host, config.port),
        advertise=config.advertise,
        join=config.join,
        transport=transport,
        modules=modules,
        credentials=credentials_of(config),
        limits=Limits(
            max_memory=config.max_memory,
            eviction=config.eviction,
            tombstone_horizon=config.tombstone_horizon,
        ),
    )
    for database, seconds in config.stale_after:
        node.database(database, stale_after=seconds)
    transport.app = make_app(node)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with node:
            # What exists now (the code, and the keys restored from disk) lives as
            # long as the process: out of the collector's way, a full collection
            # walks only what came after (41 ms -> 0 with 100,000 restored keys);
            # and a write's short-lived objects die before any collection.
            tune_gc()
            bound = transport.bound or node.address or ""
            http = "http" + bound.removeprefix("ws")  # ws -> http, wss -> https
            advertised = f"; advertised as {node.address}" if node.address != bound else ""
            loaded = ", ".join(m.name for m in modules) or "none"
            stores = [m for m in modules if isinstance(m, Persistence)]
            data = f"data in {stores[0].path}" if stores else "data in memory only"
            print(
                f"pydds node {node.name} serving on {http} (links at {bound}{LINK_PATH}"
                f"{advertised}; {data}; modules: {loaded}; loop: {loop_kind(loop)})",
                flush=True,
            )
            await stop.wait()
            log.info("node %s shutting down", node.name)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    log.info("node %s stopped", node.name)


def host_port(host: str, port: int) -> str:
    """``host:port``, an IPv6 host in brackets (``[::1]:7400``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def loop_kind(loop: asyncio.AbstractEventLoop) -> str:
    """``"uvloop"`` or ``"asyncio"``: which event loop runs the node."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def credentials_of(config: ServeConfig) -> Credentials:
    """The node's credentials from its settings.

    Raises:
        ConfigError: a malformed token or a secret too short.
    """
    try:
        tokens = [
            ClientToken.parse(t) if isinstance(t, str) else _token_table(t) for t in config.tokens
        ]
        return Credentials(secrets=config.secrets, tokens=tokens)
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from None


def _token_table(table: dict[str, Any]) -> ClientToken:
    databases = table.get("databases")
    return ClientToken(
        table["id"],
        table["secret"],
        None if databases in (None, "*") else frozenset(databases),
        frozenset(table.get("rights", RIGHTS)),
    )


def tls_contexts(config: ServeConfig) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    """The TLS contexts to serve with and to verify peers with (None, None: no TLS)."""
    server = None
    if config.tls_cert:
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.load_cert_chain(config.tls_cert, config.tls_key)
    client = ssl.create_default_context(cafile=config.tls_ca) if config.tls_ca else None
    return server, client


def protected(config: ServeConfig, credentials: Credentials) -> None:
    """Refuse to serve beyond this machine without credentials (as Redis's protected
    mode does).

    Raises:
        ConfigError: a non-loopback bind with no secret and no token.
    """
    if credentials.enabled or config.host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(config.host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(
            f"refusing to serve on {config.host} without credentials: anyone who reaches "
            "it could read and write everything. Set a cluster secret (--secret or "
            "PYDDS_SECRETS) and client tokens (--token ID:SECRET:DATABASES:RIGHTS), or "
            "bind 127.0.0.1"
        )


#: Exit codes of ``pydds serve`` (docs/http.md, "Exit codes").
EXIT_OK = 0  # stopped by SIGTERM or SIGINT
EXIT_FAILED = 1  # the node failed once started (a module, the store)
EXIT_SETTINGS = 2  # a bad option, environment variable, config file or TLS file
EXIT_LISTEN = 3  # the port is in use, or the address cannot be bound


def start(config_file: str | None, options: dict[str, Any]) -> int:
    """Run ``pydds serve`` with the command line's ``options``; return the exit code."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DeprecationWarning)
            config = load_config(options, os.environ, config_file)
        for warning in caught:  # a former setting name: said once, at start
            print(f"warning: {warning.message}", file=sys.stderr, flush=True)
        if config.tls_cert and not config.tls_key:
            raise ConfigError("--tls-cert needs --tls-key")
        protected(config, credentials_of(config))
        resolve_loop(config.loop)
        tls_contexts(config)  # certificate files that do not load, before anything
        modules = [load_module(spec) for spec in config.modules]
    except (ValueError, ModuleError) as exc:
        return _error(str(exc), EXIT_SETTINGS)
    try:
        _can_listen(config.host, config.port)
    except OSError as exc:
        return _error(_listen_error(config, exc), EXIT_LISTEN)
    if not config.memory and not any(isinstance(m, Persistence) for m in modules):
        modules.insert(0, Persistence(path=config.data_dir))  # the embedded default
    configure_logging(config.log_level, config.log_format)
    try:
        run(serve(config, modules), loop=config.loop)
    except (PyddsError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None and _listening_error(exc):
            return _error(_listen_error(config, exc), EXIT_LISTEN)  # taken meanwhile
        return _error(str(exc), EXIT_FAILED)
    return EXIT_OK


def _error(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def _can_listen(host: str, port: int) -> None:
    """Bind ``host:port`` for a moment (0 always can).

    Raises:
        OSError: it is in use, or not an address of this machine.
    """
    if port == 0:
        return
    for family, kind, proto, _, address in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    ):
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds
            probe.bind(address)


def _listening_error(exc: OSError) -> bool:
    return exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES)


def _listen_error(config: ServeConfig, exc: OSError) -> str:
    where = host_port(config.host, config.port)
    reason = exc.strerror or str(exc)
    if isinstance(exc, socket.gaierror):
        return f"cannot listen on {where}: the host {config.host!r} is unknown ({reason})"
    if exc.errno == errno.EADDRINUSE:
        return f"port {config.port} is in use ({where}): stop what uses it, or choose --port"
    return f"cannot listen on {where}: {reason}"
