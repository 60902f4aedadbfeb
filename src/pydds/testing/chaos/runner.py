"""One run: nodes, proxies, workload and faults started, the final heal, the report."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .checker import UNREADABLE, _check, _compactions, _converge, _state, _tombstones
from .faults import _faults
from .plan import Plan, Report
from .processes import NodeProcess, _until_linked
from .proxy import Network
from .workload import _listen, _Write, _writer


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
        for name in names:
            nodes[name] = NodeProcess(name, data, [], plan.compact_at, plan.tombstone_horizon)
        started: list[NodeProcess] = []
        for node in nodes.values():
            # As the README starts a cluster: the first node with no join, each other
            # joining those before it. A node that left and starts again is dialed by
            # no one: it finds the cluster through the members its store remembers.
            node.join = [f"127.0.0.1:{n.proxy_port}" for n in started]
            started.append(node)
        for node in nodes.values():
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
                report.unreadable = [k for k, v in state.items() if v == UNREADABLE][:10]
            else:  # say why no node could be read whole, then count what one has
                why: list[str] = []
                for node in nodes.values():
                    await _state(http, node, why)
                report.unreadable = why[:10]
                state = await _state(http, nodes[names[0]])
            report.compactions = sum([await _compactions(http, n) for n in nodes.values()])
            kept = [await _tombstones(http, n) for n in nodes.values()]
            report.sessions["tombstones_left"] = max(kept)
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
