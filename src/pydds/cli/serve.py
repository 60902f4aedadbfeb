"""``pydds serve``: run a node process."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import os
import signal
import ssl
import sys
from collections.abc import Sequence
from typing import Any

import click

from ..collector import tune_gc
from ..errors import ModuleError
from ..logs import configure_logging
from ..loops import resolve_loop, run
from ..modules import Module, load_module
from ..modules.persist import Persistence
from ..net.auth import RIGHTS, ClientToken, Credentials
from ..net.ws import LINK_PATH, WebSocketTransport
from ..node import Node
from ..serve_config import ConfigError, ServeConfig, load_config
from ..server import NodeRunner, make_app

__all__ = ["serve", "serve_command"]

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
    )
    for database, seconds in config.expire:
        node.database(database, expire=seconds)
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


@click.command("serve")
@click.option("--config", "config_file", metavar="FILE", help="a TOML file of settings")
@click.option("--host", default=None, help="the address to bind  [default: 127.0.0.1]")
@click.option("--port", default=None, help="0 picks a free port  [default: 7400]")
@click.option("--join", multiple=True, metavar="ADDR", help="a node to join (repeatable)")
@click.option("--advertise", default=None, metavar="ADDR", help="the address peers should dial")
@click.option("--name", default=None, help="the node's name  [default: random]")
@click.option("--data-dir", default=None, help="where data is kept  [default: ./pydds-data]")
@click.option("--memory", is_flag=True, default=None, help="keep data in memory only")
@click.option(
    "--module", "modules", multiple=True, metavar="SPEC", help="package.module:Class?opt=v"
)
@click.option(
    "--secret", "secrets", multiple=True, metavar="SECRET", help="a cluster secret (repeatable)"
)
@click.option(
    "--token", "tokens", multiple=True, metavar="SPEC", help="a client token id:secret:dbs:rights"
)
@click.option("--tls-cert", default=None, metavar="PEM", help="serve https and wss")
@click.option("--tls-key", default=None, metavar="PEM", help="the certificate's key")
@click.option("--tls-ca", default=None, metavar="PEM", help="CA certificates peers must chain to")
@click.option("--log-level", default=None, help="debug, info, warning or error  [default: info]")
@click.option(
    "--log-format", default=None, type=click.Choice(["text", "json"]), help="[default: text]"
)
@click.option(
    "--expire",
    multiple=True,
    metavar="DB=SECONDS",
    help="a database's expiry: idle seconds before a key goes stale here (repeatable)",
)
@click.option(
    "--loop",
    default=None,
    type=click.Choice(["auto", "uvloop", "asyncio"]),
    help="the event loop; auto is uvloop if installed  [default: auto]",
)
@click.option(
    "--http-idle-timeout",
    default=None,
    metavar="SECONDS",
    help="close an HTTP connection this long without a request  [default: 15]",
)
@click.option(
    "--http-header-timeout",
    default=None,
    metavar="SECONDS",
    help="close one whose request line and headers take longer  [default: 10]",
)
def serve_command(config_file: str | None, **options: Any) -> None:
    """Run a node process.

    Settings come from the options, then PYDDS_* environment variables (PYDDS_PORT,
    PYDDS_JOIN=a,b, ...), then the --config file (or PYDDS_CONFIG), then the
    defaults. Write IPv6 addresses in brackets: --join [::1]:7400. SIGTERM or
    SIGINT stops the node gracefully (exit code 0).
    """
    try:
        config = load_config(options, os.environ, config_file)
        if config.tls_cert and not config.tls_key:
            raise ConfigError("--tls-cert needs --tls-key")
        protected(config, credentials_of(config))
        resolve_loop(config.loop)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        modules = [load_module(spec) for spec in config.modules]
    except ModuleError as exc:
        raise click.UsageError(str(exc)) from None
    if not config.memory and not any(isinstance(m, Persistence) for m in modules):
        modules.insert(0, Persistence(path=config.data_dir))  # the embedded default
    configure_logging(config.log_level, config.log_format)
    try:
        run(serve(config, modules), loop=config.loop)
    except ModuleError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
