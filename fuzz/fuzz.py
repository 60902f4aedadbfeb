"""Fuzz the link protocol: at least 100,000 frames, valid and corrupted, through the
peers layer's whole receive path (decode, session, membership, replication,
keyspaces), as from a node
and as from a client, and hostile messages from a client with a scoped token. Prints
one JSON object; exits 1 if anything crashed, if a refused message changed the
node's state, or if the client changed anything beyond its rights.

    python fuzz/fuzz.py [--cases 100000] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from pydds.testing.fuzz import run, run_client


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    results = {}
    crashed = False
    for peer in ("node", "client", "hostile client"):
        start = time.perf_counter()
        if peer == "hostile client":
            report = await run_client(args.cases, args.seed)
        else:
            report = await run(args.cases, args.seed, client=peer == "client")
        results[peer] = {
            "cases": report.cases,
            "accepted": report.accepted,
            "malformed": report.malformed,
            "refused": report.refused,
            "crashes": report.crashes[:20],
            "state_changes_by_refused_messages": report.state_changes[:20],
            "seconds": round(time.perf_counter() - start, 1),
        }
        crashed = crashed or bool(report.crashes) or bool(report.state_changes)
    print(json.dumps({"seed": args.seed, **results}, indent=2))
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
