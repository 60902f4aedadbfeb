"""``@db.cached``: results kept in a database, each computed once across the cluster
(single flight), with TTLs, invalidation and stale-while-revalidate."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import pydds
from pydds.clock import FakeClock

from .memcluster import Cluster, names, until


async def settle(rounds: int = 500) -> None:
    """Let every task that can run, run (bounded)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def test_a_hit_does_not_call_the_function() -> None:
    clock = FakeClock()
    async with pydds.Node("solo", clock=clock) as node:
        db = node.database("cache")
        calls: list[int] = []

        @db.cached(ttl=60, key="user:{user_id}")
        async def load(user_id: int, *, full: bool = False) -> dict[str, Any]:
            calls.append(user_id)
            return {"id": user_id, "full": full}

        assert await load(7) == {"id": 7, "full": False}
        assert await load(7, full=True) == {"id": 7, "full": False}  # same key: a hit
        assert calls == [7]
        assert await db.get("user:7") == {"id": 7, "full": False}
        assert db.ttl("user:7") == pytest.approx(60)
        assert load.key(8) == "user:8"
        assert await load.invalidate(7) is True
        assert await load(7) == {"id": 7, "full": False}
        assert calls == [7, 7]
        await clock.advance(61)
        await load(7)
        assert calls == [7, 7, 7]
        assert load.__name__ == "load"  # it wraps the function


async def test_the_default_key_names_the_function_and_its_arguments() -> None:
    async with pydds.Node("solo") as node:
        db = node.database("cache")

        @db.cached()
        async def add(a: int, b: int = 2) -> int:
            return a + b

        assert await add(1) == 3
        key = add.key(1)
        assert key == add.key(a=1, b=2)
        assert key.endswith('add:{"a":1,"b":2}')
        assert db.keys() == [key]
        assert db.ttl(key) is None  # no ttl: kept until invalidated
        assert await db.invalidate(key, "other") == 1
        assert len(add.key("x" * 2000)) <= 1024  # too long: a digest of the arguments


async def test_exceptions_and_bad_results_are_not_cached() -> None:
    async with pydds.Node("solo") as node:
        db = node.database("cache")
        calls = 0

        @db.cached(ttl=5, key="k")
        async def flaky() -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("down")
            if calls == 2:
                return {1, 2}  # no JSON value
            return "ok"

        with pytest.raises(RuntimeError):
            await flaky()
        with pytest.raises(pydds.InvalidValue):
            await flaky()
        assert "k" not in db
        assert await flaky() == "ok"
        assert calls == 3


@pytest.mark.parametrize(
    "settings",
    [{"ttl": 0}, {"ttl": -1}, {"lease": 0}, {"stale_while_revalidate": 5}, {"ttl": "5"}],
)
async def test_bad_settings(settings: dict[str, Any]) -> None:
    db = pydds.Node("solo").database("d")
    with pytest.raises(pydds.InvalidValue):
        db.cached(**settings)


async def test_concurrent_misses_on_one_node_call_once() -> None:
    async with pydds.Node("solo") as node:
        db = node.database("cache")
        calls = 0
        release = asyncio.Event()

        @db.cached(ttl=60, key="k")
        async def slow() -> int:
            nonlocal calls
            calls += 1
            await release.wait()
            return 42

        callers = [asyncio.ensure_future(slow()) for _ in range(50)]
        await until(lambda: calls == 1)
        await settle()
        release.set()
        assert await asyncio.gather(*callers) == [42] * 50
        assert calls == 1


async def three_nodes(cluster: Cluster) -> list[pydds.Node]:
    a = await cluster.start("a")
    b = await cluster.start("b", ["mem://a"])
    c = await cluster.start("c", ["mem://a"])
    nodes = [a, b, c]
    await until(lambda: all(len(names(n)) == 3 for n in nodes))
    return nodes


async def test_concurrent_misses_across_the_cluster_call_once(cluster: Cluster) -> None:
    """3 nodes x 50 concurrent callers of one key: one call."""
    nodes = await three_nodes(cluster)
    calls: list[str] = []
    release = asyncio.Event()
    functions = []
    for node in nodes:

        async def compute(node: pydds.Node = node) -> dict[str, str]:
            calls.append(node.name)
            await release.wait()
            return {"by": node.name}

        functions.append(node.database("cache").cached(ttl=60, key="report")(compute))
    callers = [asyncio.ensure_future(f()) for _ in range(50) for f in functions]
    await until(lambda: len(calls) == 1)
    await settle(2000)  # every claim decided: a second winner would have called by now
    assert len(calls) == 1
    release.set()
    results = await asyncio.gather(*callers)
    assert results == [{"by": calls[0]}] * 150
    assert len(calls) == 1
    flights = [n.database("pydds:flights") for n in nodes]
    await until(lambda: all(len(f) == 0 for f in flights))  # the claims are gone


async def test_when_the_call_raises_another_caller_takes_over(cluster: Cluster) -> None:
    nodes = await three_nodes(cluster)
    calls: list[str] = []
    release = asyncio.Event()
    functions = []
    for node in nodes:

        async def compute(node: pydds.Node = node) -> str:
            calls.append(node.name)
            await release.wait()
            if len(calls) == 1:
                raise RuntimeError("the first call fails")
            return "ok"

        functions.append(node.database("cache").cached(ttl=60, key="k")(compute))
    callers = [asyncio.ensure_future(f()) for _ in range(10) for f in functions]
    await until(lambda: len(calls) == 1)
    await settle(2000)
    release.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    failed = [r for r in results if isinstance(r, RuntimeError)]
    assert len(failed) == 1  # the caller whose call raised; the others got the retry's value
    assert [r for r in results if not isinstance(r, BaseException)] == ["ok"] * 29
    assert len(calls) == 2


async def test_when_the_computing_node_dies_another_takes_over_after_the_lease(
    cluster: Cluster,
) -> None:
    nodes = await three_nodes(cluster)
    calls: list[str] = []
    never = asyncio.Event()
    functions = {}
    for node in nodes:

        async def compute(node: pydds.Node = node) -> str:
            calls.append(node.name)
            if len(calls) == 1:
                await never.wait()  # its node dies while computing
            return node.name

        db = node.database("cache")
        functions[node.name] = db.cached(ttl=60, key="k", lease=5)(compute)
    callers = {name: asyncio.ensure_future(f()) for name, f in functions.items()}
    await until(lambda: len(calls) == 1)
    await settle(2000)
    dead = next(n for n in nodes if n.name == calls[0])
    await cluster.crash(dead)
    callers.pop(dead.name).cancel()
    await cluster.clock.advance(6, step=0.5)
    results = await asyncio.gather(*callers.values())
    assert len(calls) == 2
    assert results == [calls[1]] * 2


async def test_a_stale_value_is_served_while_one_caller_refreshes_it() -> None:
    clock = FakeClock()
    async with pydds.Node("solo", clock=clock) as node:
        db = node.database("cache")
        version = 0

        @db.cached(ttl=10, key="k", stale_while_revalidate=20)
        async def load() -> int:
            nonlocal version
            version += 1
            return version

        assert await load() == 1
        assert db.ttl("k") == pytest.approx(30)  # kept through the revalidation window
        await clock.advance(5)
        assert await load() == 1  # fresh
        await clock.advance(6)
        assert await load() == 1  # stale: served, and refreshed in the background
        assert await load() == 1
        await until(lambda: version == 2)
        await until(lambda: db.keyspace.read("k") == 2)
        assert await load() == 2
        assert version == 2
