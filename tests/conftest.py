"""Fixtures shared by the test modules."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from .helpers import Served, start_serve, stop_process
from .memcluster import Cluster


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    c = Cluster()
    yield c
    for node in c.nodes:
        await node.close()


@pytest.fixture
async def served() -> AsyncIterator[Callable[..., Awaitable[Served]]]:
    """Starts ``pydds serve`` processes; each is stopped by its process group at the end."""
    started: list[Served] = []

    async def start(*args: str, env: dict[str, str] | None = None) -> Served:
        s = await start_serve(*args, env=env)
        started.append(s)
        return s

    yield start
    for s in started:
        await stop_process(s.proc)
