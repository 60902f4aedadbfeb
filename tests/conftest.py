"""Fixtures shared by the test modules."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .memcluster import Cluster


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    c = Cluster()
    yield c
    for node in c.nodes:
        await node.close()
