"""A node process writing with ack="durable" is killed with SIGKILL at random
moments, 20 times; after each restart every acknowledged write is there."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from pathlib import Path

import aiohttp

from .helpers import start_serve

ROUNDS = 20
WRITERS = 8


async def start(data_dir: Path) -> tuple[asyncio.subprocess.Process, str]:
    """A node keeping its data in ``data_dir``; the process and its HTTP address."""
    served = await start_serve(
        "--port",
        "0",
        "--name",
        "crashy",
        "--data-dir",
        str(data_dir),
        "--log-level",
        "warning",
        env={"PYDDS_MEMORY": ""},
    )
    return served.proc, served.http


async def test_acknowledged_durable_writes_survive_sigkill(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    acked: dict[str, int] = {}
    counter = iter(range(1 << 30))
    proc = None
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            for round_ in range(ROUNDS):
                proc, base = await start(tmp_path)
                # Every write acknowledged before any kill is there.
                async with session.get(f"{base}/v1/databases/db/keys") as response:
                    present = set(await response.json()) if response.status == 200 else set()
                missing = sorted(set(acked) - present)
                assert not missing, f"seed {seed}, round {round_}: lost {missing[:10]}"
                for key in rng.sample(sorted(acked), min(20, len(acked))):
                    async with session.get(f"{base}/v1/databases/db/keys/{key}") as response:
                        assert await response.json() == acked[key], f"seed {seed}: {key}"

                async def write(base: str = base) -> None:
                    while True:  # ends when the node is killed
                        n = next(counter)
                        key = f"w{n}"
                        try:
                            async with session.put(
                                f"{base}/v1/databases/db/keys/{key}",
                                params={"ack": "durable"},
                                json=n,
                            ) as response:
                                if response.status in (200, 201):
                                    acked[key] = n
                        except (aiohttp.ClientError, TimeoutError):
                            return

                writers = [asyncio.ensure_future(write()) for _ in range(WRITERS)]
                done, _ = await asyncio.wait(writers, timeout=rng.uniform(0.05, 0.4))
                assert not done  # still writing when killed
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
                await asyncio.wait_for(asyncio.gather(*writers), 15)
            assert len(acked) > ROUNDS  # writes were acknowledged in every round, mostly
            proc, base = await start(tmp_path)
            async with session.get(f"{base}/v1/databases/db/keys") as response:
                present = set(await response.json())
            assert set(acked) <= present, f"seed {seed}"
    finally:
        if proc is not None and proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
