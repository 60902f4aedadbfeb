"""The ``pydds`` command: ``pydds serve`` runs a node process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from aiohttp import web

from . import __version__
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
    serve.add_argument("--log-level", default="INFO")
    return parser


async def serve(host: str, port: int, name: str | None) -> None:
    """Run a node on ``host:port`` until SIGINT or SIGTERM."""
    node = Node(name)
    runner = web.AppRunner(make_app(node), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(
        f"pydds node {node.name} serving on http://{bound[0]}:{bound[1]} "
        "(in memory: persistence and links come with later releases)",
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
    logging.getLogger("pydds").info("node %s stopped", node.name)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pydds`` command."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    if args.command == "serve":
        asyncio.run(serve(args.host, args.port, args.name))
    return 0
