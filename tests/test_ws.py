"""Real sockets on 127.0.0.1: nodes linked by aiohttp WebSockets, and node processes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator

import pytest

import pydds
import pydds.net.ws
from pydds.net.ws import normalize

from .helpers import stop_process
from .helpers import until_events as until


def alive(node: pydds.Node) -> list[str]:
    return sorted(m.name for m in node.members() if m.state in ("self", "alive"))


@pytest.fixture
async def nodes() -> AsyncIterator[list[pydds.Node]]:
    made: list[pydds.Node] = []
    yield made
    for node in made:
        await node.close()


async def start(made: list[pydds.Node], name: str, join: list[str] | None = None) -> pydds.Node:
    node = pydds.Node(name, listen="127.0.0.1:0", join=join or [])
    made.append(node)
    await node.start()
    return node


def test_addresses() -> None:
    assert normalize("127.0.0.1:7400") == "ws://127.0.0.1:7400"
    assert normalize("wss://example.test:443") == "wss://example.test:443"
    for bad in ("127.0.0.1", "http://x:1", "ws://:5"):
        with pytest.raises(ValueError, match="not a node address"):
            normalize(bad)


async def test_three_nodes_over_websockets(nodes: list[pydds.Node]) -> None:
    a = await start(nodes, "a")
    assert a.address is not None
    assert re.fullmatch(r"ws://127\.0\.0\.1:\d+", a.address)
    b = await start(nodes, "b", [a.address])
    c = await start(nodes, "c", [a.address.removeprefix("ws://")])  # host:port works too
    await until(lambda: all(alive(n) == ["a", "b", "c"] for n in (a, b, c)), a, b, c)

    await a.database("db").set("k", {"v": 1})
    await until(lambda: "k" in b.database("db") and "k" in c.database("db"), b, c)
    assert not b.database("db").holds("k")
    assert await b.database("db").get("k") == {"v": 1}
    async with b.events(database="db") as at_b, c.events(database="db") as at_c:
        await a.database("db").update("k", {"w": 2})
        pushed, learned = await at_b.get(timeout=5), await at_c.get(timeout=5)
    assert pushed.delta is not None
    assert pushed.value() == {"v": 1, "w": 2}
    assert learned.delta is None

    got = asyncio.Event()
    c.on("ping", lambda event: got.set())
    await a.emit("ping", [1])
    await asyncio.wait_for(got.wait(), 5)


async def test_a_node_killed_and_restarted_catches_up(nodes: list[pydds.Node]) -> None:
    a = await start(nodes, "a")
    assert a.address is not None
    b = await start(nodes, "b", [a.address])
    c = await start(nodes, "c", [a.address])
    await until(lambda: alive(c) == ["a", "b", "c"], c)
    await c.close()
    await until(lambda: alive(a) == ["a", "b"], a)
    await a.database("db").set("while-c-was-away", 1)  # the others go on
    await until(lambda: "while-c-was-away" in b.database("db"), b)
    assert await b.database("db").get("while-c-was-away") == 1
    c2 = await start(nodes, "c", [b.address or ""])
    await until(lambda: "while-c-was-away" in c2.database("db"), c2)
    assert await c2.database("db").get("while-c-was-away") == 1


async def serve_process(procs: list[asyncio.subprocess.Process], name: str, *join: str) -> str:
    """Start ``pydds serve`` (in memory, a random port, its own process group) and
    return the address it links at."""
    args = [sys.executable, "-m", "pydds", "serve", "--port", "0", "--name", name, "--memory"]
    for address in join:
        args += ["--join", address]
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,  # its own process group, stopped as a whole
    )
    procs.append(proc)
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
    match = re.search(r"links at (ws://127\.0\.0\.1:\d+)", line)
    assert match, line
    return match.group(1)


async def test_serve_processes_form_a_cluster(nodes: list[pydds.Node]) -> None:
    procs: list[asyncio.subprocess.Process] = []

    serve = functools.partial(serve_process, procs)

    try:
        first = await serve("p1")
        await serve("p2", first)
        probe = await start(nodes, "probe", [first])
        await until(lambda: alive(probe) == ["p1", "p2", "probe"], probe, seconds=20)
        await probe.database("db").set("k", "from the probe")
        other = await start(nodes, "other", [first])
        await until(lambda: "k" in other.database("db"), other, seconds=20)
        assert await other.database("db").get("k") == "from the probe"
        os.killpg(procs[0].pid, signal.SIGKILL)  # p1 dies; the rest go on
        await until(lambda: "p1" not in alive(probe), probe, seconds=20)
        await other.database("db").set("k2", 2)
        await until(lambda: "k2" in probe.database("db"), probe, seconds=20)
    finally:
        for proc in procs:
            await stop_process(proc)


async def test_a_serve_process_stopped_by_sigterm_leaves_at_once(
    nodes: list[pydds.Node],
) -> None:
    procs: list[asyncio.subprocess.Process] = []

    serve = functools.partial(serve_process, procs)

    try:
        first = await serve("p1")
        await serve("p2", first)
        probe = await start(nodes, "probe", [first])
        await until(lambda: alive(probe) == ["p1", "p2", "probe"], probe, seconds=20)
        async with probe.events(kinds={"left", "unreachable"}) as seen:
            os.killpg(procs[1].pid, signal.SIGTERM)  # a graceful stop: p2 says goodbye
            event = await seen.get(timeout=5)
        assert (event.kind, event.member) == ("left", "p2")  # not suspected first
        assert [m.name for m in probe.members()] == ["probe", "p1"]
        await probe.database("db").set("k", 1, ack="all")  # p2 no longer counts
    finally:
        for proc in procs:
            await stop_process(proc)


class Proxy:
    """A TCP forwarder on 127.0.0.1 that counts the connections it carries."""

    def __init__(self) -> None:
        self.target = 0  # the port connections are forwarded to
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in self._writers:
                writer.close()
            await self._server.wait_closed()


async def test_advertise_names_the_address_peers_dial(nodes: list[pydds.Node]) -> None:
    proxy = Proxy()
    proxy_port = await proxy.start()
    try:
        a = pydds.Node("a", listen="127.0.0.1:0", advertise=f"127.0.0.1:{proxy_port}")
        nodes.append(a)
        await a.start()
        assert a.address == f"ws://127.0.0.1:{proxy_port}"
        bound = a.transport.bound  # type: ignore[attr-defined]
        proxy.target = int(bound.rsplit(":", 1)[1])
        b = await start(nodes, "b", [a.address])  # through the proxy
        c = await start(nodes, "c", [b.address or ""])  # learns a's address from b
        await until(lambda: all(alive(n) == ["a", "b", "c"] for n in (a, b, c)), a, b, c)
        assert proxy.connections == 2  # b and c both dialed the advertised address
        listed = {m.name: m.address for m in c.members()}
        assert listed["a"] == f"ws://127.0.0.1:{proxy_port}"
        await a.database("db").set("k", "through the proxy")
        await until(lambda: "k" in c.database("db"), c)
        assert await c.database("db").get("k") == "through the proxy"
    finally:
        await proxy.close()


async def test_a_peer_not_up_yet_is_said_plainly(
    nodes: list[pydds.Node], caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as probe:  # a free port that nothing listens at
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = pydds.net.ws.WebSocketTransport()
    try:
        with pytest.raises(pydds.LinkClosed) as info:
            await transport.connect(f"127.0.0.1:{port}")
    finally:
        await transport.close()  # its client session
    assert f"nothing listens at 127.0.0.1:{port} (the node is not up yet" in str(info.value)
    assert "ssl:" not in str(info.value)
    with caplog.at_level(logging.WARNING, logger="pydds"):
        await start(nodes, "early", [f"127.0.0.1:{port}"])  # starts anyway, and says why
    (warning,) = [r.getMessage() for r in caplog.records if "cannot join" in r.getMessage()]
    assert "not up yet" in warning
    assert "retried in the background" in warning
    assert "ssl:" not in warning


def _port_free_on(hosts: list[str]) -> int:
    """A port free on each of ``hosts`` (loopback addresses) at once."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((hosts[0], 0))
            port: int = probe.getsockname()[1]
        try:
            for host in hosts[1:]:
                with socket.socket() as other:
                    other.bind((host, port))
        except OSError:
            continue
        return port
    raise AssertionError("no port free on all of them")


async def test_a_name_of_several_addresses_is_tried_address_by_address(
    nodes: list[pydds.Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    # "pydds.test" stands for three addresses on one port, as a Kubernetes headless
    # service's name stands for its pods: b itself first, then nobody, then a.
    hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    port = _port_free_on(hosts)
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    asked: list[str] = []
    order = ["127.0.0.2", "127.0.0.3", "127.0.0.1"]

    async def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if host == "pydds.test":
            asked.append(host)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in order]
        return await real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    a = pydds.Node("a", listen=f"127.0.0.1:{port}")
    nodes.append(a)
    await a.start()
    b = pydds.Node("b", listen=f"127.0.0.2:{port}", join=[f"pydds.test:{port}"])
    nodes.append(b)
    await b.start()  # not itself, not the address nobody listens at: a
    assert alive(b) == ["a", "b"]
    assert asked == ["pydds.test"]
    # A redial resolves the name again: c, started later, finds them through it too.
    order = ["127.0.0.3", "127.0.0.1", "127.0.0.2"]
    c = pydds.Node("c", listen=f"127.0.0.3:{port}", join=[f"pydds.test:{port}"])
    nodes.append(c)
    await c.start()
    await until(lambda: all(alive(n) == ["a", "b", "c"] for n in (a, b, c)), a, b, c)
    alone = pydds.Node("x", listen=f"127.0.0.3:{_port_free_on(hosts)}")
    nodes.append(alone)
    await alone.start()
    with pytest.raises(pydds.LinkClosed, match="own address"):
        await alone.join(alone.address or "")


async def test_a_tls_peer_found_through_a_name_is_verified_against_the_name(
    nodes: list[pydds.Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    import ssl

    import trustme

    from pydds.net.ws import WebSocketTransport

    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("pydds.test").configure_cert(server)  # the name, not 127.0.0.1
    client = ssl.create_default_context()
    ca.configure_trust(client)
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if host == "pydds.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return await real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    tls = functools.partial(WebSocketTransport, server_ssl=server, client_ssl=client)
    a = pydds.Node("a", listen="127.0.0.1:0", transport=tls())
    nodes.append(a)
    await a.start()
    assert a.address is not None
    port = int(a.address.rsplit(":", 1)[1])
    b = pydds.Node("b", listen="127.0.0.1:0", join=[f"pydds.test:{port}"], transport=tls())
    nodes.append(b)
    await b.start()  # dialed at 127.0.0.1, its certificate checked for pydds.test
    assert alive(b) == ["a", "b"]
    c = pydds.Node("c", listen="127.0.0.1:0", transport=tls())
    nodes.append(c)
    await c.start()
    with pytest.raises(pydds.LinkClosed, match="certificate"):
        await c.join(a.address)  # by its IP address: the certificate does not name it
