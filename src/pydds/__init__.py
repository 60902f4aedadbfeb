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

from .changes import Change
from .clock import Clock, FakeClock, RealClock
from .cluster import ClusterSettings, Warmup
from .collector import tune_gc
from .config import DatabaseSettings, Limits
from .database import Database
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
from .loops import run
from .modules import EventFilter, Module
from .net.auth import ClientToken, Credentials
from .net.membership import Member
from .net.memory import MemoryNetwork
from .net.transport import Link, Transport
from .node import Client, Node

__version__ = "0.1.0"

__all__ = [
    "AckTimeout",
    "Change",
    "Client",
    "ClientToken",
    "Clock",
    "ClusterSettings",
    "Credentials",
    "Database",
    "DatabaseSettings",
    "Event",
    "EventFilter",
    "EventKind",
    "FakeClock",
    "Forbidden",
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
