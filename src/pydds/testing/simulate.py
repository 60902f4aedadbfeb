"""A simulated cluster: many nodes in one process, on the in-memory network with a
fake clock, so that how membership and dissemination grow with the cluster can be
read off (``python -m pydds.testing.simulate --nodes 25 50 100 200``).

For each size, every node joins through one seed (the first), then:

- **formed**: the fake seconds (and the real ones) until every node lists every
  other as alive, and the links that makes (a full mesh: n(n-1)/2);
- **a write**: the messages that one write on one node costs across the cluster
  until every node has recorded its ``created`` event, and the turns of the event
  loop that took (each hop of a message is at least one turn);
- **a fifth killed**: that many nodes crash at once (no goodbye); after ten fake
  seconds, whether every survivor lists every other survivor as alive, and the fake
  seconds until a write on a survivor is known to every survivor;
- **halves partitioned**: the network cut between two halves, a write on each
  side, then healed; the fake seconds until every node has both writes.

Prints one JSON object per size. The full mesh is pydds's only topology today: each
node links every node, so a write reaches every node in one hop and costs about n
messages; a partial view (HyParView) would trade hops for links.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from ..clock import FakeClock
from ..net.memory import MemoryNetwork, MemoryTransport
from ..node import Node

__all__ = ["simulate"]

#: Fake seconds a phase may take at most before it is reported as not done.
PHASE_LIMIT = 120.0
#: Fake seconds of each step of the clock.
STEP = 0.1
#: Turns of the event loop a write may take to reach every node, at most.
TURNS = 10_000


async def _until(
    clock: FakeClock, done: Callable[[], bool], limit: float = PHASE_LIMIT
) -> float | None:
    """Advance the clock until ``done`` (bounded); the fake seconds it took, or None."""
    began = clock.now()
    while not done():
        if clock.now() - began > limit:
            return None
        await clock.advance(STEP, step=STEP)
    return round(clock.now() - began, 2)


def _alive(node: Node) -> set[str]:
    return {m.name for m in node.members() if m.state in ("self", "alive")}


def _messages(nodes: list[Node]) -> int:
    return sum(n.traffic_total().messages_out for n in nodes)


async def _crash(network: MemoryNetwork, node: Node, everyone: list[Node]) -> None:
    """Stop ``node`` as a crash would: its links close, no ``Leave`` goes out."""
    transport = node.transport
    assert isinstance(transport, MemoryTransport)
    others = [n.address for n in everyone if n is not node and n.address]
    await network.partition([transport.address], others)
    await node.close()


async def simulate(size: int) -> dict[str, Any]:
    """Run the phases on a cluster of ``size`` nodes; what was measured."""
    network, clock = MemoryNetwork(), FakeClock()
    names = [f"n{i:03}" for i in range(size)]
    nodes: list[Node] = []
    out: dict[str, Any] = {"nodes": size}
    began = time.perf_counter()
    try:
        for i, name in enumerate(names):
            join = [f"mem://{names[0]}"] if i else []
            node = Node(
                name, listen=f"mem://{name}", join=join, transport=network.transport(), clock=clock
            )
            await node.start()
            nodes.append(node)
        everyone = set(names)
        formed = await _until(clock, lambda: all(_alive(n) == everyone for n in nodes))
        out["formed_s"] = formed
        out["formed_real_s"] = round(time.perf_counter() - began, 1)
        out["links"] = sum(len(n.traffic()) for n in nodes) // 2

        # One write: what it costs, and how many turns of the loop until everywhere.
        await clock.advance(2.0, step=0.5)  # quiet: the join's traffic is over
        before = _messages(nodes)
        await nodes[size // 2].database("sim").set("one", 1)
        turns = 0
        while turns < TURNS and not all("one" in n.database("sim") for n in nodes):
            await asyncio.sleep(0)
            turns += 1
        out["write_turns"] = turns if turns < TURNS else None
        out["messages_per_write"] = _messages(nodes) - before

        # A fifth of the nodes crash at once.
        doomed = nodes[size - max(1, size // 5) :]
        for node in doomed:
            await _crash(network, node, nodes)
        network.heal()
        survivors = nodes[: size - len(doomed)]
        alive = {n.name for n in survivors}
        await clock.advance(10.0, step=0.5)
        out["killed"] = len(doomed)
        out["survivors_see_each_other"] = all(alive <= _alive(n) for n in survivors)
        await survivors[0].database("sim").set("after_kill", 1)
        out["write_after_kill_s"] = await _until(
            clock, lambda: all("after_kill" in n.database("sim") for n in survivors)
        )

        # Two halves cut apart, a write on each side, healed.
        half = len(survivors) // 2
        left, right = survivors[:half], survivors[half:]
        await network.partition([n.address or "" for n in left], [n.address or "" for n in right])
        await clock.advance(6.0, step=0.5)  # the links time out
        await left[0].database("sim").set("left", 1)
        await right[0].database("sim").set("right", 1)
        network.heal()
        out["healed_s"] = await _until(
            clock,
            lambda: all(
                "left" in n.database("sim") and "right" in n.database("sim") for n in survivors
            ),
        )
        out["real_s"] = round(time.perf_counter() - began, 1)
    finally:
        for node in nodes:
            await node.close()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pydds.testing.simulate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--nodes", type=int, nargs="+", default=[25, 50, 100])
    args = parser.parse_args(argv)
    for size in args.nodes:
        print(json.dumps(asyncio.run(simulate(size))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
