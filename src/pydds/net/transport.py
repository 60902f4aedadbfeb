"""What a node needs of a network: links that carry frames, and a way to make them.

Two implementations ship: ``ws.py`` (aiohttp WebSockets) and ``memory.py`` (an
in-memory network for tests). Frames are bytes; a link keeps their order.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Protocol

__all__ = ["Accept", "Link", "Transport"]


class Link(Protocol):
    """One open link to a peer."""

    async def send(self, frame: bytes) -> None:
        """Send a frame (waits while the peer's buffer is full).

        Raises:
            LinkClosed: the link is closed.
        """
        ...

    async def receive(self) -> bytes:
        """The next frame from the peer.

        Raises:
            LinkClosed: the link closed (by either end, or lost).
        """
        ...

    async def close(self) -> None:
        """Close the link (idempotent)."""
        ...


#: Called with each link a listening transport accepts; runs for the link's life.
Accept = Callable[[Link], Coroutine[Any, Any, None]]


class Transport(Protocol):
    """Makes links: accepts them at an address, opens them to addresses."""

    async def listen(self, address: str, accept: Accept) -> str:
        """Accept links at ``address``; return the address peers should dial."""
        ...

    async def resolve(self, address: str) -> list[str]:
        """The addresses to dial for ``address``, one after another: one for each
        network address its host name stands for (a DNS round robin, a Kubernetes
        headless service), in the resolver's order; ``address`` alone when it names
        one place (or does not resolve: ``connect`` then says why)."""
        ...

    async def connect(self, address: str) -> Link:
        """Open a link to ``address``.

        Raises:
            LinkClosed: nobody accepts links there.
        """
        ...

    async def close(self) -> None:
        """Stop accepting links."""
        ...
