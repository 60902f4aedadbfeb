"""``pydds serve`` as a real process on 127.0.0.1, stopped by its process group."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

import aiohttp
import pytest

import pydds
from pydds.cli import main


async def test_serve_answers_health_and_stops_cleanly_on_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pydds",
        "serve",
        "--port",
        "0",
        "--name",
        "t1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own process group, stopped as a whole below
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        match = re.search(r"pydds node t1 serving on (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        async with (
            aiohttp.ClientSession() as session,
            session.get(match.group(1) + "/healthz") as response,
        ):
            assert response.status == 200
            body = await response.json()
        assert body["status"] == "ok"
        assert body["node"] == "t1"
        assert body["version"] == pydds.__version__
        os.killpg(proc.pid, signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert pydds.__version__ in capsys.readouterr().out


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
