"""Clusters of nodes on the in-memory network with a fake clock (the ``cluster``
fixture of conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pydds
from pydds.clock import FakeClock
from pydds.net import messages as m
from pydds.net.codec import PROTOCOL, decode_frame, encode_frame
from pydds.net.memory import MemoryNetwork, MemoryTransport


class Cluster:
    def __init__(self) -> None:
        self.network = MemoryNetwork()
        self.clock = FakeClock()
        self.nodes: list[pydds.Node] = []

    def node(
        self,
        name: str,
        join: list[str] | None = None,
        modules: list[pydds.Module] | None = None,
        **options: Any,
    ) -> pydds.Node:
        options.setdefault("clock", self.clock)
        node = pydds.Node(
            name,
            listen=f"mem://{name}",
            join=join or [],
            transport=self.network.transport(),
            modules=modules or [],
            **options,
        )
        self.nodes.append(node)
        return node

    async def start(self, name: str, join: list[str] | None = None) -> pydds.Node:
        node = self.node(name, join)
        await node.start()
        return node

    async def start_with(
        self, name: str, join: list[str] | None = None, *, modules: list[pydds.Module]
    ) -> pydds.Node:
        node = self.node(name, join, modules)
        await node.start()
        return node

    async def pair(
        self, modules: list[pydds.Module] | None = None
    ) -> tuple[pydds.Node, pydds.Node]:
        """Nodes a (with ``modules``) and b, b joined through a; once each lists both."""
        a = await self.start_with("a", modules=modules or [])
        b = await self.start("b", ["mem://a"])
        await until(lambda: len(names(a)) == 2 and len(names(b)) == 2)
        return a, b

    async def crash(self, node: pydds.Node) -> None:
        """Stop ``node`` as a crash would: its peers get no ``Leave``, only links
        that close (the network is healed afterwards: every cut is gone)."""
        transport = node.transport
        assert transport is not None
        assert isinstance(transport, MemoryTransport)  # its address, or its dialer name
        others = [n.address for n in self.nodes if n is not node and n.address]
        await self.network.partition([transport.address], others)
        await node.close()
        self.network.heal()


async def until(condition: Callable[[], bool], rounds: int = 500) -> None:
    """Let the tasks run until ``condition`` holds (bounded)."""
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


def names(node: pydds.Node) -> list[str]:
    return [m.name for m in node.members() if m.state in ("self", "alive")]


async def drain(link: pydds.Link) -> list[m.Message]:
    """Every message ``link`` receives until it closes (bounded)."""
    out: list[m.Message] = []
    for _ in range(100):
        try:
            out.extend(decode_frame(await link.receive()))
        except pydds.LinkClosed:
            return out
    raise AssertionError("the link did not close")


async def as_rogue_client(cluster: Cluster, address: str, *said: m.Message) -> list[m.Message]:
    """Link to ``address`` as a client named ``rogue``, say ``said`` at once, and
    return what the node sends until it closes the link (bounded: 1 s)."""
    rogue = await cluster.network.transport().connect(address)
    hello = m.Hello("rogue", "client", None, PROTOCOL)
    await rogue.send(encode_frame([hello, m.Proof(b""), *said]))
    return await asyncio.wait_for(drain(rogue), 1)
