"""The aiohttp application of a node process (``pydds serve``).

One factory builds the app; the node lives in the app's ``cleanup_ctx``, so it is
started before the first request and closed when the app shuts down. Today the app
serves the health endpoint; the link endpoint and the HTTP API join it with the
cluster and node-process work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from . import __version__
from .node import Node

__all__ = ["NODE", "make_app"]

NODE = web.AppKey("node", Node)


def make_app(node: Node) -> web.Application:
    """Build the aiohttp application that serves ``node``.

    Example::

        app = make_app(pydds.Node("n1"))
        web.run_app(app, host="127.0.0.1", port=7400)
    """
    app = web.Application()

    async def node_life(app: web.Application) -> AsyncIterator[None]:
        app[NODE] = node
        yield
        await node.close()

    app.cleanup_ctx.append(node_life)
    app.router.add_get("/healthz", healthz)
    return app


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: 200 once the node serves."""
    node = request.app[NODE]
    if node.closed:
        return web.json_response({"status": "closed", "node": node.name}, status=503)
    return web.json_response(
        {"status": "ok", "node": node.name, "version": __version__, "databases": node.databases()}
    )
