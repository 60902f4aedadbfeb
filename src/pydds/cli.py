"""The ``pydds`` command: ``pydds serve`` runs a node process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from . import __version__
from .net.ws import LINK_PATH, WebSocketTransport
from .node import Node
from .server import make_app

__all__ = ["main"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7400


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pydds", description=__doc__)
    parser.add_argument("--version", action="version", version=f"pydds {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run a node process")
    serve.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    serve.add_argument("--name", default=None, help="the node's name (default: random)")
    serve.add_argument(
        "--join", action="append", default=[], metavar="ADDR", help="a node to join (repeatable)"
    )
    serve.add_argument("--log-level", default="INFO")
    return parser


async def serve(host: str, port: int, name: str | None, join: list[str]) -> None:
    """Run a node on ``host:port`` until SIGINT or SIGTERM.

    One aiohttp application serves the health endpoint and the link route
    (``/v1/link``) on that port.
    """
    transport = WebSocketTransport()
    node = Node(name, listen=f"{host}:{port}", join=join, transport=transport)
    transport.app = make_app(node)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with node:
        address = node.address or ""
        print(
            f"pydds node {node.name} serving on {address.replace('ws://', 'http://', 1)} "
            f"(links at {address}{LINK_PATH}; in memory: persistence comes with a later "
            "release)",
            flush=True,
        )
        await stop.wait()
    logging.getLogger("pydds").info("node %s stopped", node.name)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pydds`` command."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    if args.command == "serve":
        asyncio.run(serve(args.host, args.port, args.name, args.join))
    return 0
