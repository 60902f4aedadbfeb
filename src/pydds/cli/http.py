"""A small blocking client of a node's HTTP API, for the command line.

It talks to one node (``--node``, ``host:port`` or ``http://host:port``, an IPv6
host in brackets: ``[::1]:7400``), ignores proxy settings (a node is usually on
this machine or this network), and turns every failure into ``ApiError`` or
``Unreachable``; an address that is none is a ``BadAddress``.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import click

__all__ = ["ApiError", "BadAddress", "NodeApi", "Unreachable", "key_path"]


class BadAddress(click.BadParameter, ValueError):
    """``--node`` is not a node's address: a usage error (exit code 2, a message
    saying how to write one) where a command meets it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, param_hint="--node")


class Unreachable(Exception):
    """The node did not answer (refused, timed out, or not an HTTP server)."""


class ApiError(Exception):
    """The node answered with an error (``status``, ``code``, ``message``)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def key_path(database: str, key: str) -> str:
    """The path of a key: every character of the key percent-encoded, ``/`` too."""
    return f"/v1/databases/{quote(database, safe='')}/keys/{quote(key, safe='')}"


class NodeApi:
    """Requests to one node's HTTP API.

    Example::

        api = NodeApi("127.0.0.1:7400")
        api.call("PUT", key_path("cache", "k"), {"a": 1})
        api.call("GET", key_path("cache", "k"))   # {'a': 1}

    Raises:
        BadAddress: ``node`` is not an address (an IPv6 host not in brackets, as
            ``::1:7400``, is none: which part is the port?).
    """

    def __init__(
        self,
        node: str,
        *,
        timeout: float = 30.0,
        token: str | None = None,
        ca: str | None = None,
    ) -> None:
        url = node if "://" in node else f"http://{node}"
        self.base = url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
        self.base = self.base.rstrip("/")
        try:
            parts = urlsplit(self.base)
            port = parts.port  # raises ValueError when it is not a port
            valid = parts.scheme in ("http", "https") and bool(parts.hostname) and port != 0
        except ValueError:
            valid = False
        if not valid:
            raise BadAddress(
                f"not a node address: {node!r} (use host:port or http://host:port, an IPv6 "
                "host in brackets: [::1]:7400)"
            )
        self.timeout = timeout  # seconds to connect and for each read
        self.token = token  # sent as a bearer token when given
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
        if ca is not None:
            context = ssl.create_default_context(cafile=ca)
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self._opener = urllib.request.build_opener(*handlers)

    def _open(
        self, method: str, path: str, body: Any, query: Mapping[str, str] | None
    ) -> Any:  # an http.client.HTTPResponse
        url = self.base + path + (f"?{urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token is not None:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            return self._opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                answer = json.loads(raw)
                raise ApiError(exc.code, answer["error"], answer["message"]) from None
            except (ValueError, KeyError, TypeError):
                raise ApiError(exc.code, "http_error", raw.decode(errors="replace")) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unreachable(
                f"cannot reach the node at {self.base}: {reason} (is `pydds serve` running "
                "there? set --node or PYDDS_NODE)"
            ) from None

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, str] | None = None,
    ) -> Any:
        """One request; the answer's JSON.

        Raises:
            ApiError: the node answered with an error.
            Unreachable: the node did not answer.
        """
        with self._open(method, path, body, query) as response:
            try:
                return json.loads(response.read())
            except ValueError:
                raise Unreachable(f"{self.base} answered something that is not JSON") from None

    def stream(
        self,
        path: str,
        query: Mapping[str, str] | None = None,
        on_open: Callable[[], None] | None = None,
    ) -> Iterator[Any]:
        """The JSON ``data`` of each Server-Sent Event at ``path``, as they come;
        ``on_open`` is called once the node has answered (events from then on are
        in the stream)."""
        with self._open("GET", path, None, query) as response:
            if on_open is not None:
                on_open()
            data: list[str] = []
            while True:
                line = response.readline()
                if not line:
                    return  # the node closed the stream
                text = line.decode().rstrip("\r\n")
                if not text:
                    if data:
                        yield json.loads("\n".join(data))
                        data = []
                elif text.startswith("data:"):
                    data.append(text[5:].lstrip(" "))
