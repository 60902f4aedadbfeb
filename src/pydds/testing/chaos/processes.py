"""The node processes: ``pydds serve`` started, killed, paused, restarted, stopped."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class NodeProcess:
    """One ``pydds serve`` process, restartable from its data directory."""

    def __init__(
        self,
        name: str,
        data: Path,
        join: list[str],
        compact_at: int = 100_000,
        tombstone_horizon: float = 6 * 3600.0,
    ) -> None:
        self.name = name
        self.compact_at = compact_at  # its store compacts this often, SIGKILLs or not
        self.tombstone_horizon = tombstone_horizon  # seconds a deleted key is remembered
        self.port = _free_port()  # where it serves (HTTP, and the proxy's target)
        self.proxy_port = _free_port()  # what it advertises
        self.data = data / name
        self.join = join
        self.proc: asyncio.subprocess.Process | None = None
        self.paused = False

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, owners: dict[int, str]) -> None:
        """Start the process, known to the proxies (``owners``) before it dials anyone."""
        args = [
            sys.executable,
            "-m",
            "pydds",
            "serve",
            "--port",
            str(self.port),
            "--name",
            self.name,
            "--advertise",
            f"127.0.0.1:{self.proxy_port}",
            "--module",
            f"pydds.modules.persist:Persistence?path={self.data}&compact_at={self.compact_at}",
            "--tombstone-horizon",
            str(self.tombstone_horizon),
            "--log-level",
            "warning",
        ]
        for address in self.join:
            args += ["--join", address]
        self.proc = await asyncio.create_subprocess_exec(
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        owners[self.proc.pid] = self.name
        assert self.proc.stdout is not None
        await asyncio.wait_for(self.proc.stdout.readline(), 60)  # serving

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    async def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            await self.proc.wait()
        self.paused = False

    async def stop(self) -> None:
        if self.paused:
            self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        if self.proc is not None:
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                await self.kill()


async def _until_linked(http: Any, nodes: dict[str, NodeProcess], count: int) -> None:
    async with asyncio.timeout(60):
        for node in nodes.values():
            while True:
                async with http.get(f"{node.http}/v1/cluster") as response:
                    members = (await response.json())["members"]
                if sum(m["state"] in ("self", "alive") for m in members) == count:
                    break
                await asyncio.sleep(0.1)
