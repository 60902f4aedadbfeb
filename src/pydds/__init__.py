"""pydds: a distributed data store and event system for Python, built on CRDTs.

Example::

    import asyncio, pydds

    async def main():
        async with pydds.Node() as node:
            db = node.database("cache")
            await db.set("user:1", {"name": "Ada", "langs": ["en"]})
            print(await db.get("user:1"))

    asyncio.run(main())
"""

from .changes import Change
from .config import DatabaseSettings, Limits
from .database import Database
from .errors import (
    InvalidName,
    InvalidUpdate,
    InvalidValue,
    KeyNotFound,
    MalformedFrame,
    NodeClosed,
    PathNotFound,
    ProtocolError,
    PyddsError,
    WrongType,
)
from .events import Event, EventKind, Subscription
from .node import Node

__version__ = "0.1.0"

__all__ = [
    "Change",
    "Database",
    "DatabaseSettings",
    "Event",
    "EventKind",
    "InvalidName",
    "InvalidUpdate",
    "InvalidValue",
    "KeyNotFound",
    "Limits",
    "MalformedFrame",
    "Node",
    "NodeClosed",
    "PathNotFound",
    "ProtocolError",
    "PyddsError",
    "Subscription",
    "WrongType",
    "__version__",
]
