"""The aiohttp application of a node process (``pydds serve``).

One factory builds the app: the JSON HTTP API (``http_api.py``), ``GET /metrics``
(``metrics.py``), the dashboard at ``/ui/`` (``dashboard.py``) and, once the node
listens, the link route ``/v1/link`` for peers and clients, all on one port. The
node's life is the app's ``cleanup_ctx``: it is started before the first request
and closed when the app shuts down.

``NodeRunner`` serves the app as ``web.AppRunner`` does, with two changes in how
aiohttp reads requests, before any route or middleware sees them:

- Time limits. A connection is closed once it has gone ``idle_timeout`` seconds
  without a request (from its opening, or from its last answer: aiohttp's
  keep-alive timeout), and once a request's line and headers have taken more than
  ``header_timeout`` seconds from their first byte. Without them, a client that
  sends half a header holds its socket and buffers for as long as it likes, and a
  thousand such clients hold a thousand.
- aiohttp's own errors (a bad request line, a bad or too long header) are answered
  in the API's JSON error shape, ``{"error": "bad_request", "message": ...}``, not
  in plain text, and logged at debug level without a traceback: anyone can send
  garbage, and it is not the node's error.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader

from .dashboard import add_dashboard
from .http_api import NODE, add_routes, auth_middleware, error, error_middleware
from .metrics import metrics_handler, registry_for
from .node import Node
from .openapi import OPENAPI_PATH, openapi_handler

__all__ = ["HEADER_TIMEOUT", "IDLE_TIMEOUT", "NODE", "NodeRunner", "make_app", "max_line_size"]

#: Bytes a request body may have beyond the node's ``max_value_bytes``.
BODY_SLACK = 64 * 1024
#: Bytes of a request line beyond its key: method, database name, query, version.
LINE_SLACK = 4096
#: Bytes a key's character takes at most in a path: 4 UTF-8 bytes, each ``%XX``.
_ESCAPED_CHAR = 12


def max_line_size(node: Node) -> int:
    """Bytes a request line may have on ``node``: enough for its longest key."""
    return max(8190, node.limits.max_key_length * _ESCAPED_CHAR + LINE_SLACK)


def make_app(node: Node) -> web.Application:
    """Build the aiohttp application that serves ``node``.

    Request bodies larger than ``node.limits.max_value_bytes`` (plus a little
    slack) get a 413 ``too_large`` error without being read. A request line may be
    long enough for any valid key percent-encoded (``max_key_length`` characters of
    up to 12 bytes each, ``%F0%9F%98%80``), beyond aiohttp's default 8190 bytes.

    Example::

        app = make_app(pydds.Node("n1"))
        web.run_app(app, host="127.0.0.1", port=7400)
    """
    app = web.Application(
        middlewares=[error_middleware, auth_middleware],
        client_max_size=node.limits.max_value_bytes + BODY_SLACK,
        handler_args={"max_line_size": max_line_size(node)},
    )

    async def node_life(app: web.Application) -> AsyncIterator[None]:
        app[NODE] = node
        await node.start()  # idempotent: a node serving its own links started already
        yield
        await node.close()

    app.cleanup_ctx.append(node_life)
    add_routes(app)
    add_dashboard(app)
    app.router.add_get("/metrics", metrics_handler(registry_for(node)))
    app.router.add_get(OPENAPI_PATH, openapi_handler)
    return app


#: Seconds a connection may go without a request (from its opening or its last answer).
IDLE_TIMEOUT = 15.0
#: Seconds a request's line and headers may take, from their first byte.
HEADER_TIMEOUT = 10.0
#: Characters of aiohttp's message kept in an error's message.
_MESSAGE_CHARS = 500

_Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
_Factory = Callable[
    [
        RawRequestMessage,
        StreamReader,
        web.RequestHandler,
        AbstractStreamWriter,
        "asyncio.Task[None]",
    ],
    web.BaseRequest,
]

#: The JSON error code of each status aiohttp answers by itself.
_CODES = {400: "bad_request", 500: "internal_error", 504: "timeout"}


class _Connection(web.RequestHandler):
    """One HTTP connection: aiohttp's, with a time limit on request heads and its
    own errors in JSON."""

    def __init__(self, manager: web.Server, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._began = 0  # requests this connection began (their heads were read)
        self._pending = 0  # requests begun and not yet answered
        self._idle_timer: asyncio.TimerHandle | None = None
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # The first request must come within the idle timeout (aiohttp counts only
        # from an answer on, in some versions).
        if self.keepalive_timeout > 0:
            self._idle_timer = self._close_later(self.keepalive_timeout)

    def data_received(self, data: bytes) -> None:
        if data and self._pending == 0 and self._head_timer is None:
            self._head_timer = self._close_later(self._header_timeout)  # a head begins
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        for timer in (self._idle_timer, self._head_timer):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def began(self) -> None:
        """A request's head was read."""
        self._began += 1
        self._pending += 1
        for timer in (self._idle_timer, self._head_timer):
            if timer is not None:
                timer.cancel()
        self._idle_timer = self._head_timer = None

    def answered(self) -> None:
        """A request's handler returned."""
        self._pending -= 1

    def _close_later(self, seconds: float) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(seconds, self._close_unless, self._began)

    def _close_unless(self, began: int) -> None:
        """Close the connection if no request began since ``began`` requests had."""
        if self._began == began:
            self.log_debug("closing a connection that sent no complete request in time")
            self.force_close()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's answer to a request it could not parse or handle, in JSON."""
        if status >= 500:
            self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
        else:
            self.log_debug("Bad request from %s: %s", request.remote, message or exc)
        if request.writer.output_size > 0:  # an answer began: the connection is broken
            raise ConnectionError("an answer was sent already: no room for the error")
        if status < 500 and message:
            text = message.strip()[:_MESSAGE_CHARS]
        else:
            text = HTTPStatus(status).phrase
        response = error(status, _CODES.get(status, "http_error"), text)
        response.force_close()
        return response


class _NodeServer(web.Server):
    """aiohttp's server of ``made``'s app, making ``_Connection``s."""

    def __init__(self, made: web.Server, *, header_timeout: float, idle_timeout: float) -> None:
        # made: the server AppRunner made (with the app's handler_args).
        super().__init__(
            self._handle,
            request_factory=self._request,
            handler_cancellation=made.handler_cancellation,
            loop=made._loop,
            **{**made._kwargs, "keepalive_timeout": idle_timeout},
        )
        self._app_handler: _Handler = made.request_handler
        self._app_request: _Factory = made.request_factory
        self._header_timeout = header_timeout

    def __call__(self) -> web.RequestHandler:
        return _Connection(
            self, loop=self._loop, header_timeout=self._header_timeout, **self._kwargs
        )

    def _request(
        self,
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: web.RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        if isinstance(protocol, _Connection):
            protocol.began()
        return self._app_request(message, payload, protocol, writer, task)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            return await self._app_handler(request)
        finally:
            if isinstance(request.protocol, _Connection):
                request.protocol.answered()


class NodeRunner(web.AppRunner):
    """``web.AppRunner`` with time limits on idle connections and request heads, and
    aiohttp's own errors answered in JSON (see the module's docstring).

    Args:
        app: the application to serve.
        idle_timeout: seconds a connection may go without a request.
        header_timeout: seconds a request's line and headers may take from their first
            byte.
        kwargs: as for ``web.AppRunner``.
    """

    def __init__(
        self,
        app: web.Application,
        *,
        idle_timeout: float = IDLE_TIMEOUT,
        header_timeout: float = HEADER_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        self.idle_timeout = idle_timeout
        self.header_timeout = header_timeout

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return _NodeServer(made, header_timeout=self.header_timeout, idle_timeout=self.idle_timeout)
