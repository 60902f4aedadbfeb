"""Keep-fresh: pinned databases and prefixes are held, current, on their node."""

from __future__ import annotations

from pathlib import Path

import pytest

import pydds
from pydds.modules import load_module
from pydds.modules.fresh import KeepFresh, parse_pins
from pydds.modules.persist import Persistence

from .memcluster import Cluster, names, until


def test_pins() -> None:
    assert parse_pins("config, users/eu:,") == [("config", ""), ("users", "eu:")]
    assert parse_pins(["a/x/y"]) == [("a", "x/y")]
    with pytest.raises(ValueError, match="at least one pin"):
        parse_pins("")
    with pytest.raises(ValueError, match="invalid database name"):
        parse_pins("bad name")
    module = load_module("pydds.modules.fresh:KeepFresh?pin=config,users/eu:&concurrency=4")
    assert isinstance(module, KeepFresh)
    assert (module.pins, module.concurrency) == ([("config", ""), ("users", "eu:")], 4)
    with pytest.raises(pydds.ModuleError, match="refused its options"):
        load_module("pydds.modules.fresh:KeepFresh")


async def test_pinned_keys_are_pulled_and_stay_fresh(cluster: Cluster) -> None:
    a = await cluster.start("a")
    for i in range(30):
        await a.database("config", stale_after=10).set(f"c{i}", i)
        await a.database("users", stale_after=10).set(f"{'eu' if i % 2 else 'us'}:{i}", i)
    fresh = KeepFresh(pin="config,users/eu:")
    b = await cluster.start_with("b", ["mem://a"], modules=[fresh])
    config, users = b.database("config", stale_after=10), b.database("users", stale_after=10)
    await until(lambda: len(config) == 30 and all(config.holds(k) for k in config))
    await until(lambda: all(users.holds(k) for k in users.keys("eu:")))
    assert not any(users.holds(k) for k in users.keys("us:"))  # not pinned: lazy
    assert 0 < fresh.pulled <= 45  # the warm-up after joining pulls some of them too
    await a.database("config").set("late", "new")  # a key that appears later
    await until(lambda: config.holds("late"))
    await cluster.clock.advance(30, step=1.0)
    assert not config.is_stale("c1")  # pinned: never stale
    async with b.events(database="config") as at_b:
        await a.database("config").set("c1", "changed")
        pushed = await at_b.get(timeout=1)
    assert pushed.delta is not None  # still pushed to b
    assert config._keyspace.read("c1") == "changed"


async def test_with_persistence_a_full_durable_replica(cluster: Cluster, tmp_path: Path) -> None:
    a = await cluster.start("a")
    for i in range(20):
        await a.database("orders").set(f"o{i}", {"n": i})
    b = await cluster.start_with(
        "b",
        ["mem://a"],
        modules=[Persistence(path=str(tmp_path)), KeepFresh(pin="orders")],
    )
    await until(lambda: len(names(b)) == 2)
    orders = b.database("orders")
    await until(lambda: len(orders) == 20 and all(orders.holds(k) for k in orders))
    await b.close()
    await a.close()
    async with pydds.Node("b-alone", modules=[Persistence(path=str(tmp_path))]) as node:
        db = node.database("orders")
        assert len(db) == 20
        assert await db.get("o7") == {"n": 7}  # no peer needed
