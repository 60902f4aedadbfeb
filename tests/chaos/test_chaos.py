"""The chaos harness, short: 3 node processes and a client, partitions, a SIGKILL
and restart, a pause, a graceful leave and rejoin, deleted keys pruned after a short
horizon; nothing acknowledged durably or by a majority is lost, and nothing deleted
comes back."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from pydds.testing.chaos import Plan, run


@pytest.mark.timeout(240)
async def test_a_short_chaos_run() -> None:
    plan = Plan(
        nodes=3, clients=1, seconds=18, partitions=2, kills=1, pauses=1, leaves=1, writes=1800
    )
    report = await run(plan)
    print(report.text())  # shown with -s, and on failure
    assert report.attempted > 300, asdict(report)
    assert sum(report.acknowledged.values()) > 100
    assert {f.split()[0] for f in report.faults} == {"partition", "kill", "pause", "leave"}
    strict = {level: n for level, n in report.lost.items() if level != "local"}
    assert strict == {}, report.lost_examples
    assert report.unexpected == 0
    # Session keys were deleted, their tombstones pruned (a 3 s horizon) while nodes
    # were cut off, killed and restarted, and none came back.
    assert report.sessions["deleted"] > 10
    assert report.sessions["tombstones_left"] < report.sessions["deleted"]
    assert report.resurrected == 0, report.lost_examples
    assert report.counters_exact, report.counters
    assert report.events_delivered_twice == 0
    assert report.converged
    assert report.compactions > 0  # stores compacted (every 500 rows) while faults went on
    assert report.ok
