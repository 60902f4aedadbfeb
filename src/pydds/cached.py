"""Cached calls (``@db.cached``): a function's results kept in a database, each one
computed once across the cluster (single flight).

Theory of operation
-------------------
A call makes its key (the ``key`` template filled with the call's arguments, or the
function's qualified name and its arguments as JSON) and reads it: a hit returns the
stored value. A miss must compute it once, however many callers miss at once:

* **On one node**, the first caller of a key opens a *flight* (a future); every
  later caller of that key waits for it and takes its value.
* **Across the cluster**, the first caller claims the key in the database
  ``pydds:flights``: it appends ``{"node", "token", "until"}`` to the key's claim
  list, acknowledged by every node it reaches now (this one and the members that
  are alive), having seen no live claim there. Reading the list and
  appending happen in one turn of the event loop, so every claim is *blind*: made
  before its node had applied any other live claim. Links deliver in order, so a
  node acknowledges a claim only after its own blind claim (if any) went out on the
  same link: once a claim is acknowledged by every node, its node has every blind
  claim of the round. Every claimer thus sees the same claims, and the one with
  the smallest token computes. The others wait for the value to be written, or for
  the claim list to go (deleted when the call raised, or expired after ``lease``
  seconds if its node died), and then try again.
* The winner writes the value (with the TTL), then deletes the claim list.

Nodes that do not reach each other (a partition, a member that crashed) cannot
share a flight: each side computes once. A client's flights are its own (no node
acknowledges a client, so its claims could not be ordered with the nodes').

With ``stale_while_revalidate``, a value older than ``ttl`` (its time to live is
below ``stale_while_revalidate``) is served while one caller refreshes it in the
background.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import inspect
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from .config import check_seconds
from .errors import AckTimeout, InvalidValue, KeyNotFound, Unavailable
from .events import Subscription

if TYPE_CHECKING:
    from .database import Database
    from .node import Node

__all__ = ["FLIGHTS", "Cached", "Flights"]

log = logging.getLogger("pydds")

#: The database of claims (one list per cached key being computed).
FLIGHTS = "pydds:flights"
#: Rounds of claiming and waiting a call goes through before it computes anyway.
ROUNDS = 4
#: Seconds a claim lasts by default: past it, another caller takes over.
LEASE = 30.0

P = ParamSpec("P")
R = TypeVar("R")
_MISS: Any = object()


@dataclass(eq=False, slots=True)
class Hit:
    """A value found (or computed by another caller)."""

    value: Any
    stale: bool = False  # past ``ttl``, within ``stale_while_revalidate``: renew it


@dataclass(eq=False, slots=True)
class Lease:
    """The right, and the duty, to compute a key's value: ``Flights.finish`` or
    ``Flights.abort`` it."""

    key: str
    flight: asyncio.Future[Any]  # what local callers of the key wait for
    claim: str | None  # the claim list's key in FLIGHTS, None if not claimed there


class Flights:
    """The single flights of one cached function's keys in one database.

    ``begin(key)`` is a ``Hit`` or a ``Lease``: with a lease, compute the value, then
    ``finish(lease, value)`` (or ``abort(lease)`` if computing failed)."""

    def __init__(
        self,
        node: Node,
        db: Database,
        *,
        ttl: float | None,
        lease: float,
        stale_while_revalidate: float | None,
    ) -> None:
        self._node = node
        self._db = db
        self.ttl = ttl
        self.lease = lease
        self.swr = stale_while_revalidate
        self._local: dict[str, asyncio.Future[Any]] = {}

    def stale(self, key: str) -> bool:
        """Whether the stored value of ``key`` is past ``ttl`` (only with
        ``stale_while_revalidate``)."""
        if self.swr is None:
            return False
        try:
            left = self._db.ttl(key)
        except KeyNotFound:
            return False
        return left is not None and left <= self.swr

    async def begin(self, key: str, *, refresh: bool = False) -> Hit | Lease:
        """A hit, or the lease to compute ``key`` (``refresh``: even if it is stored).

        Raises:
            Unavailable: the stored value is held elsewhere and no holder answered.
        """
        for _ in range(ROUNDS):
            flight = self._local.get(key)
            if flight is not None:
                value = await asyncio.shield(flight)
                if value is not _MISS:
                    return Hit(value)
                continue  # that flight failed: take it over
            if not refresh:
                value = await self._db.get(key, _MISS)
                if value is not _MISS:
                    return Hit(value, self.stale(key))
            got = await self._claim(key)
            if got is not None:
                return got
            refresh = False  # another computed it meanwhile, or gave up: read again
        return self._open(key, None)  # coordination gave up: compute here

    def _open(self, key: str, claim: str | None) -> Lease:
        flight: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._local[key] = flight
        return Lease(key, flight, claim)

    def _reachable(self) -> int:
        """How many nodes a claim must reach (this one and every member it reaches
        now); 1: claim on this node only (alone, or a client)."""
        node = self._node
        if node.role != "node":
            return 1
        return sum(m.state in ("self", "alive") for m in node.members())

    async def _claim(self, key: str) -> Lease | None:
        """Claim ``key`` across the cluster: the lease if this caller won, None once
        another's flight ended (its value may be there)."""
        reachable = self._reachable()
        if reachable <= 1:
            return self._open(key, None)
        node = self._node
        flights = node.database(FLIGHTS)
        claim = flight_key(self._db.name, key)
        with contextlib.suppress(Unavailable):
            await flights.get(claim, None)  # the claims, pulled if held elsewhere
        if key in self._local or key in self._db:
            return None  # meanwhile a caller here opened a flight, or the value came
        # From here to the append's own write: one turn of the loop (a blind claim).
        live = _live(flights, claim, node.clock.wall())
        if live:
            await self._wait(key, flights, claim, live)
            return None
        token = secrets.token_hex(8)
        lease = self._open(key, claim)
        mine = {"node": node.name, "token": token, "until": node.clock.wall() + self.lease}
        try:
            await flights.append(claim, [], mine, ack=reachable, ttl=self.lease)
        except AckTimeout:
            return lease  # a member stopped answering: compute here
        except BaseException:
            self._close(lease, _MISS)
            raise
        live = _live(flights, claim, node.clock.wall())
        if live and min(c["token"] for c in live) == token:
            return lease
        self._close(lease, _MISS)
        if live:
            await self._wait(key, flights, claim, live)
        return None  # another's flight ended, or the round's claims were dropped

    async def _wait(
        self, key: str, flights: Database, claim: str, live: list[dict[str, Any]]
    ) -> None:
        """Wait until ``key`` is written, or its claims are gone or expired."""
        node = self._node
        until = max(c["until"] for c in live)
        values = node.events(database=self._db.name, prefix=key, kinds=["created", "changed"])
        claims = node.events(database=FLIGHTS, prefix=claim, kinds=["deleted", "expired"])
        clock = node.clock
        timer = asyncio.ensure_future(
            clock.sleep_until(clock.now() + max(0.0, until - clock.wall()))
        )
        try:
            while not timer.done():
                if key in self._db or claim not in flights:
                    return
                await _first(timer, values, claims)
        finally:
            timer.cancel()
            values.close()
            claims.close()

    async def finish(self, lease: Lease, value: Any) -> None:
        """Store ``value`` (computed under ``lease``) and end the flight.

        Raises:
            InvalidValue: ``value`` is not JSON-like or too large (nothing stored).
        """
        try:
            ttl = None if self.ttl is None else self.ttl + (self.swr or 0.0)
            await self._db.set(lease.key, value, ttl=ttl)
        except BaseException:
            await self.abort(lease)
            raise
        await self._release(lease)
        self._close(lease, value)

    async def abort(self, lease: Lease) -> None:
        """End the flight without a value (computing failed): another caller takes
        over at once."""
        try:
            await self._release(lease)
        finally:
            self._close(lease, _MISS)

    async def _release(self, lease: Lease) -> None:
        if lease.claim is not None and not self._node.closed:
            await self._node.database(FLIGHTS).delete(lease.claim)

    def _close(self, lease: Lease, value: Any) -> None:
        if self._local.get(lease.key) is lease.flight:
            del self._local[lease.key]
        if not lease.flight.done():
            lease.flight.set_result(value)


def _live(flights: Database, claim: str, now: float) -> list[dict[str, Any]]:
    """The claims of ``claim`` whose lease has not run out (malformed ones ignored)."""
    try:
        value = flights.keyspace.read(claim, fresh=False)
    except KeyNotFound:
        return []
    if not isinstance(value, list):
        return []
    return [
        c
        for c in value
        if isinstance(c, dict)
        and isinstance(c.get("token"), str)
        and isinstance(c.get("until"), (int, float))
        and c["until"] > now
    ]


async def _first(timer: asyncio.Future[None], *subscriptions: Subscription) -> None:
    """Wait for the timer, or an event on one of the subscriptions."""
    waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(s.get()) for s in subscriptions]
    try:
        await asyncio.wait([timer, *waits], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


def flight_key(database: str, key: str) -> str:
    """The key of ``key``'s claim list in ``FLIGHTS`` (a digest: any key fits)."""
    return hashlib.sha256(f"{database}\n{key}".encode()).hexdigest()


def key_maker(
    function: Callable[..., Any], template: str | None, max_length: int
) -> Callable[..., str]:
    """How a call of ``function`` names its key: ``template`` formatted with the
    call's arguments by name (``"user:{user_id}"``), or the function's qualified
    name and its arguments as JSON (a digest of them when that is too long)."""
    signature = inspect.signature(function)
    name = f"{function.__module__}.{function.__qualname__}"

    def make(*args: Any, **kwargs: Any) -> str:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        if template is not None:
            try:
                return template.format(**bound.arguments)
            except (KeyError, IndexError, AttributeError, ValueError) as exc:
                raise InvalidValue(f"the key template {template!r} does not fit: {exc}") from None
        text = json.dumps(bound.arguments, sort_keys=True, default=repr, separators=(",", ":"))
        key = f"{name}:{text}"
        if len(key) > max_length or not key.isascii():
            key = f"{name[: max_length - 70]}:{hashlib.sha256(text.encode()).hexdigest()}"
        return key

    return make


class Cached(Generic[P, R]):
    """An async function whose results are cached in a database (``db.cached``).

    Call it as the function; ``await f.invalidate(*args)`` forgets one result,
    ``f.key(*args)`` names its key.
    """

    def __init__(
        self,
        node: Node,
        db: Database,
        function: Callable[P, Awaitable[R]],
        *,
        ttl: float | None,
        key: str | None,
        lease: float,
        stale_while_revalidate: float | None,
    ) -> None:
        self._function = function
        self.flights = Flights(
            node, db, ttl=ttl, lease=lease, stale_while_revalidate=stale_while_revalidate
        )
        self.key = key_maker(function, key, db.keyspace.limits.max_key_length)
        self._db = db
        self._refreshing: dict[str, asyncio.Task[None]] = {}  # stale values being renewed
        functools.update_wrapper(self, function)

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        key = self.key(*args, **kwargs)
        flights = self.flights
        got = await flights.begin(key)
        if isinstance(got, Hit):
            if got.stale and key not in self._refreshing:
                task = asyncio.ensure_future(self._refresh(key, args, kwargs))
                self._refreshing[key] = task
                task.add_done_callback(lambda _: self._refreshing.pop(key, None))
            value: R = got.value
            return value
        return await self._compute(got, args, kwargs)

    async def _compute(self, lease: Lease, args: Any, kwargs: Any) -> R:
        try:
            value = await self._function(*args, **kwargs)
        except BaseException:
            await self.flights.abort(lease)  # exceptions are not cached
            raise
        await self.flights.finish(lease, value)
        return value

    async def _refresh(self, key: str, args: Any, kwargs: Any) -> None:
        """Recompute a stale value in the background (its callers got the old one)."""
        try:
            got = await self.flights.begin(key, refresh=True)
            if isinstance(got, Lease):
                await self._compute(got, args, kwargs)
        except Exception:
            log.exception("refreshing the cached %s failed", key)

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Forget the result of these arguments; whether one was stored."""
        return await self._db.delete(self.key(*args, **kwargs))


def check_cached(ttl: float | None, lease: float, stale_while_revalidate: float | None) -> None:
    """Check ``db.cached``'s settings.

    Raises:
        InvalidValue: one is not a positive number of seconds (``ttl`` may be None).
    """
    if ttl is not None:
        check_seconds("ttl", ttl)
    check_seconds("lease", lease)
    if stale_while_revalidate is not None:
        check_seconds("stale_while_revalidate", stale_while_revalidate)
        if ttl is None:
            raise InvalidValue("stale_while_revalidate needs a ttl")
