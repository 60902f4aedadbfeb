"""pydds: a distributed data store and event system for Python, built on CRDTs.

Example::

    import pydds

    async def main():
        async with pydds.Node() as node:
            db = node.database("cache")
            await db.set("user:1", {"name": "Ada", "langs": ["en"]})
            print(await db.get("user:1"))

    pydds.run(main())  # asyncio.run(main()) works too; pydds.run picks uvloop if installed
"""

# The names below are imported on first use (PEP 562), so that ``import pydds`` (and
# the ``pydds`` command, which does not need a node) starts fast; type checkers see
# them as plain imports.
import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from .changes import Change
    from .client import Client
    from .clock import Clock, FakeClock, RealClock
    from .collector import tune_gc
    from .config import DatabaseSettings, Limits
    from .consumers import Consumer, GroupEvent
    from .database import ChangedKeys, Database
    from .errors import (
        AckTimeout,
        Forbidden,
        InvalidName,
        InvalidUpdate,
        InvalidValue,
        KeyNotFound,
        LinkClosed,
        MalformedFrame,
        ModuleError,
        NodeClosed,
        PathNotFound,
        ProtocolError,
        PyddsError,
        StorageError,
        Unavailable,
        WrongType,
    )
    from .events import Event, EventKind, Subscription
    from .eviction import Evictor
    from .loops import run
    from .memory import Footprint
    from .modules import EventFilter, Module
    from .net.auth import ClientToken, Credentials
    from .net.membership import Member
    from .net.memory import MemoryNetwork
    from .net.peers import ClusterSettings, Warmup
    from .net.transport import Link, Transport
    from .node import Node

__version__ = "0.1.0"

#: public name -> the module that defines it
_WHERE = {
    "AckTimeout": ".errors",
    "Change": ".changes",
    "ChangedKeys": ".database",
    "Client": ".client",
    "ClientToken": ".net.auth",
    "Clock": ".clock",
    "ClusterSettings": ".net.peers",
    "Consumer": ".consumers",
    "Credentials": ".net.auth",
    "Database": ".database",
    "DatabaseSettings": ".config",
    "Event": ".events",
    "EventFilter": ".modules",
    "EventKind": ".events",
    "Evictor": ".eviction",
    "FakeClock": ".clock",
    "Footprint": ".memory",
    "Forbidden": ".errors",
    "GroupEvent": ".consumers",
    "InvalidName": ".errors",
    "InvalidUpdate": ".errors",
    "InvalidValue": ".errors",
    "KeyNotFound": ".errors",
    "Limits": ".config",
    "Link": ".net.transport",
    "LinkClosed": ".errors",
    "MalformedFrame": ".errors",
    "Member": ".net.membership",
    "MemoryNetwork": ".net.memory",
    "Module": ".modules",
    "ModuleError": ".errors",
    "Node": ".node",
    "NodeClosed": ".errors",
    "PathNotFound": ".errors",
    "ProtocolError": ".errors",
    "PyddsError": ".errors",
    "RealClock": ".clock",
    "StorageError": ".errors",
    "Subscription": ".events",
    "Transport": ".net.transport",
    "Unavailable": ".errors",
    "Warmup": ".net.peers",
    "WrongType": ".errors",
    "run": ".loops",
    "tune_gc": ".collector",
}

__all__ = [
    "AckTimeout",
    "Change",
    "ChangedKeys",
    "Client",
    "ClientToken",
    "Clock",
    "ClusterSettings",
    "Consumer",
    "Credentials",
    "Database",
    "DatabaseSettings",
    "Event",
    "EventFilter",
    "EventKind",
    "Evictor",
    "FakeClock",
    "Footprint",
    "Forbidden",
    "GroupEvent",
    "InvalidName",
    "InvalidUpdate",
    "InvalidValue",
    "KeyNotFound",
    "Limits",
    "Link",
    "LinkClosed",
    "MalformedFrame",
    "Member",
    "MemoryNetwork",
    "Module",
    "ModuleError",
    "Node",
    "NodeClosed",
    "PathNotFound",
    "ProtocolError",
    "PyddsError",
    "RealClock",
    "StorageError",
    "Subscription",
    "Transport",
    "Unavailable",
    "Warmup",
    "WrongType",
    "__version__",
    "run",
    "tune_gc",
]


def __getattr__(name: str) -> _typing.Any:
    where = _WHERE.get(name)
    if where is not None:
        value = getattr(_importlib.import_module(where, __name__), name)
    else:  # a subpackage or module (pydds.crdt, pydds.net.ws...), imported on first use
        try:
            value = _importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
