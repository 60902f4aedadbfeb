"""Shared test helpers: exact comparison of values, replicas that trade changes, and
a bounded wait on real nodes' events."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import select
import signal
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import aiohttp

import pydds
from pydds.changes import Change
from pydds.net.session import Streamed


def exact(value: Any) -> Any:
    """A form of ``value`` that compares equal only for identical types and contents
    (``1 != 1.0``, ``True != 1``, ``-0.0 != 0.0``); dict order does not matter."""
    t = type(value)
    if t is dict:
        return ("dict", tuple(sorted((k, exact(v)) for k, v in value.items())))
    if t is list or t is tuple:
        return ("list", tuple(exact(v) for v in value))
    if t is float:
        return ("float", value.hex())
    return (t.__name__, value)


def sent(sends: Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The messages of ``Replication`` output, each ``Streamed`` run made at once."""
    out: list[tuple[str, Any]] = []
    for peer, message in sends:
        if isinstance(message, Streamed):
            out.extend((peer, each) for each in message.messages)
        else:
            out.append((peer, message))
    return out


class Replica:
    """A node whose changes are collected instead of sent anywhere."""

    def __init__(self, name: str, client_id: int | None = None) -> None:
        self.node = pydds.Node(name)
        if client_id is not None:  # fixed ids make Yjs's tie-breaks the same every run
            self.node.client_id = client_id
        self.outbox: list[Change] = []
        self.node.add_change_listener(self.outbox.append)

    def db(self, name: str = "db") -> pydds.Database:
        return self.node.database(name)

    def take(self) -> list[Change]:
        out = list(self.outbox)
        self.outbox.clear()
        return out

    def receive(self, changes: list[Change]) -> None:
        for change in changes:
            self.node.apply_change(change)

    def state(self, database: str = "db") -> dict[str, Any]:
        """Every live key with its exact value, and its generation."""
        ks = self.db(database)._keyspace
        return {key: (ks._keys[key].gen, exact(ks.read(key))) for key in ks.keys()}  # noqa: SIM118

    def directory(self, database: str = "db") -> dict[str, Any]:
        return self.db(database)._keyspace.directory.entries()


def settle(*replicas: Replica, rounds: int = 10) -> None:
    """Deliver every pending change to every other replica until none is left
    (repairs made while applying are delivered too)."""
    for _ in range(rounds):
        moved = False
        for sender in replicas:
            changes = sender.take()
            moved = moved or bool(changes)
            for receiver in replicas:
                if receiver is not sender:
                    receiver.receive(changes)
        if not moved:
            return
    raise AssertionError("replicas did not settle")


def orders(changes: list[Change]) -> Iterator[list[Change]]:
    """Every delivery order of ``changes``."""
    for perm in itertools.permutations(changes):
        yield list(perm)


async def until_events(
    condition: Callable[[], bool], *watched: pydds.Node, seconds: float = 10.0
) -> None:
    """Wait (bounded, in real time) until ``condition`` holds, checking it again on
    every event of the ``watched`` nodes."""
    subscriptions = [node.events() for node in watched]
    try:
        async with asyncio.timeout(seconds):
            while not condition():
                waits = [asyncio.ensure_future(s.get()) for s in subscriptions]
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for wait in waits:
                        wait.cancel()
    finally:
        for subscription in subscriptions:
            subscription.close()


async def pydds_cmd(*args: str, node: str | None = None) -> tuple[int, str, str]:
    """Run the ``pydds`` command; its exit code, stdout and stderr."""
    env = {**os.environ}
    if node is not None:
        env["PYDDS_NODE"] = node
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pydds",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def stop_process(proc: asyncio.subprocess.Process) -> int:
    """SIGTERM to its process group, then SIGKILL if it does not stop within 20 s."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):  # it may be gone already
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode


class Served:
    """A ``pydds serve`` process."""

    def __init__(self, proc: asyncio.subprocess.Process, line: str) -> None:
        self.proc = proc
        self.line = line
        match = re.search(r"serving on (https?://127\.0\.0\.1:\d+)", line)
        assert match, line
        self.http = match.group(1)
        self.node = self.http.split("://", 1)[1]


async def start_serve(*args: str, env: dict[str, str] | None = None) -> Served:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pydds",
        "serve",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        # In memory unless the test says otherwise: never ./pydds-data of the checkout.
        env={**os.environ, "PYDDS_MEMORY": "1", **(env or {})},
        start_new_session=True,  # its own process group, stopped as a whole
    )
    assert proc.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise
    return Served(proc, line)


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1 from a throwaway CA, and a
    client context that trusts that CA."""
    import trustme

    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


async def until_member(
    node: Served,
    name: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    headers: dict[str, str] | None = None,
    address: str | None = None,
) -> None:
    """Wait (bounded: 20 s) until ``node`` lists ``name`` as an alive member (at
    ``address``, when given)."""
    connector = aiohttp.TCPConnector(ssl=ssl_context) if ssl_context else None
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        async with asyncio.timeout(20):
            while True:
                async with session.get(node.http + "/v1/cluster") as response:
                    assert response.status == 200
                    members = (await response.json())["members"]
                if any(
                    m["name"] == name
                    and m["state"] == "alive"
                    and (address is None or m["address"] == address)
                    for m in members
                ):
                    return
                await asyncio.sleep(0.05)  # another process: nothing to await here


class ServeProcess:
    """A ``pydds serve`` process on a free port, in its own process group, for tests
    that are not async; what it logs goes to ``log``. ``url``: its http address,
    ``address``: its host:port."""

    def __init__(self, *args: str, log: Path) -> None:
        self.log = log
        with log.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pydds", "serve", "--port", "0", *args],
                stdout=subprocess.PIPE,
                stderr=err,
                env={**os.environ, "PYDDS_MEMORY": "1"},
                start_new_session=True,
            )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline().decode() if ready else ""
        match = re.search(r"serving on (http://127\.0\.0\.1:\d+)", line)
        if match is None:
            self.stop()
            raise AssertionError(f"pydds serve did not start: {line!r} {log.read_text()}")
        self.url = match.group(1)
        self.address = self.url.removeprefix("http://")

    def stop(self) -> int:
        """SIGTERM to its process group, SIGKILL if it has not stopped within 20 s."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return self.proc.returncode
