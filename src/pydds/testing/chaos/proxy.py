"""The network: a proxy in front of each node, and the cuts, drops and delays between them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

from .processes import NodeProcess


def _socket_inodes(port: int) -> set[str]:
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            next(lines)
            for line in lines:
                parts = line.split()
                if int(parts[1].rsplit(":", 1)[1], 16) == port:
                    out.add(f"socket:[{parts[9]}]")
    return out


class Network:
    """The proxies and the faults between named endpoints."""

    def __init__(self) -> None:
        self.cut: set[frozenset[str]] = set()  # pairs with no link at all
        self.drop: set[tuple[str, str]] = set()  # (from, to): nothing passes that way
        self.delay: dict[frozenset[str], float] = {}  # seconds added per chunk
        self.owners: dict[int, str] = {}  # pid -> endpoint name
        self._conns: list[tuple[str, str, asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._servers: list[asyncio.Server] = []

    def owner(self, port: int) -> str:
        """The endpoint (node name, or "clients") that owns a local TCP port."""
        inodes = _socket_inodes(port)
        for pid, name in list(self.owners.items()):
            with contextlib.suppress(OSError):
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    with contextlib.suppress(OSError):
                        if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                            return name
        return "unknown"

    async def proxy(self, node: NodeProcess) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer_port = writer.get_extra_info("peername")[1]
            source = await asyncio.to_thread(self.owner, peer_port)
            if frozenset((source, node.name)) in self.cut:
                writer.close()
                return
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", node.port)
            except OSError:
                writer.close()
                return
            entry = (source, node.name, writer, up_writer)
            self._conns.append(entry)
            try:
                await asyncio.gather(
                    self._pipe(reader, up_writer, source, node.name),
                    self._pipe(up_reader, writer, node.name, source),
                )
            finally:
                with contextlib.suppress(ValueError):
                    self._conns.remove(entry)
                writer.close()
                up_writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", node.proxy_port)
        self._servers.append(server)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, src: str, dst: str
    ) -> None:
        """Forward one direction. A delay is latency only: each chunk is held until
        ``delay`` after it arrived, in order, while the next ones are read."""
        due: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()
        sender = asyncio.ensure_future(self._send_due(due, writer, src, dst))
        pair = frozenset((src, dst))
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if pair in self.cut:
                    break
                due.put_nowait((time.monotonic() + self.delay.get(pair, 0.0), data))
        due.put_nowait((0.0, None))
        with contextlib.suppress(ConnectionError, OSError):
            await sender
        writer.close()

    async def _send_due(
        self,
        due: asyncio.Queue[tuple[float, bytes | None]],
        writer: asyncio.StreamWriter,
        src: str,
        dst: str,
    ) -> None:
        """Write what is due, in order. While the direction is dropped, nothing passes
        and nothing is lost, as on a network that loses every packet one way: TCP
        keeps retrying, the receiving end hears nothing (and closes the link after its
        timeout), and what was held goes through if the link outlives the fault."""
        while True:
            at, data = await due.get()
            if data is None:
                return
            wait = at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            while (src, dst) in self.drop and not writer.is_closing():  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # polled: bounded by the fault's length
            writer.write(data)
            await writer.drain()

    def partition(self, *groups: set[str]) -> None:
        """Cut every pair of endpoints in different groups (and their open links)."""
        for i, a in enumerate(groups):
            for b in groups[i + 1 :]:
                for x in a:
                    for y in b:
                        self.cut.add(frozenset((x, y)))
        for src, dst, one, two in list(self._conns):
            if frozenset((src, dst)) in self.cut:
                one.close()
                two.close()

    def heal(self) -> None:
        self.cut.clear()
        self.drop.clear()
        self.delay.clear()

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for _, _, one, two in list(self._conns):
            one.close()
            two.close()
