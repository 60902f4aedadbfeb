"""Modules that tests load by spec (``tests.modules_for_tests:Name``), also from
``pydds serve --module`` processes started in the project root."""

from __future__ import annotations

from typing import Any

import pydds


class Marker(pydds.Module):
    """Writes ``marks/started`` at start, with its options as the value."""

    name = "marker"

    def __init__(self, **options: Any) -> None:
        self.options = options

    async def start(self, node: pydds.Node) -> None:
        await node.database("marks").set("started", self.options)


class Broken(pydds.Module):
    """Fails to start."""

    name = "broken"

    async def start(self, node: pydds.Node) -> None:
        raise RuntimeError("no disk here")


NotAModule = dict
