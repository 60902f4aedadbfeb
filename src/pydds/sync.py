"""The blocking API: a node or a client on an event loop of its own, in a background
thread, for programs without one (Flask, Django, scripts, a plain Python shell).

Theory of operation
-------------------
``Node`` (and ``Client``) starts a thread that runs a new event loop, makes the
``pydds.Node`` there and starts it. Every call hands a coroutine or a function to
that loop (``asyncio.run_coroutine_threadsafe``, thread-safe) and blocks the calling
thread until it is done, so calls from many threads are safe: the node's state is
only ever touched by its loop's thread. A call made from that thread itself (in a
handler running on the node's loop) would wait for itself: it raises
``RuntimeError`` instead. ``close()`` (or leaving the ``with`` block) closes the
node and ends the thread.

Example::

    import pydds.sync

    with pydds.sync.Node() as node:
        db = node.database("cache")
        db.set("user:1", {"name": "Ada"}, ttl=60)
        db.get("user:1")          # {'name': 'Ada'}
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import CancelledError, Future
from types import TracebackType
from typing import Any, Generic, ParamSpec, TypeVar

from . import node as _node
from .cached import Flights, Hit, Lease, check_cached, key_maker
from .client import Client as _AsyncClient
from .database import Ack
from .database import Database as _AsyncDatabase
from .errors import NodeClosed
from .events import Event, Subscription
from .net.membership import Member

__all__ = ["Cached", "Client", "Database", "Events", "Node"]

log = logging.getLogger("pydds")
T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")
_RAISE: Any = object()


class _Loop:
    """An event loop running in a daemon thread of its own."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._lock = threading.Lock()  # calls are handed over, or refused once stopping
        self._stopping = False
        self._waiting: set[Future[Any]] = set()  # what calling threads wait for
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _check(self) -> None:
        if self._stopping or self.loop.is_closed():
            raise NodeClosed("the node is closed")
        if threading.current_thread() is self._thread:
            raise RuntimeError(
                "a blocking pydds call from the node's own event loop would wait for "
                "itself: use the async API there"
            )

    def _wait(self, future: Future[T], timeout: float | None) -> T:
        try:
            return future.result(timeout)
        except CancelledError:
            raise NodeClosed("the node closed during the call") from None
        finally:
            with self._lock:
                self._waiting.discard(future)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop; block until it is done."""
        with self._lock:
            try:
                self._check()
            except BaseException:
                coro.close()  # never to run
                raise
            future = asyncio.run_coroutine_threadsafe(coro, self.loop)
            self._waiting.add(future)
        return self._wait(future, timeout)

    def call(self, function: Callable[[], T]) -> T:
        """Call ``function`` on the loop's thread; block for its result."""
        future: Future[T] = Future()

        def call() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(function())
            except BaseException as exc:  # raised again in the calling thread
                future.set_exception(exc)

        with self._lock:
            self._check()
            self.loop.call_soon_threadsafe(call)
            self._waiting.add(future)
        return self._wait(future, None)

    def stop(self) -> None:
        """End what still runs on the loop (as ``asyncio.run`` does), then the loop;
        calls still waiting end with ``NodeClosed``."""
        if self.loop.is_closed() or threading.current_thread() is self._thread:
            return
        with self._lock:
            self._stopping = True
        asyncio.run_coroutine_threadsafe(_end_tasks(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()
        with self._lock:
            for future in self._waiting:
                future.cancel()


async def _end_tasks() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()


class Node:
    """A ``pydds.Node`` with a blocking API, running on an event loop in a thread of
    its own. It takes the arguments of ``pydds.Node`` and is started when made.

    Example::

        with pydds.sync.Node(listen="127.0.0.1:0") as node:
            node.database("cache").set("k", 1)
            print(node.address, [m.name for m in node.members()])
    """

    _kind: type[_node.Node] = _node.Node

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._loop = _Loop(f"pydds-{self._kind.__name__.lower()}")
        try:
            self._node: _node.Node = self._loop.call(lambda: self._kind(*args, **kwargs))
            self._loop.run(self._node.start())
        except BaseException:
            self._loop.stop()
            raise

    def __repr__(self) -> str:
        return f"<pydds.sync.{type(self).__name__} {self._node!r}>"

    def __enter__(self) -> Node:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def node(self) -> _node.Node:
        """The async node underneath (to be used only on its own loop)."""
        return self._node

    @property
    def name(self) -> str:
        """The node's name."""
        return self._node.name

    @property
    def address(self) -> str | None:
        """Where the node accepts links (None: it does not listen)."""
        return self._node.address

    @property
    def closed(self) -> bool:
        """Whether the node is closed."""
        return self._node.closed

    def database(self, name: str, **settings: Any) -> Database:
        """The database ``name`` (``pydds.Node.database``: ``stale_after=``, ``ttl=``)."""
        database = self._loop.call(lambda: self._node.database(name, **settings))
        return Database(self._loop, database, self._node)

    def databases(self) -> list[str]:
        """The names of the node's databases."""
        return self._loop.call(self._node.databases)

    def members(self) -> list[Member]:
        """Every member of the cluster as this node sees it."""
        return self._loop.call(self._node.members)

    def emit(self, name: str, payload: Any = None) -> None:
        """Emit a custom event to every node and client of the cluster."""
        self._loop.run(self._node.emit(name, payload))

    def events(self, **filters: Any) -> Events:
        """A subscription to events (``pydds.Node.events``'s filters), to iterate in
        this thread; close it, or use it with ``with``."""
        return Events(self._loop, self._loop.call(lambda: self._node.events(**filters)))

    def close(self) -> None:
        """Close the node (it leaves the cluster) and end its thread."""
        if not self._loop.loop.is_closed():
            try:
                self._loop.run(self._node.close())
            finally:
                self._loop.stop()


class Client(Node):
    """A ``pydds.Client`` with a blocking API (see ``Node``).

    Example::

        with pydds.sync.Client(join=["127.0.0.1:7400"]) as client:
            client.database("cache").set("k", 1)
    """

    _kind = _AsyncClient


class Events:
    """A subscription read from a thread: ``get(timeout)``, or iterate."""

    def __init__(self, loop: _Loop, subscription: Subscription) -> None:
        self._loop = loop
        self._subscription = subscription

    def __enter__(self) -> Events:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Event]:
        while True:
            try:
                yield self.get()
            except (StopAsyncIteration, NodeClosed):  # closed: the iteration ends
                return

    def get(self, timeout: float | None = None) -> Event:
        """The next event, waiting at most ``timeout`` seconds (None: no bound).

        Raises:
            TimeoutError: none came in time.
            StopAsyncIteration: the subscription is closed.
        """
        return self._loop.run(self._subscription.get(timeout=timeout))

    def close(self) -> None:
        """End the subscription."""
        if not self._loop.loop.is_closed():
            self._loop.call(self._subscription.close)


class Database:
    """A ``pydds.Database`` with a blocking API: the same methods, without ``await``.

    Example::

        db = node.database("cache")
        db.set_many({"a": 1, "b": 2}, ack="majority")
        db.get_many(["a", "b"])   # {'a': 1, 'b': 2}
    """

    def __init__(self, loop: _Loop, database: _AsyncDatabase, node: _node.Node) -> None:
        self._loop = loop
        self._db = database
        self._node = node

    def __repr__(self) -> str:
        return self._loop.call(lambda: f"<pydds.sync.Database {self._db!r}>")

    @property
    def name(self) -> str:
        """The database's name."""
        return self._db.name

    def __contains__(self, key: object) -> bool:
        return self._loop.call(lambda: key in self._db)

    def __len__(self) -> int:
        return self._loop.call(lambda: len(self._db))

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def keys(self, prefix: str = "", *, pattern: str | None = None) -> list[str]:
        """The keys, sorted (``pydds.Database.keys``)."""
        return self._loop.call(lambda: self._db.keys(prefix, pattern=pattern))

    def get(self, key: str, default: Any = _RAISE) -> Any:
        """The value of ``key`` (``KeyNotFound`` if absent, unless ``default``)."""
        if default is _RAISE:
            return self._loop.run(self._db.get(key))
        return self._loop.run(self._db.get(key, default))

    def set(self, key: str, value: Any, *, ack: Ack = "local", ttl: float | None = None) -> None:
        """Set ``key`` to ``value``."""
        self._loop.run(self._db.set(key, value, ack=ack, ttl=ttl))

    def update(
        self, key: str, fields: dict[str, Any], *, ack: Ack = "local", ttl: float | None = None
    ) -> None:
        """Set the given fields of the dict value of ``key``."""
        self._loop.run(self._db.update(key, fields, ack=ack, ttl=ttl))

    def append(
        self,
        key: str,
        path: Sequence[str | int],
        item: Any,
        *,
        ack: Ack = "local",
        ttl: float | None = None,
    ) -> None:
        """Append ``item`` to the list at ``path`` in the value of ``key``."""
        self._loop.run(self._db.append(key, path, item, ack=ack, ttl=ttl))

    def incr(
        self, key: str, amount: int = 1, *, ack: Ack = "local", ttl: float | None = None
    ) -> int:
        """Add ``amount`` to the counter ``key``; the new total."""
        return self._loop.run(self._db.incr(key, amount, ack=ack, ttl=ttl))

    def delete(self, key: str, *, ack: Ack = "local") -> bool:
        """Delete ``key``; whether it existed."""
        return self._loop.run(self._db.delete(key, ack=ack))

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The values of the ``keys`` found."""
        wanted = list(keys) if not isinstance(keys, str) else keys
        return self._loop.run(self._db.get_many(wanted))

    def set_many(
        self, items: Mapping[str, Any], *, ack: Ack = "local", ttl: float | None = None
    ) -> None:
        """Set every key of ``items``, one acknowledgement round."""
        self._loop.run(self._db.set_many(items, ack=ack, ttl=ttl))

    def delete_many(self, keys: Iterable[str], *, ack: Ack = "local") -> int:
        """Delete the ``keys``; how many existed."""
        doomed = list(keys) if not isinstance(keys, str) else keys
        return self._loop.run(self._db.delete_many(doomed, ack=ack))

    def ttl(self, key: str) -> float | None:
        """Seconds left before ``key`` expires (None: no time to live)."""
        return self._loop.call(lambda: self._db.ttl(key))

    def expire(self, key: str, seconds: float, *, ack: Ack = "local") -> bool:
        """Give ``key`` ``seconds`` to live from now; whether it exists."""
        return self._loop.run(self._db.expire(key, seconds, ack=ack))

    def persist(self, key: str, *, ack: Ack = "local") -> bool:
        """Drop the time to live of ``key``; whether it had one."""
        return self._loop.run(self._db.persist(key, ack=ack))

    def holds(self, key: str) -> bool:
        """Whether this node holds the value of ``key``."""
        return self._loop.call(lambda: self._db.holds(key))

    def invalidate(self, *keys: str, ack: Ack = "local") -> int:
        """Forget cached results (or any keys); how many there were."""
        return self.delete_many(keys, ack=ack)

    def cached(
        self,
        *,
        ttl: float | None = None,
        key: str | None = None,
        lease: float = 30.0,
        stale_while_revalidate: float | None = None,
    ) -> Callable[[Callable[P, R]], Cached[P, R]]:
        """``pydds.Database.cached`` for a plain function: it runs in the calling
        thread, and its results are computed once across threads and the cluster.

        Example::

            @db.cached(ttl=60, key="user:{user_id}")
            def load_user(user_id: int) -> dict:
                return fetch_from_the_database(user_id)
        """
        check_cached(ttl, lease, stale_while_revalidate)

        def decorate(function: Callable[P, R]) -> Cached[P, R]:
            flights = self._loop.call(
                lambda: Flights(
                    self._node,
                    self._db,
                    ttl=ttl,
                    lease=lease,
                    stale_while_revalidate=stale_while_revalidate,
                )
            )
            return Cached(self, flights, function, key)

        return decorate


class Cached(Generic[P, R]):
    """A plain function whose results are cached (``pydds.sync.Database.cached``)."""

    def __init__(
        self, db: Database, flights: Flights, function: Callable[P, R], key: str | None
    ) -> None:
        self._db = db
        self._loop = db._loop
        self._flights = flights
        self._function = function
        self.key = key_maker(function, key, db._db.keyspace.limits.max_key_length)
        self._refreshing: set[str] = set()
        self._lock = threading.Lock()
        functools.update_wrapper(self, function)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        key = self.key(*args, **kwargs)
        got = self._loop.run(self._flights.begin(key))
        if isinstance(got, Hit):
            if got.stale:
                with self._lock:
                    start = key not in self._refreshing
                    self._refreshing.add(key)
                if start:
                    threading.Thread(
                        target=self._refresh, args=(key, args, kwargs), daemon=True
                    ).start()
            value: R = got.value
            return value
        return self._compute(got, args, kwargs)

    def _compute(self, lease: Lease, args: Any, kwargs: Any) -> R:
        try:
            value = self._function(*args, **kwargs)
        except BaseException:
            self._loop.run(self._flights.abort(lease))
            raise
        self._loop.run(self._flights.finish(lease, value))
        return value

    def _refresh(self, key: str, args: Any, kwargs: Any) -> None:
        try:
            got = self._loop.run(self._flights.begin(key, refresh=True))
            if isinstance(got, Lease):
                self._compute(got, args, kwargs)
        except Exception:
            log.exception("refreshing the cached %s failed", key)
        finally:
            with self._lock:
                self._refreshing.discard(key)

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Forget the result of these arguments; whether one was stored."""
        return self._db.delete(self.key(*args, **kwargs))
