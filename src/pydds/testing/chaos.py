"""A Jepsen-style harness: real ``pydds serve`` processes, a proxy in front of each,
faults (partitions, one-way cuts, SIGKILL and restart, SIGSTOP pauses, delays), a
workload whose every write is unique, and a checker.

    python -m pydds.testing.chaos --nodes 5 --clients 2 --seconds 60 \\
        --partitions 10 --kills 5 --pauses 3 --writes 20000 --json report.json

Each node serves on its own port and advertises its proxy's (``--advertise``), so
every link between nodes, and every client link, goes through a proxy. A proxy knows
which node dialed it (the socket's owner, from ``/proc``), so faults are per pair
and per direction: a cut closes the connections between two groups and refuses new
ones; a one-way drop holds every byte going one way (as a network losing every
packet that way: TCP retries, the receiver hears nothing); a delay adds latency.
The workload goes to nodes over HTTP (directly, as a service colocated with its node
would) and through ``pydds.Client`` objects: fields added to dicts (each write a
unique field, so a lost write is visible), counter increments, custom events, each
with an ack level and its outcome recorded. After the final heal the checker waits
until every node holds the same data, then counts what was lost (acknowledged,
missing), what is unexpected (present, never written), whether counters are exact,
and events delivered twice to one receiver.

Linux only (``/proc``); everything stays on 127.0.0.1; every process runs in its own
process group and is stopped by it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Plan", "Report", "run"]

DB = "chaos"
LEVELS = ("local", "majority", "durable", "durable+majority")


@dataclass
class Plan:
    """What a run does."""

    nodes: int = 3
    clients: int = 1
    seconds: float = 20.0
    partitions: int = 3
    kills: int = 1
    pauses: int = 1
    writes: int = 2000  # attempted writes, spread over the run
    keys: int = 20  # dict keys the unique fields go to
    counters: int = 4
    seed: int = 1
    quiet: float = 30.0  # seconds to wait, after the final heal, for identical replicas


@dataclass
class Report:
    """What the checker found."""

    plan: dict[str, Any]
    attempted: int = 0
    acknowledged: dict[str, int] = field(default_factory=dict)  # by ack level
    failed: int = 0  # refused or timed out (outcome unknown)
    lost: dict[str, int] = field(default_factory=dict)  # acknowledged, missing; by level
    lost_examples: list[str] = field(default_factory=list)
    unexpected: int = 0  # present, never written
    counters_exact: bool = True
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    events_sent: int = 0
    events_received: int = 0
    events_delivered_twice: int = 0
    faults: list[str] = field(default_factory=list)
    converged: bool = False
    seconds_to_identical: float | None = None  # after the final heal
    #: per heal during the run: seconds until a write made on each side of the
    #: partition reached every node (None: not within 30 s)
    heal_seconds: list[float | None] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No loss among durable and majority acknowledgements, nothing unexpected,
        counters exact, no event twice, and every replica identical."""
        strict = sum(n for level, n in self.lost.items() if level != "local")
        return (
            strict == 0
            and self.unexpected == 0
            and self.counters_exact
            and self.events_delivered_twice == 0
            and self.converged
        )

    def _heals(self) -> str:
        done = sorted(s for s in self.heal_seconds if s is not None)
        if not done:
            return "-"
        p50 = done[len(done) // 2]
        p99 = done[min(len(done) - 1, int(len(done) * 0.99))]
        missed = len(self.heal_seconds) - len(done)
        return f"p50 {p50:.2f} s, p99 {p99:.2f} s over {len(done)} heals" + (
            f", {missed} not within 30 s" if missed else ""
        )

    def text(self) -> str:
        kinds = ", ".join(sorted({f.split()[0] for f in self.faults}))
        lines = [
            f"chaos run: {self.plan['nodes']} nodes, {self.plan['clients']} clients, "
            f"{self.plan['seconds']:g} s, seed {self.plan['seed']}",
            f"faults: {len(self.faults)} ({kinds})",
            f"writes: {self.attempted} attempted, {sum(self.acknowledged.values())} "
            f"acknowledged {dict(sorted(self.acknowledged.items()))}, {self.failed} failed",
            f"lost (acknowledged, missing): {dict(sorted(self.lost.items())) or 0}",
            f"unexpected (never written): {self.unexpected}",
            f"counters exact: {self.counters_exact}",
            f"events: {self.events_sent} sent, {self.events_received} received, "
            f"{self.events_delivered_twice} delivered twice",
            f"after each heal, writes from both sides everywhere within: {self._heals()}",
            f"replicas identical: {self.converged}"
            + (
                f" ({self.seconds_to_identical:.2f} s after the final heal)"
                if self.converged
                else ""
            ),
            f"verdict: {'PASS' if self.ok else 'FAIL'}",
        ]
        return "\n".join(lines)


# -- processes and proxies --------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class NodeProcess:
    """One ``pydds serve`` process, restartable from its data directory."""

    def __init__(self, name: str, data: Path, join: list[str]) -> None:
        self.name = name
        self.port = _free_port()  # where it serves (HTTP, and the proxy's target)
        self.proxy_port = _free_port()  # what it advertises
        self.data = data / name
        self.join = join
        self.proc: asyncio.subprocess.Process | None = None
        self.paused = False

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, owners: dict[int, str]) -> None:
        """Start the process, known to the proxies (``owners``) before it dials anyone."""
        args = [
            sys.executable,
            "-m",
            "pydds",
            "serve",
            "--port",
            str(self.port),
            "--name",
            self.name,
            "--advertise",
            f"127.0.0.1:{self.proxy_port}",
            "--data-dir",
            str(self.data),
            "--log-level",
            "warning",
        ]
        for address in self.join:
            args += ["--join", address]
        self.proc = await asyncio.create_subprocess_exec(
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        owners[self.proc.pid] = self.name
        assert self.proc.stdout is not None
        await asyncio.wait_for(self.proc.stdout.readline(), 60)  # serving

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    async def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            await self.proc.wait()
        self.paused = False

    async def stop(self) -> None:
        if self.paused:
            self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        if self.proc is not None:
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                await self.kill()


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


# -- the run -------------------------------------------------------------------------------


@dataclass
class _Write:
    via: str
    key: str
    item: str  # the unique field, or "+1" for a counter
    level: str
    ok: bool | None = None  # True acknowledged, False refused, None unknown (timed out)


async def run(plan: Plan, workdir: str | None = None) -> Report:
    """Run ``plan``; the checker's report."""
    import aiohttp

    import pydds

    rng = random.Random(plan.seed)
    report = Report(plan=asdict(plan))
    net = Network()
    net.owners[os.getpid()] = "clients"
    tmp = tempfile.TemporaryDirectory() if workdir is None else None
    data = Path(workdir or (tmp.name if tmp else "."))
    names = [f"n{i + 1}" for i in range(plan.nodes)]
    nodes: dict[str, NodeProcess] = {}
    clients: list[pydds.Client] = []
    writes: list[_Write] = []
    received: dict[str, list[int]] = {}
    stop = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []
    try:
        for i, name in enumerate(names):
            join = [f"127.0.0.1:{nodes[names[0]].proxy_port}"] if i else []
            node = nodes[name] = NodeProcess(name, data, join)
            await net.proxy(node)
            await node.start(net.owners)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            await _until_linked(http, nodes, plan.nodes)
            for i in range(plan.clients):
                gateway = nodes[names[i % len(names)]]
                client = pydds.Client(f"client{i + 1}", join=[f"127.0.0.1:{gateway.proxy_port}"])
                await client.start()
                clients.append(client)
            counter = iter(range(10**9))
            for name in names:
                tasks.append(asyncio.ensure_future(_listen(http, nodes, name, received, stop)))
            per_second = plan.writes / plan.seconds
            # Enough writers that those waiting on acknowledgements (up to the ack
            # timeout, in a partition) do not lower the rate.
            writers = max(16, round(plan.writes / plan.seconds / 3)) + plan.clients
            for w in range(writers):
                by_client = w >= writers - plan.clients and bool(clients)
                via_client = clients[w % len(clients)] if by_client else None
                tasks.append(
                    asyncio.ensure_future(
                        _writer(
                            http,
                            nodes,
                            via_client,
                            random.Random(plan.seed * 100 + w),
                            counter,
                            writes,
                            plan,
                            per_second / writers,
                            stop,
                            report,
                        )
                    )
                )
            await _faults(net, nodes, rng, plan, report, http)
            # The planned number of operations, even if the machine could not keep
            # the pace during the faults (bounded: 30 s more at most).
            topped = time.monotonic() + 30
            while len(writes) + report.events_sent < plan.writes and time.monotonic() < topped:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            tasks.clear()
            # The final heal: every node back, every link allowed.
            net.heal()
            for node in nodes.values():
                if node.paused:
                    node.signal(signal.SIGCONT)
                    node.paused = False
                if node.pid is None:
                    await node.start(net.owners)
            healed = time.monotonic()
            state = await _converge(http, nodes, plan.quiet)
            if state is not None:
                report.converged = True
                report.seconds_to_identical = round(time.monotonic() - healed, 2)
            else:
                state = await _state(http, nodes[names[0]])
            _check(report, writes, state or {}, received)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        for client in clients:
            await client.close()
        for node in nodes.values():
            await node.stop()
        await net.close()
        if tmp is not None:
            tmp.cleanup()
    return report


async def _until_linked(http: Any, nodes: dict[str, NodeProcess], count: int) -> None:
    async with asyncio.timeout(60):
        for node in nodes.values():
            while True:
                async with http.get(f"{node.http}/v1/cluster") as response:
                    members = (await response.json())["members"]
                if sum(m["state"] in ("self", "alive") for m in members) == count:
                    break
                await asyncio.sleep(0.1)


async def _listen(
    http: Any,
    nodes: dict[str, NodeProcess],
    name: str,
    received: dict[str, list[int]],
    stop: asyncio.Event,
) -> None:
    """Receive custom events from one node's stream; a new stream after each restart
    is a new receiver (events are not stored, so none is redelivered)."""
    generation = 0
    while not stop.is_set():
        generation += 1
        receiver = f"{name}#{generation}"
        seen = received.setdefault(receiver, [])
        with contextlib.suppress(Exception):
            async with http.get(
                f"{nodes[name].http}/v1/events",
                params={"kinds": "custom"},
                timeout=_stream_timeout(),
            ) as response:
                async for line in response.content:
                    if line.startswith(b"data:"):
                        seen.append(json.loads(line[5:])["payload"]["id"])
                    if stop.is_set():
                        return
        await asyncio.sleep(0.2)


def _stream_timeout() -> Any:
    import aiohttp

    return aiohttp.ClientTimeout(total=None, sock_read=None)


async def _writer(
    http: Any,
    nodes: dict[str, NodeProcess],
    client: Any,
    rng: random.Random,
    counter: Any,
    writes: list[_Write],
    plan: Plan,
    rate: float,
    stop: asyncio.Event,
    report: Report,
) -> None:
    import pydds

    names = sorted(nodes)
    next_at = time.monotonic()
    while not stop.is_set():
        # Paced: the next write is due an exponential gap after the last one was due,
        # so slow writes (ack waits) do not lower the rate.
        next_at += rng.expovariate(rate) if rate > 0 else 0.01
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        if stop.is_set():
            return
        n = next(counter)
        level = rng.choice(LEVELS)
        roll = rng.random()
        via = client.name if client is not None else rng.choice(names)
        if roll < 0.1:  # a custom event
            report.events_sent += 1
            with contextlib.suppress(Exception):
                await http.post(f"{nodes[rng.choice(names)].http}/v1/events/chaos", json={"id": n})
        elif roll < 0.3:
            write = _Write(via, f"counter:{rng.randrange(plan.counters)}", "+1", level)
            writes.append(write)
            await _attempt(write, http, nodes, client, report, pydds)
        else:
            write = _Write(via, f"set:{rng.randrange(plan.keys)}", f"w{n}", level)
            writes.append(write)
            await _attempt(write, http, nodes, client, report, pydds)


async def _attempt(
    write: _Write,
    http: Any,
    nodes: dict[str, NodeProcess],
    client: Any,
    report: Report,
    pydds: Any,
) -> None:
    ack = write.level if client is None or "durable" not in write.level else "majority"
    write.level = ack
    try:
        if client is not None:
            db = client.database(DB)
            if write.item == "+1":
                await asyncio.wait_for(db.incr(write.key, 1, ack=ack), 10)
            else:
                await asyncio.wait_for(db.update(write.key, {write.item: True}, ack=ack), 10)
            write.ok = True
            return
        base = f"{nodes[write.via].http}/v1/databases/{DB}/keys/{write.key}"
        if write.item == "+1":
            response = await http.post(f"{base}/incr", params={"ack": ack})
        else:
            response = await http.patch(base, json={write.item: True}, params={"ack": ack})
        async with response:
            write.ok = response.status in (200, 201) or None
            if write.ok is None:
                report.errors[str(response.status)] = report.errors.get(str(response.status), 0) + 1
    except (pydds.PyddsError, TimeoutError, OSError, Exception) as exc:  # outcome unknown
        name = type(exc).__name__
        report.errors[name] = report.errors.get(name, 0) + 1
        write.ok = None


async def _faults(
    net: Network,
    nodes: dict[str, NodeProcess],
    rng: random.Random,
    plan: Plan,
    report: Report,
    http: Any,
) -> None:
    """Spread the planned faults over the run, one at a time, each healed after."""
    names = sorted(nodes)
    faults = ["partition"] * plan.partitions + ["kill"] * plan.kills + ["pause"] * plan.pauses
    rng.shuffle(faults)
    slot = plan.seconds / (len(faults) + 1)
    started = time.monotonic()
    for i, kind in enumerate(faults):
        await asyncio.sleep(max(0.0, started + slot * (i + 0.5) - time.monotonic()))
        length = min(slot * 0.8, rng.uniform(1.0, 4.0))
        if kind == "partition":
            victim = rng.choice(names)
            style = rng.choice(["isolate", "split", "one-way", "delay"])
            if style == "isolate":
                net.partition({victim}, set(names) - {victim})
            elif style == "split" and len(names) > 2:
                shuffled = names[:]
                rng.shuffle(shuffled)
                half = len(names) // 2
                net.partition(set(shuffled[:half]), set(shuffled[half:]))
            elif style == "one-way":
                other = rng.choice([n for n in names if n != victim])
                net.drop.add((victim, other))
            else:
                other = rng.choice([n for n in names if n != victim])
                net.delay[frozenset((victim, other))] = rng.uniform(0.05, 0.3)
            report.faults.append(f"partition {style} {victim} {length:.1f}s")
            await asyncio.sleep(length)
            marker = f"heal:{i}"
            written = set()
            for side in (victim, rng.choice([n for n in names if n != victim])):
                # A write on each side, made while they are apart (one that failed
                # is not waited for).
                with contextlib.suppress(Exception):
                    async with http.patch(
                        f"{nodes[side].http}/v1/databases/{DB}/keys/{marker}", json={side: True}
                    ) as response:
                        if response.status in (200, 201):
                            written.add(side)
            net.heal()
            report.heal_seconds.append(await _spread(http, nodes, marker, written))
        elif kind == "kill":
            node = nodes[rng.choice(names)]
            await node.kill()
            report.faults.append(f"kill {node.name}")
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            await node.start(net.owners)
        else:
            node = nodes[rng.choice(names)]
            pause = min(length * 2, rng.uniform(2.0, 8.0), slot)
            node.signal(signal.SIGSTOP)
            node.paused = True
            report.faults.append(f"pause {node.name} {pause:.1f}s")
            await asyncio.sleep(pause)
            node.signal(signal.SIGCONT)
            node.paused = False
    await asyncio.sleep(max(0.0, started + plan.seconds - time.monotonic()))


async def _spread(
    http: Any, nodes: dict[str, NodeProcess], key: str, fields: set[str]
) -> float | None:
    """Seconds until every node reads ``key`` with all of ``fields`` (None: not in 30 s)."""
    start = time.monotonic()
    while time.monotonic() - start < 30:
        done = True
        for node in nodes.values():
            try:
                async with http.get(f"{node.http}/v1/databases/{DB}/keys/{key}") as response:
                    value = await response.json() if response.status == 200 else {}
            except Exception:
                value = {}
            if not isinstance(value, dict) or not fields <= set(value):
                done = False
                break
        if done:
            return round(time.monotonic() - start, 3)
        await asyncio.sleep(0.02)
    return None


async def _state(http: Any, node: NodeProcess) -> dict[str, Any] | None:
    """Every key of the chaos database and its value, read from ``node``."""
    try:
        async with http.get(f"{node.http}/v1/databases/{DB}/keys") as response:
            if response.status != 200:
                return {}
            keys = await response.json()
        out = {}
        for key in keys:
            async with http.get(f"{node.http}/v1/databases/{DB}/keys/{key}") as response:
                if response.status != 200:
                    return None
                out[key] = await response.json()
        return out
    except (OSError, TimeoutError, Exception):
        return None


async def _converge(
    http: Any, nodes: dict[str, NodeProcess], seconds: float
) -> dict[str, Any] | None:
    """Wait (bounded) until every node holds the same data; that data."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        states = [await _state(http, node) for node in nodes.values()]
        if all(s is not None for s in states) and all(s == states[0] for s in states):
            return states[0]
        await asyncio.sleep(0.2)
    return None


def _check(
    report: Report, writes: list[_Write], state: dict[str, Any], received: dict[str, list[int]]
) -> None:
    report.attempted = len(writes)
    written = {w.item for w in writes if w.item != "+1"}
    present: set[str] = set()
    for key, value in state.items():
        if key.startswith("set:") and isinstance(value, dict):  # not the heal markers
            present |= set(value)
    for write in writes:
        if write.ok:
            report.acknowledged[write.level] = report.acknowledged.get(write.level, 0) + 1
        else:
            report.failed += 1
        if write.ok and write.item != "+1" and write.item not in present:
            report.lost[write.level] = report.lost.get(write.level, 0) + 1
            if len(report.lost_examples) < 10:
                report.lost_examples.append(
                    f"{write.key}/{write.item} via {write.via} ({write.level})"
                )
    report.unexpected = len(present - written)
    by_key: dict[str, list[_Write]] = {}
    for write in writes:
        if write.item == "+1":
            by_key.setdefault(write.key, []).append(write)
    for key, increments in by_key.items():
        acked = sum(1 for w in increments if w.ok)
        maybe = sum(1 for w in increments if w.ok is None)
        final = state.get(key, 0)
        exact = isinstance(final, int) and acked <= final <= acked + maybe
        report.counters[key] = {
            "value": final if isinstance(final, int) else -1,
            "acked": acked,
            "unknown": maybe,
        }
        report.counters_exact = report.counters_exact and exact
    report.events_received = sum(len(ids) for ids in received.values())
    report.events_delivered_twice = sum(len(ids) - len(set(ids)) for ids in received.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = Plan()
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name}", type=type(value), default=value)
    parser.add_argument("--json", default=None, help="also write the report here")
    parser.add_argument("--workdir", default=None, help="keep data directories here")
    args = vars(parser.parse_args())
    out, workdir = args.pop("json"), args.pop("workdir")
    report = asyncio.run(run(Plan(**args), workdir))
    print(report.text())
    if out:
        Path(out).write_text(json.dumps({**asdict(report), "ok": report.ok}, indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
