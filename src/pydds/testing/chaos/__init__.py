"""A Jepsen-style harness: real ``pydds serve`` processes, a proxy in front of each,
faults (partitions, one-way cuts, SIGKILL and restart, SIGSTOP pauses, delays,
graceful leaves and rejoins), a workload whose every write is unique, and a checker.

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

from .cli import main
from .plan import DB, LEVELS, Plan, Report
from .processes import NodeProcess
from .proxy import Network
from .runner import run

__all__ = ["DB", "LEVELS", "Network", "NodeProcess", "Plan", "Report", "main", "run"]
