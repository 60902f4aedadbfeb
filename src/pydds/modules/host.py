"""Runs a node's modules: starts them in order, pumps their events, stops them in
reverse order, and keeps their failures from reaching the node."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..errors import ModuleError
from .base import Module

if TYPE_CHECKING:
    from ..events import Subscription
    from ..node import Node

__all__ = ["ModuleHost"]

log = logging.getLogger("pydds.modules")


class ModuleHost:
    """The modules of one node."""

    def __init__(self, modules: Iterable[Module]) -> None:
        self.modules = list(modules)
        for module in self.modules:
            if not isinstance(module, Module):
                raise TypeError(f"not a pydds.Module: {module!r}")
        names = [m.name for m in self.modules]
        if len(set(names)) != len(names):
            raise ValueError(f"two modules have one name: {names}")
        self.errors: Counter[str] = Counter()  # exceptions from on_event, by module name
        self._started: list[Module] = []
        self._pumps: list[asyncio.Task[None]] = []
        self._subscriptions: list[Subscription] = []

    async def start(self, node: Node) -> None:
        """Start every module, in order.

        Raises:
            ModuleError: one failed or ran out of time (those started are stopped).
        """
        for module in self.modules:
            if module.events is not None:
                f = module.events
                subscription = node.events(
                    database=f.database,
                    prefix=f.prefix,
                    kinds=f.kinds,
                    names=f.names,
                    maxsize=module.queue_size,
                )
                self._subscriptions.append(subscription)
            try:
                async with asyncio.timeout(module.start_timeout):
                    await module.start(node)
            except Exception as exc:
                await self.stop()
                what = "took too long" if isinstance(exc, TimeoutError) else f"failed: {exc!r}"
                raise ModuleError(f"module {module.name!r} could not start: {what}") from exc
            self._started.append(module)
            if module.events is not None:
                pump = asyncio.get_running_loop().create_task(
                    self._pump(module, self._subscriptions[-1]), name=f"module {module.name}"
                )
                self._pumps.append(pump)
            log.info("module %s started", module.name)

    async def _pump(self, module: Module, subscription: Subscription) -> None:
        async for event in subscription:
            try:
                await module.on_event(event)
            except Exception:
                self.errors[module.name] += 1
                log.exception("module %s failed on a %s event", module.name, event.kind)

    async def stop(self) -> None:
        """Stop the started modules in reverse order, each within its time limit."""
        for subscription in self._subscriptions:
            subscription.close()
        for pump in self._pumps:
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        self._subscriptions.clear()
        self._pumps.clear()
        while self._started:
            module = self._started.pop()
            try:
                async with asyncio.timeout(module.stop_timeout):
                    await module.stop()
            except TimeoutError:
                log.error("module %s did not stop within %ss", module.name, module.stop_timeout)
            except Exception:
                log.exception("module %s failed to stop", module.name)
            else:
                log.info("module %s stopped", module.name)
