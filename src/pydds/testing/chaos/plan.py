"""What a chaos run does (the plan) and what its checker found (the report)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
    leaves: int = 1  # a node closed gracefully (SIGTERM: it leaves), started again
    writes: int = 2000  # attempted writes, spread over the run
    keys: int = 20  # dict keys the unique fields go to
    counters: int = 4
    seed: int = 1
    compact_at: int = 500  # log rows between compactions of each node's store (small: often)
    #: Seconds a deleted key is remembered (``--tombstone-horizon``): short, so that
    #: tombstones are pruned during the run, and nodes cut off or stopped across a
    #: prune reconcile when they are back.
    tombstone_horizon: float = 3.0
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
    #: session keys created and deleted (the delete acknowledged beyond "local")
    #: that are present at the end
    resurrected: int = 0
    #: session keys created and deleted (acknowledged), and the most tombstones a
    #: node kept at the end (fewer than deleted: the others were pruned)
    sessions: dict[str, int] = field(default_factory=dict)
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
    #: Keys no node holds the value of (each read 503), or, when the replicas did
    #: not converge, why each could not be read whole
    unreadable: list[str] = field(default_factory=list)
    compactions: int = 0  # store compaction chunks done, over the nodes' last processes

    @property
    def ok(self) -> bool:
        """No loss among durable and majority acknowledgements, nothing unexpected,
        counters exact, no event twice, and every replica identical."""
        strict = sum(n for level, n in self.lost.items() if level != "local")
        return (
            strict == 0
            and self.unexpected == 0
            and self.resurrected == 0
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
            f"sessions: {self.sessions.get('created', 0)} created, "
            f"{self.sessions.get('deleted', 0)} deleted, "
            f"tombstones left at the end {self.sessions.get('tombstones_left', 0)} (pruned: "
            "the others); "
            f"resurrected: {self.resurrected}",
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
            f"store compactions (the nodes' last processes): {self.compactions}",
            *(f"  unreadable: {why}" for why in self.unreadable),
            f"verdict: {'PASS' if self.ok else 'FAIL'}",
        ]
        return "\n".join(lines)
