"""The aiohttp application of a node process (``pydds serve``).

One factory builds the app: the JSON HTTP API (``http_api.py``), ``GET /metrics``
(``metrics.py``) and, once the node listens, the link route ``/v1/link`` for peers
and clients, all on one port. The node's life is the app's ``cleanup_ctx``: it is
started before the first request and closed when the app shuts down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from .http_api import NODE, add_routes, auth_middleware, error_middleware
from .metrics import metrics_handler, registry_for
from .node import Node
from .openapi import OPENAPI_PATH, openapi_handler

__all__ = ["NODE", "make_app"]

#: Bytes a request body may have beyond the node's ``max_value_bytes``.
BODY_SLACK = 64 * 1024


def make_app(node: Node) -> web.Application:
    """Build the aiohttp application that serves ``node``.

    Request bodies larger than ``node.limits.max_value_bytes`` (plus a little
    slack) get a 413 ``too_large`` error without being read.

    Example::

        app = make_app(pydds.Node("n1"))
        web.run_app(app, host="127.0.0.1", port=7400)
    """
    app = web.Application(
        middlewares=[error_middleware, auth_middleware],
        client_max_size=node.limits.max_value_bytes + BODY_SLACK,
    )

    async def node_life(app: web.Application) -> AsyncIterator[None]:
        app[NODE] = node
        await node.start()  # idempotent: a node serving its own links started already
        yield
        await node.close()

    app.cleanup_ctx.append(node_life)
    add_routes(app)
    app.router.add_get("/metrics", metrics_handler(registry_for(node)))
    app.router.add_get(OPENAPI_PATH, openapi_handler)
    return app
