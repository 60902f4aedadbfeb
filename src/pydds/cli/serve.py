"""``pydds serve``: run a node process."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import click

from ..errors import ModuleError
from ..logs import configure_logging
from ..modules import Module, load_module
from ..modules.persist import Persistence
from ..net.ws import LINK_PATH, WebSocketTransport
from ..node import Node
from ..serve_config import ConfigError, ServeConfig, load_config
from ..server import make_app

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
    transport = WebSocketTransport()
    node = Node(
        config.name,
        listen=f"{config.host}:{config.port}",
        advertise=config.advertise,
        join=config.join,
        transport=transport,
        modules=modules,
    )
    transport.app = make_app(node)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with node:
            bound = transport.bound or node.address or ""
            http = bound.replace("ws://", "http://", 1)
            advertised = f"; advertised as {node.address}" if node.address != bound else ""
            loaded = ", ".join(m.name for m in modules) or "none"
            stores = [m for m in modules if isinstance(m, Persistence)]
            data = f"data in {stores[0].path}" if stores else "data in memory only"
            print(
                f"pydds node {node.name} serving on {http} (links at {bound}{LINK_PATH}"
                f"{advertised}; {data}; modules: {loaded})",
                flush=True,
            )
            await stop.wait()
            log.info("node %s shutting down", node.name)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    log.info("node %s stopped", node.name)


@click.command("serve")
@click.option("--config", "config_file", metavar="FILE", help="a TOML file of settings")
@click.option("--host", default=None, help="the address to bind  [default: 127.0.0.1]")
@click.option("--port", type=int, default=None, help="0 picks a free port  [default: 7400]")
@click.option("--join", multiple=True, metavar="ADDR", help="a node to join (repeatable)")
@click.option("--advertise", default=None, metavar="ADDR", help="the address peers should dial")
@click.option("--name", default=None, help="the node's name  [default: random]")
@click.option("--data-dir", default=None, help="where data is kept  [default: ./pydds-data]")
@click.option("--memory", is_flag=True, default=None, help="keep data in memory only")
@click.option(
    "--module", "modules", multiple=True, metavar="SPEC", help="package.module:Class?opt=v"
)
@click.option("--log-level", default=None, help="debug, info, warning or error  [default: info]")
@click.option(
    "--log-format", default=None, type=click.Choice(["text", "json"]), help="[default: text]"
)
def serve_command(config_file: str | None, **options: Any) -> None:
    """Run a node process.

    Settings come from the options, then PYDDS_* environment variables (PYDDS_PORT,
    PYDDS_JOIN=a,b, ...), then the --config file (or PYDDS_CONFIG), then the
    defaults. SIGTERM or SIGINT stops the node gracefully (exit code 0).
    """
    try:
        config = load_config(options, os.environ, config_file)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        modules = [load_module(spec) for spec in config.modules]
    except ModuleError as exc:
        raise click.UsageError(str(exc)) from None
    if not config.memory and not any(isinstance(m, Persistence) for m in modules):
        modules.insert(0, Persistence(path=config.data_dir))  # the embedded default
    configure_logging(config.log_level, config.log_format)
    try:
        asyncio.run(serve(config, modules))
    except ModuleError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
