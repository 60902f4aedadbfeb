"""Statistics: events per database and kind, hot keys over a sliding window,
replication traffic; in Python, /metrics and /v1/stats."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient, TestServer

import pydds
from pydds.clock import FakeClock
from pydds.modules.stats import SlidingCounts, Statistics
from pydds.server import make_app

from .memcluster import Cluster, until


async def test_sliding_counts() -> None:
    clock = FakeClock()
    counts = SlidingCounts(window=60, max_keys=3, now=clock.now)
    for _ in range(3):
        counts.add(("db", "a"))
    counts.add(("db", "b"))
    assert counts.top(1) == [("db", "a", 3)]
    await clock.advance(30, step=30)  # half a window later
    counts.add(("db", "b"))
    counts.add(("db", "c"))
    counts.add(("db", "d"))
    counts.add(("db", "e"))  # a fourth key in one bucket: untracked
    assert counts.untracked == 1
    assert counts.top(2) == [("db", "a", 3), ("db", "b", 2)]
    await clock.advance(31, step=31)  # the first bucket left the window
    assert counts.top(5) == [("db", "b", 1), ("db", "c", 1), ("db", "d", 1)]
    await clock.advance(200, step=200)
    assert counts.top(5) == []


async def test_hot_keys_and_events() -> None:
    stats = Statistics(top=2)
    async with pydds.Node("s", modules=[stats]) as node:
        db = node.database("db")
        for i in range(5):
            await db.set("hot", i)
        await db.set("warm", 1)
        await db.set("warm", 2)
        await db.set("cold", 1)
        await db.delete("cold")
        for _ in range(4):
            await db.get("warm")
        await db.get("hot")
        await node.emit("ping", 1)
        await node.emit("ping", 2)
        await until(lambda: stats.events_by_database[("", "custom")] == 2)  # all handled
        snapshot = stats.snapshot()
        assert snapshot["hot_writes"] == [
            {"database": "db", "key": "hot", "count": 5},
            {"database": "db", "key": "warm", "count": 2},
        ]
        assert snapshot["hot_reads"][0] == {"database": "db", "key": "warm", "count": 4}
        assert snapshot["events"]["db"] == {"created": 3, "changed": 5, "deleted": 1}
        assert snapshot["events"][""] == {"custom": 2}
        assert snapshot["replication"]["bytes_out"] == 0  # alone

        client: TestClient[Any, Any] = TestClient(TestServer(make_app(node)))
        await client.start_server()
        try:
            metrics = await (await client.get("/metrics")).text()
            assert 'pydds_hot_key_writes{database="db",key="hot"} 5.0' in metrics
            assert 'pydds_hot_key_reads{database="db",key="warm"} 4.0' in metrics
            assert 'pydds_db_events_total{database="db",kind="created"} 3.0' in metrics
            body = await (await client.get("/v1/stats")).json()
            assert body["modules"]["stats"]["hot_writes"][0]["key"] == "hot"
            assert body["events"]["created"] == 3
        finally:
            await client.close()
    assert not node._read_listeners  # stopped: no longer listening


async def test_replication_traffic(cluster: Cluster) -> None:
    stats = Statistics()
    a, b = await cluster.pair([stats])
    await b.database("db").set("k", "v" * 100)
    await until(lambda: "k" in a.database("db"))
    assert await a.database("db").get("k") == "v" * 100
    traffic = stats.snapshot()["replication"]
    assert traffic["bytes_in"] > 100
    assert traffic["bytes_out"] > 0
    assert traffic["messages_in"] > 0
