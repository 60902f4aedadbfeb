"""Links over aiohttp WebSockets: the only aiohttp code in ``net/``.

A node listening at ``ws://host:port`` serves links at the path ``/v1/link``; each
WebSocket binary message is one frame. Addresses are ``host:port``, ``ws://host:port``
or ``wss://host:port``. ``resolve`` turns a host name into one address per IP
address (``wss://10.0.0.5:7400#pydds.internal`` over TLS: the certificate is
checked against the name after ``#``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp
from aiohttp import WSMsgType, web

from ..errors import LinkClosed
from .transport import Accept, Link

__all__ = ["LINK_PATH", "WebSocketLink", "WebSocketTransport", "normalize"]

LINK_PATH = "/v1/link"


def normalize(address: str, scheme: str = "ws") -> str:
    """``host:port`` -> ``ws://host:port`` (``scheme`` says which); ``ws://`` and
    ``wss://`` stay as they are.

    Raises:
        ValueError: not an address with a host and a port.
    """
    if "://" not in address:
        address = f"{scheme}://{address}"
    parts = urlsplit(address)
    if parts.scheme not in ("ws", "wss") or not parts.hostname or parts.port is None:
        raise ValueError(f"not a node address: {address!r} (use host:port or ws://host:port)")
    return f"{parts.scheme}://{parts.netloc}"


def _unreachable(exc: aiohttp.ClientConnectorError) -> str:
    """Why nothing answered at a host and port, in words (aiohttp's own message
    names its connector settings, such as ``ssl:default``). TLS failures keep theirs."""
    if isinstance(exc, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError)):
        return str(exc)
    where = f"{exc.host}:{exc.port}"
    cause = exc.os_error
    if isinstance(cause, ConnectionRefusedError):
        return f"nothing listens at {where} (the node is not up yet, or listens elsewhere)"
    reason = cause.strerror or str(cause) or type(cause).__name__
    return f"{where} is unreachable ({reason})"


class WebSocketLink:
    """One link over a WebSocket (either end)."""

    def __init__(self, ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws

    async def send(self, frame: bytes) -> None:
        if self._ws.closed:
            raise LinkClosed("websocket is closed")
        try:
            await self._ws.send_bytes(frame)
        except (ConnectionError, RuntimeError) as exc:
            raise LinkClosed(f"websocket send failed: {exc}") from None

    async def receive(self) -> bytes:
        message = await self._ws.receive()
        if message.type is WSMsgType.BINARY:
            data: bytes = message.data
            return data
        if message.type is WSMsgType.TEXT:
            await self._ws.close(code=1003, message=b"pydds links carry binary frames")
            raise LinkClosed("text message on a pydds link")
        raise LinkClosed(f"websocket closed ({message.type.name}: {message.extra})")

    async def close(self) -> None:
        if not self._ws.closed:
            await self._ws.close()


class WebSocketTransport:
    """Listens with an aiohttp server and dials with one client session.

    ``app``, when set before ``listen``, is the application to serve the link route
    in (the node process's app, with its other routes); otherwise the transport
    makes one of its own. ``runner`` makes the runner that serves it, called as
    ``web.AppRunner`` is (the node process's adds time limits to connections).
    """

    def __init__(
        self,
        *,
        app: web.Application | None = None,
        max_frame_bytes: int = 32 * 1024 * 1024,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        runner: Callable[..., web.AppRunner] = web.AppRunner,
    ) -> None:
        self.app = app  # the application that serves the link route
        self.runner = runner  # makes the runner of the app
        self.server_ssl = server_ssl  # serve wss (and https) with this context
        self.client_ssl = client_ssl  # verify wss peers with this (None: system CAs)
        self.max_frame_bytes = max_frame_bytes  # larger WebSocket messages close the link
        self.bound: str | None = None  # the address the server is bound to, once listening
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None

    async def listen(self, address: str, accept: Accept) -> str:
        url = urlsplit(normalize(address))
        assert url.hostname is not None
        assert url.port is not None

        async def link_handler(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse(max_msg_size=self.max_frame_bytes)
            await ws.prepare(request)
            await accept(WebSocketLink(ws))
            return ws

        app = self.app if self.app is not None else web.Application()
        app.router.add_get(LINK_PATH, link_handler)
        # Links are closed (with a Close) before the transport; what is left is cut.
        self._runner = self.runner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, url.hostname, url.port, ssl_context=self.server_ssl)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        scheme = "wss" if self.server_ssl is not None else "ws"
        if ":" in host:  # an IPv6 address: in brackets, as in a URL
            host = f"[{host}]"
        self.bound = f"{scheme}://{host}:{port}"
        return self.bound

    def _scheme(self) -> str:
        # A node set up for TLS dials a bare host:port over TLS (as it serves).
        tls = self.client_ssl is not None or self.server_ssl is not None
        return "wss" if tls else "ws"

    async def resolve(self, address: str) -> list[str]:
        try:
            url = normalize(address, self._scheme())
        except ValueError:
            return [address]  # connect says what is wrong with it
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
        assert host is not None
        try:
            ipaddress.ip_address(host)
            return [url]  # one place already
        except ValueError:
            pass
        try:
            found = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError:
            return [url]  # connect says why
        # Over TLS the name follows a "#": the peer is dialed at the IP address and
        # its certificate checked against the name (``connect``).
        name = f"#{host}" if parts.scheme == "wss" else ""
        out: list[str] = []
        for family, _, _, _, sockaddr in found:
            ip = str(sockaddr[0])
            netloc = f"[{ip}]:{port}" if family == socket.AF_INET6 else f"{ip}:{port}"
            candidate = f"{parts.scheme}://{netloc}{name}"
            if candidate not in out:
                out.append(candidate)
        return out or [url]

    async def connect(self, address: str) -> Link:
        if self._client is None:
            self._client = aiohttp.ClientSession()
        try:
            address, _, tls_name = address.partition("#")  # from ``resolve``: the name
            url = normalize(address, self._scheme())
            tls = url.startswith("wss://")
            name = tls_name if tls and tls_name else None  # verify the name, not the IP
            ws = await self._client.ws_connect(
                url + LINK_PATH,
                max_msg_size=self.max_frame_bytes,
                ssl=self.client_ssl if tls and self.client_ssl else True,
                server_hostname=name,
            )
        except aiohttp.ClientConnectorError as exc:
            raise LinkClosed(f"cannot link to {address}: {_unreachable(exc)}") from None
        except (aiohttp.ClientError, OSError, ValueError, ssl.SSLError) as exc:
            raise LinkClosed(f"cannot link to {address}: {exc}") from None
        return WebSocketLink(ws)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._client is not None:
            await self._client.close()
            self._client = None
