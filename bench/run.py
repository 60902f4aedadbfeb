"""The benchmark suite: pydds beside the bare transport, Redis and pycrdt-websocket,
in one run on this machine (absolute times drift here; ratios hold).

    python bench/run.py            # medians of 3; joins of 10k, 100k and 1M keys
    python bench/run.py --quick    # one round; joins of 10k and 100k keys (< 2 minutes)
    python bench/run.py --readme   # also rewrite the table and plot in bench/README.md

Prints one JSON object (every figure, the versions, ``nproc``, the ratios
pydds/limit and pydds/peer, and each target met or not), then the markdown table.
Redis needs ``redis-server`` (Debian: ``apt-get install redis-server``); pycrdt-
websocket and redis-py come with ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import cluster
import peers
import persist
import pydds

HERE = Path(__file__).resolve().parent


async def median_of(
    rounds: int, measure: Callable[[], Awaitable[dict[str, float]]]
) -> dict[str, float]:
    """Each figure's median over ``rounds`` runs of ``measure``."""
    runs = [await measure() for _ in range(rounds)]
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


async def local_ops(ops: int) -> dict[str, float]:
    """Local get and set on an embedded node (a held 5-field dict)."""
    from embedded import bench_get, bench_set

    async with pydds.Node() as node:
        db = node.database("bench")
        return {
            "get_per_s": await bench_get(db, ops),
            "set_per_s": await bench_set(db, ops // 2, 100),
        }


def memory(keys: int) -> dict[str, float]:
    """Memory per held key, in a fresh process (RSS after ``keys`` small dicts)."""
    out = subprocess.run(
        [sys.executable, str(HERE / "embedded.py"), "--ops", "1000", "--keys", str(keys)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    figures = json.loads(out.stdout)
    return {
        "bytes_per_key": figures["memory_bytes_per_key"],
        "bytes_per_key_beyond_value": figures["memory_bytes_per_key_beyond_value"],
    }


async def durable(writes: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        return await persist.durable_acks(Path(tmp), writes, 64)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    out["loop"] = cluster.LOOP
    names = ("pydds-store", "pycrdt", "aiohttp", "msgpack", "uvloop", "redis", "pycrdt-websocket")
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    try:
        out["redis-server"] = peers.redis_version()
    except (OSError, subprocess.CalledProcessError):
        out["redis-server"] = "not installed"
    return out


def ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else float("nan")


async def run(quick: bool) -> dict[str, Any]:
    rounds = 1 if quick else 3
    writes = 20_000 if quick else 60_000
    join_sizes = [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]
    started = time.perf_counter()
    result: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "machine": platform.machine(),
        "versions": versions(),
        "rounds": rounds,
        "writes": writes,
    }
    both = await median_of(rounds, lambda: cluster.paths(writes))
    bare = {k.removeprefix("bare_"): v for k, v in both.items() if k.startswith("bare_")}
    node = {k: v for k, v in both.items() if not k.startswith("bare_")}
    with peers.redis_server() as port:
        redis = await median_of(rounds, lambda: _sync(peers.redis_commands(port, writes)))
        redis.update(await median_of(rounds, lambda: peers.redis_pubsub(port, writes)))
    ycrdt = await median_of(rounds, lambda: peers.ycrdt_path(writes // 2))
    local = await median_of(rounds, lambda: local_ops(20_000 if quick else 200_000))
    joins = {str(keys): round(await cluster.join_path(keys), 3) for keys in join_sizes}
    mem = {str(keys): memory(keys) for keys in join_sizes}
    acks = await median_of(rounds, lambda: durable(5_000 if quick else 20_000))
    result.update(
        {
            "bare": bare,
            "pydds": {
                **node,
                "local_get_per_s": local["get_per_s"],
                "local_set_per_s": local["set_per_s"],
                "join_seconds": joins,
                "memory": mem,
                "durable_acks_per_s": acks["durable_acks_per_s"],
            },
            "redis": redis,
            "pycrdt_websocket": ycrdt,
        }
    )
    result["ratios"] = {
        "write_p50_pydds_over_bare": ratio(node["latency_p50_us"], bare["latency_p50_us"]),
        "write_p99_pydds_over_bare": ratio(node["latency_p99_us"], bare["latency_p99_us"]),
        "write_p50_pydds_over_redis_publish": ratio(
            node["latency_p50_us"], redis["publish_p50_us"]
        ),
        "streamed_pydds_over_bare": ratio(node["writes_per_s"], bare["writes_per_s"]),
        "streamed_pydds_over_pycrdt_websocket": ratio(node["writes_per_s"], ycrdt["updates_per_s"]),
        "events_pydds_over_redis_pipelined_publish": ratio(
            node["custom_events_per_s"], redis["pipelined_publish_per_s"]
        ),
        "local_get_pydds_over_redis_get": ratio(local["get_per_s"], redis["get_per_s"]),
    }
    r = result["ratios"]
    result["targets"] = {
        "write one way within 1.3x of bare (p50)": r["write_p50_pydds_over_bare"] <= 1.3,
        "write one way within 1.3x of bare (p99)": r["write_p99_pydds_over_bare"] <= 1.3,
        "write one way faster than Redis PUBLISH -> subscriber (p50)": r[
            "write_p50_pydds_over_redis_publish"
        ]
        < 1.0,
        "streamed >= 70% of batched bare": r["streamed_pydds_over_bare"] >= 0.7,
        "streamed >= 4x pycrdt-websocket": r["streamed_pydds_over_pycrdt_websocket"] >= 4.0,
        "custom events >= Redis pipelined PUBLISH": r["events_pydds_over_redis_pipelined_publish"]
        >= 1.0,
        "local get >= 100x Redis GET": r["local_get_pydds_over_redis_get"] >= 100,
        "durable acks >= 20,000/s": acks["durable_acks_per_s"] >= 20_000,
    }
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


async def _sync(figures: dict[str, float]) -> dict[str, float]:
    return figures


def table(result: dict[str, Any]) -> str:
    """The markdown table of a run."""
    b, p, rd, y = result["bare"], result["pydds"], result["redis"], result["pycrdt_websocket"]
    rows = [
        (
            "write one way, p50 (us)",
            p["latency_p50_us"],
            b["latency_p50_us"],
            f"Redis PUBLISH {rd['publish_p50_us']:.0f}; pycrdt-websocket {y['update_p50_us']:.0f}",
        ),
        (
            "write one way, p99 (us)",
            p["latency_p99_us"],
            b["latency_p99_us"],
            f"Redis PUBLISH {rd['publish_p99_us']:.0f}; pycrdt-websocket {y['update_p99_us']:.0f}",
        ),
        (
            "streamed writes (/s)",
            p["writes_per_s"],
            b["writes_per_s"],
            f"pycrdt-websocket {y['updates_per_s']:.0f}",
        ),
        (
            "custom events streamed (/s)",
            p["custom_events_per_s"],
            "",
            f"Redis pipelined PUBLISH {rd['pipelined_publish_per_s']:.0f}",
        ),
        ("local get (/s)", p["local_get_per_s"], "", f"Redis GET {rd['get_per_s']:.0f}"),
        (
            "local set (/s)",
            p["local_set_per_s"],
            "",
            f"Redis pipelined SET {rd['pipelined_set_per_s']:.0f}",
        ),
        ("durable acks (/s)", p["durable_acks_per_s"], "", ""),
    ]
    for keys, seconds in p["join_seconds"].items():
        rows.append((f"join, {int(keys):,} keys (s)", seconds, "", ""))
    for keys, figures in p["memory"].items():
        rows.append(
            (
                f"memory per held key, {int(keys):,} keys (B)",
                figures["bytes_per_key"],
                "",
                f"{figures['bytes_per_key_beyond_value']} beyond the value",
            )
        )
    lines = ["| measure | pydds | bare limit | peers |", "|---|---|---|---|"]
    for name, mine, limit, others in rows:
        lines.append(f"| {name} | {_num(mine)} | {_num(limit)} | {others} |")
    lines.append("")
    lines.append("| target | met |")
    lines.append("|---|---|")
    for name, met in result["targets"].items():
        lines.append(f"| {name} | {'yes' if met else 'no'} |")
    return "\n".join(lines)


def _num(value: Any) -> str:
    if isinstance(value, float) and value < 100:
        return f"{value:.2f}"
    if isinstance(value, (int, float)):
        return f"{value:,.0f}"
    return str(value)


def plot(result: dict[str, Any], path: Path) -> None:
    """Join time and memory per key against the number of keys (a PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    joins = result["pydds"]["join_seconds"]
    mem = result["pydds"]["memory"]
    keys = [int(k) for k in joins]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    left.plot(keys, list(joins.values()), marker="o")
    left.set_xscale("log")
    left.set_xlabel("directory keys")
    left.set_ylabel("seconds")
    left.set_title("a joining node knows the directory")
    right.plot(keys, [mem[k]["bytes_per_key"] for k in joins], marker="o")
    right.set_xscale("log")
    right.set_xlabel("held keys")
    right.set_ylabel("bytes per key")
    right.set_title("memory per held key")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def update_readme(result: dict[str, Any]) -> None:
    readme = HERE / "README.md"
    text = readme.read_text()
    start, end = "<!-- results -->", "<!-- /results -->"
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    stamp = time.strftime("%Y-%m-%d")
    v = result["versions"]
    about = (
        f"Run of {stamp} (`python bench/run.py`; {result['nproc']} cores, "
        f"Python {v['python']}, pycrdt {v['pycrdt']}, aiohttp {v['aiohttp']}, "
        f"event loop {v['loop']} (uvloop {v['uvloop']}), "
        f"redis-server {v['redis-server']}, redis-py {v['redis']}, pycrdt-websocket "
        f"{v['pycrdt-websocket']}; medians of {result['rounds']}):"
    )
    readme.write_text(f"{head}{start}\n{about}\n\n{table(result)}\n{end}{tail}")
    plot(result, HERE / "join-memory.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one round, smaller sizes")
    parser.add_argument("--readme", action="store_true", help="rewrite bench/README.md's table")
    args = parser.parse_args()
    result = cluster.run(run(args.quick))
    print(json.dumps(result, indent=2))
    print()
    print(table(result))
    if args.readme:
        update_readme(result)


if __name__ == "__main__":
    main()
