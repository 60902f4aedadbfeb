"""``pydds serve`` processes for the benchmarks that run several (``memory_limit.py``,
``membership.py``): each in its own process group on a free 127.0.0.1 port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss(pid: int) -> int:
    """The resident set of process ``pid``, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


async def serve(name: str, *args: str) -> tuple[asyncio.subprocess.Process, str]:
    """A ``pydds serve`` process in its own process group, once it serves; its
    ``host:port``."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pydds",
        "serve",
        "--name",
        name,
        "--port",
        str(port),
        "--log-level",
        "warning",
        *args,
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
    if "serving on" not in line:
        raise RuntimeError(f"{name} did not start: {line!r}")
    return proc, f"127.0.0.1:{port}"


def stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM to its process group (it leaves and stops)."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
