"""The node: the one orchestrator that owns databases, subscribers and tasks.

A node alone is a valid cluster: it stores databases in memory, turns every change
into events, and runs custom-event handlers. Given an address to listen on or nodes
to join, it links to other nodes (``cluster.py``) and replicates. Replication also
hooks in through ``add_change_listener`` (every change this node makes, as a
``Change``) and ``apply_change`` (a change made elsewhere).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from types import TracebackType
from typing import Any

from .acks import parse_ack
from .bus import EventBus
from .changes import Change
from .clock import Clock, RealClock
from .cluster import Cluster, ClusterSettings, Traffic, Warmup
from .config import DatabaseSettings, Limits, check_name
from .crdt import values
from .crdt.keydoc import LiveDocs
from .database import Database
from .errors import Forbidden, InvalidValue, ModuleError, NodeClosed, Unavailable
from .events import Event, EventKind, Subscription
from .keyspace import Keyspace
from .modules.base import Module
from .modules.host import ModuleHost
from .net.auth import Credentials
from .net.membership import Member
from .net.transport import Transport
from .store import Store

__all__ = ["Node"]

log = logging.getLogger("pydds")

_UNSET: Any = object()
#: Yjs client ids stay below 2**53 so that JavaScript peers can read them exactly.
_CLIENT_ID_LIMIT = 2**53

Handler = Callable[[Event], Awaitable[None] | None]

#: Seconds between two sweeps for stale keys.
SWEEP_EVERY = 1.0


class Node:
    """A pydds node. Alone, it is a one-node cluster and an embedded store.

    Example::

        async with pydds.Node() as node:
            db = node.database("cache", expire=300)
            await db.set("user:1", {"name": "Ada"})
            async with node.events(database="cache") as events:
                await db.delete("user:1")
                print(await events.get(timeout=1))   # Event(kind='deleted', ...)

    A node of a cluster listens and joins::

        async with pydds.Node(listen="127.0.0.1:0", join=["127.0.0.1:7400"]) as node:
            print(node.address, [m.name for m in node.members()])

    Args:
        name: the node's name, the origin of its changes (default: random).
        listen: where to accept links (``host:port``; port 0 picks a free one).
        advertise: the address other nodes should dial to reach this one, when it
            differs from the bound one (proxies, NAT, containers); default: the
            bound address.
        join: addresses of nodes to join through (any one is enough).
        transport: how links are made (default: WebSockets; tests pass an
            in-memory network's transport).
        clock: the node's time (default: the event loop's; tests pass a FakeClock).
        cluster: timing and bounds of links (``pydds.ClusterSettings``).
        limits: size and queue limits (``pydds.Limits``).
        credentials: cluster secrets and client tokens (``pydds.Credentials``);
            without, every link is accepted (open mode).
        modules: modules to run on this node (``pydds.Module``), started in order
            before the node listens or joins, stopped in reverse order first when
            it closes.
    """

    role = "node"  # "node", or "client" for a Client

    def __init__(
        self,
        name: str | None = None,
        *,
        listen: str | None = None,
        advertise: str | None = None,
        join: Iterable[str] = (),
        transport: Transport | None = None,
        clock: Clock | None = None,
        cluster: ClusterSettings | None = None,
        limits: Limits | None = None,
        modules: Iterable[Module] = (),
        credentials: Credentials | None = None,
    ) -> None:
        self.name = check_name("node", name) if name is not None else f"node-{secrets.token_hex(4)}"
        self.limits = limits or Limits()
        self.clock: Clock = clock or RealClock()
        self._listen = listen
        self._advertise = advertise
        self._join = list(join)
        self._transport = transport
        self._cluster_settings = cluster or ClusterSettings()
        self._cluster: Cluster | None = None
        self._sweeper: asyncio.Task[None] | None = None
        #: The Yjs client id of this node's writes; new for every node object, so two
        #: live writers never share one (Yjs would diverge silently).
        self.client_id = secrets.randbelow(_CLIENT_ID_LIMIT - 1) + 1
        self.handler_errors = 0  # exceptions raised by custom-event handlers
        self._bus = EventBus(self.limits.event_queue)
        #: Events this node recorded, by kind (whether or not anyone subscribed).
        self.event_counts: Counter[str] = self._bus.counts
        self._live = LiveDocs(self.limits.live_docs)
        self._databases: dict[str, Database] = {}
        self._change_listeners: list[Callable[[Change], None]] = []
        self._read_listeners: list[Callable[[str, str], None]] = []
        self._handlers: set[asyncio.Task[None]] = set()
        self._closed = False
        self._closing = False
        self._modules = ModuleHost(modules)
        #: What this node's links prove and accept (``pydds.Credentials``); none: open.
        self.credentials = credentials or Credentials()
        #: A client's token: what it may do, checked before asking its gateway.
        self._scope = self.credentials.token if self.role == "client" else None
        self._store: Store | None = None  # the store that keeps data on disk, if any

    def __repr__(self) -> str:
        state = "closed" if self._closed else (self.address or "embedded")
        members = len(self.members())
        return (
            f"<{type(self).__name__} {self.name!r} {state} members={members} "
            f"databases={len(self._databases)}>"
        )

    def _repr_html_(self) -> str:
        """Jupyter's rich display: members, links, databases, recent events."""
        from .display import node_html

        return node_html(self)

    def authorize(self, right: str, database: str | None = None) -> None:
        """Check a client's own token before its gateway would refuse (and close
        the link); a node may do anything.

        Raises:
            Forbidden: the token lacks ``right`` (on ``database``).
        """
        token = self._scope
        if token is None:
            return
        if right not in token.rights or (
            database is not None and token.databases is not None and database not in token.databases
        ):
            where = f" on {database!r}" if database is not None else ""
            raise Forbidden(f"token {token.id!r} has no {right} right{where}")

    def recent_events(self) -> list[Event]:
        """The last events this node recorded (at most ``RECENT_EVENTS``), oldest first."""
        return self._bus.recent()

    def traffic(self) -> dict[str, Traffic]:
        """What each open link carried since it opened (bytes and messages in and
        out), by peer name; empty for a node with no links."""
        if self._cluster is None:
            return {}
        return {peer: replace(t) for peer, t in self._cluster.traffic().items()}

    def traffic_total(self) -> Traffic:
        """What every link carried since the node started (a copy)."""
        return replace(self._cluster.totals) if self._cluster is not None else Traffic()

    def network_counts(self) -> Counter[str]:
        """Counts of the network's work and faults since the node started, by name:
        ``pull:asked``, ``pull:timeout``, ``ack:waited``, ``ack:timeout``,
        ``error:<kind>``, ... (a copy; ``pydds.metrics`` exports them)."""
        return Counter(self._cluster.stats) if self._cluster is not None else Counter()

    @property
    def module_errors(self) -> Counter[str]:
        """Exceptions raised by modules' ``on_event``, by module name."""
        return self._modules.errors

    @property
    def modules(self) -> list[Module]:
        """This node's modules, in start order."""
        return list(self._modules.modules)

    @property
    def closed(self) -> bool:
        """Whether the node was closed."""
        return self._closed

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def start(self) -> None:
        """Listen and join as configured (``async with`` calls this).

        A node it cannot join now is dialed again in the background with backoff;
        the node starts anyway (offline tolerance).
        """
        if self._closed:
            raise NodeClosed(f"node {self.name!r} is closed")
        if self._sweeper is not None:
            return  # started already
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())
        if self.role == "client":
            await self._find_gateway()
            return
        try:
            await self._modules.start(self)
        except ModuleError:
            await self.close()
            raise
        if self._listen is not None and (self._cluster is None or self._cluster.address is None):
            await self._network().listen(self._listen, self._advertise)
        for address in self._join:
            try:
                await self.join(address)
            except OSError as exc:
                log.warning(
                    "%s: cannot join %s now: %s; it will be retried in the background",
                    self.name,
                    address,
                    exc,
                )
                self._network().redial(address)

    async def _find_gateway(self) -> None:
        """A client links to the first node of ``join`` that answers; the others are
        kept as gateways to move to. With none answering, it goes on trying in the
        background."""
        errors = []
        for address in self._join:
            try:
                await self.join(address)
                return
            except OSError as exc:
                errors.append(f"{address}: {exc}")
        log.warning("%s: no gateway answered (%s); retrying", self.name, "; ".join(errors))
        self._network().find_gateway(self._join)

    def _network(self) -> Cluster:
        if self._cluster is None:
            transport = self._transport
            if transport is None:
                from .net.ws import WebSocketTransport

                transport = WebSocketTransport()
            self._cluster = Cluster(self, transport, self.clock, self._cluster_settings)
        return self._cluster

    @property
    def address(self) -> str | None:
        """Where this node accepts links (None when it does not listen)."""
        return self._cluster.address if self._cluster is not None else None

    async def join(self, address: str) -> None:
        """Link to the node at ``address`` (and through it, to the whole cluster).

        Writes made while alone merge on join. Waits until the link is open.

        Raises:
            LinkClosed: the node could not be reached in time (also an OSError).
        """
        if self._closed:
            raise NodeClosed(f"node {self.name!r} is closed")
        await self._network().join(address)

    @property
    def warmup(self) -> Warmup:
        """Progress of pulling in, after a join, the values other nodes hold fresh."""
        if self._cluster is None:
            return Warmup(0, 0, 0, False)
        return self._cluster.warmup

    async def _sweep_forever(self) -> None:
        while not self._closed:
            await self.clock.sleep_until(self.clock.now() + SWEEP_EVERY)
            self.sweep()

    def sweep(self) -> None:
        """Mark the keys not accessed for their database's ``expire`` stale: an event
        says so, and peers stop pushing their changes here; and remove the members
        suspect for longer than ``dead_after`` (one without an address is never
        redialed, so nothing else would). Runs every ``SWEEP_EVERY`` seconds once the
        node is started."""
        if self._cluster is not None:
            self._cluster.expire_members()
        for name, db in self._databases.items():
            for key, gen in db._keyspace.sweep():
                self.publish(Event(EventKind.STALE, name, key, self.name))
                if self._cluster is not None:
                    self._cluster.release(name, key, gen)

    def ack_level(self, ack: object) -> tuple[bool, str | int]:
        """A write's ack level, checked before the write is made: (durable, level)
        (see ``parse_ack``).

        Raises:
            InvalidValue: not a level, or ``durable`` with no store on this node.
        """
        durable, level = parse_ack(ack)
        if durable and self._store is None:
            raise InvalidValue(
                f"ack {ack!r} needs a store on node {self.name!r} (the persistence module)"
            )
        return durable, level

    async def commit(self, change: Change | None, ack: str | int = "local") -> None:
        """Record a change this node just made (``record``), then wait as its ack
        level says: for enough nodes to apply it, and, for ``durable``, for this
        node's store to have it on disk. ``Database`` writes call this with what
        the keyspace returned (None: the write changed nothing) and a level checked
        by ``ack_level`` before writing.

        Raises:
            AckTimeout: too few nodes acknowledged in time (the write stands).
            StorageError: ``durable`` and the store could not write it (it stands).
        """
        durable, level = (False, "local") if ack == "local" else self.ack_level(ack)
        cluster = self._cluster
        if level == "local" or cluster is None:  # alone, this node is every node
            if change is not None:
                self.record(change)
            if cluster is not None and cluster.congested:
                await cluster.flush()
            if durable:
                assert self._store is not None
                await self._store.barrier()
            return
        waiting = self.record(change, level) if change is not None else None
        if durable:
            assert self._store is not None
            on_disk = asyncio.ensure_future(self._store.barrier())
            try:
                if waiting is not None:
                    await cluster.wait_ack(waiting, level)
            finally:
                await on_disk
        elif waiting is not None:
            await cluster.wait_ack(waiting, level)

    def attach_store(self, store: Store) -> None:
        """Send every update of every database, now and later, to ``store``'s journal
        (the persistence module calls this once it has restored the stored data).

        Raises:
            ValueError: a store is attached already.
        """
        if self._store is not None:
            raise ValueError(f"node {self.name!r} has a store already")
        self._store = store
        for name, db in self._databases.items():
            db._keyspace.journal = store.journal(name)

    async def refresh(self, database: str, key: str) -> bool:
        """Refresh a stale or missing copy from its holders; True if it is current
        (also when nobody else is in the cluster: this copy is all there is)."""
        try:
            await self.pull(database, key)
            return True
        except Unavailable:
            if self._cluster is None or self._cluster.alone:
                # Nobody else is in the cluster: this copy is all there is.
                self._databases[database]._keyspace.refreshed(key)
                return True
            return False

    def members(self) -> list[Member]:
        """Every member of the cluster as this node sees it, this node first (a
        client lists the nodes it knows: it is never a member)."""
        if self._cluster is None:
            listed = [Member(self.name, None, "node", "self")]
        else:
            listed = self._cluster.members()
        return listed if self.role == "node" else listed[1:]

    async def pull(self, database: str, key: str) -> None:
        """Pull the value of ``key`` from the nodes that hold it (a bounded wait);
        ``Database.get`` does this for a value not held here.

        Raises:
            Unavailable: no peer holds it, or none answered in time.
            KeyNotFound: the key is absent.
        """
        if self._cluster is None:
            raise Unavailable(f"{key!r} of {database!r} is not held here and no peer is linked")
        await self._cluster.pull(database, key)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the node: modules stop, subscriptions end, handlers stop, links
        close, memory is freed. Idempotent."""
        if self._closed or self._closing:
            return
        self._closing = True
        await self._modules.stop()  # while the node still serves them
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        if self._cluster is not None:
            await self._cluster.close()
        self._bus.close()
        tasks = list(self._handlers)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for db in self._databases.values():
            db._keyspace.close()

    # -- databases -------------------------------------------------------------------

    def database(self, name: str, *, expire: float | None = _UNSET) -> Database:
        """The database ``name``, made on first use.

        Args:
            name: 1 to 128 characters of ``A-Z a-z 0-9 _ . : -``.
            expire: seconds without a read or write after which a key goes stale on
                a node, or None for never. Given for an existing database, it
                changes the setting.

        Raises:
            InvalidName: the name breaks the rules.
            InvalidValue: ``expire`` is not a positive number or None.
        """
        if self._closed:
            raise NodeClosed(f"node {self.name!r} is closed")
        if expire is not _UNSET and expire is not None:
            if isinstance(expire, bool) or not isinstance(expire, (int, float)):
                raise InvalidValue(f"expire must be seconds or None, not {expire!r}")
            if not (math.isfinite(expire) and expire > 0):
                raise InvalidValue(f"expire must be a positive number of seconds, not {expire}")
        db = self._databases.get(name)
        if db is None:
            check_name("database", name)
            if len(self._databases) >= self.limits.max_databases:
                raise InvalidValue(
                    f"node {self.name!r} has {len(self._databases)} databases, its limit"
                )
            settings = DatabaseSettings(expire=None if expire is _UNSET else expire)
            keyspace = Keyspace(
                name,
                settings,
                client_id=self.client_id,
                node_name=self.name,
                limits=self.limits,
                live=self._live,
                now=self.clock.now,
            )
            if self._store is not None:
                keyspace.journal = self._store.journal(name)
            db = self._databases[name] = Database(self, keyspace)
        elif expire is not _UNSET and expire != db.settings.expire:
            db._keyspace.settings = DatabaseSettings(expire=expire)
        return db

    def databases(self) -> list[str]:
        """The names of this node's databases, sorted."""
        return sorted(self._databases)

    # -- events ----------------------------------------------------------------------

    def events(
        self,
        *,
        database: str | None = None,
        prefix: str | None = None,
        kinds: Iterable[str] | None = None,
        names: Iterable[str] | None = None,
        maxsize: int | None = None,
    ) -> Subscription:
        """Subscribe to events, as an async iterator (use it with ``async with``).

        Args:
            database: only events of this database.
            prefix: only events of keys starting with this.
            kinds: only these kinds (``"created"``, ``"changed"``, ``"deleted"``,
                ``"custom"``); ``"overflow"`` events are always delivered.
            names: only custom events with these names.
            maxsize: the queue's bound (default ``limits.event_queue``); when full,
                the oldest event is dropped and an ``overflow`` event reports it.

        Example::

            async with node.events(database="cache", prefix="user:") as events:
                async for event in events:
                    print(event.kind, event.key)
        """
        if self._closed:
            raise NodeClosed(f"node {self.name!r} is closed")
        return self._bus.subscribe(
            database=database, prefix=prefix, kinds=kinds, names=names, maxsize=maxsize
        )

    def publish(self, event: Event) -> None:
        """Record an event this node made or received (membership, warm-up, custom
        events from peers) and deliver it to the subscriptions it matches."""
        self._bus.publish(event)

    def record(self, change: Change, ack: str | int = "local") -> asyncio.Future[None] | None:
        """Take a change a keyspace of this node returned: one made here goes to the
        change listeners and to peers (with its ack level: ``"local"``, ``"majority"``,
        ``"all"`` or a number, checked), and one with a kind is an event. ``commit``
        calls this for a local write, the network for what a peer's message changed.

        Returns:
            With an ack level beyond ``"local"``, a future done once enough nodes
            applied the change; None otherwise.
        """
        waiting = None
        kind = change.kind
        if change.origin == self.name and (self._change_listeners or self._cluster is not None):
            if self._change_listeners:
                for listener in list(self._change_listeners):
                    listener(change)
            if self._cluster is not None:
                waiting = self._cluster.changed(change, ack if kind is not None else "local")
        if kind is not None:
            self._bus.publish_change(change, self._keyspace_of)
        return waiting

    def _keyspace_of(self, database: str) -> Keyspace:
        return self._databases[database]._keyspace

    # -- custom events -----------------------------------------------------------------

    async def emit(self, name: str, payload: Any = None) -> None:
        """Emit the custom event ``name`` with a JSON-like ``payload``.

        Raises:
            InvalidName: the name breaks the rules (as database names).
            InvalidValue: the payload is not JSON-like or too large.
        """
        if self._closed:
            raise NodeClosed(f"node {self.name!r} is closed")
        check_name("event", name)
        self.authorize("emit")
        values.check(payload, self.limits.max_depth)
        packed = values.pack(payload, self.limits.max_value_bytes)
        self.publish(Event(EventKind.CUSTOM, origin=self.name, name=name, packed_payload=packed))
        if self._cluster is not None:
            self._cluster.emit(name, packed)
            if self._cluster.congested:
                await self._cluster.flush()

    def on(self, name: str, handler: Handler) -> Callable[[], None]:
        """Call ``handler(event)`` for every custom event ``name``; return an unsubscribe.

        The handler may be a function or a coroutine function. It runs in a task of
        its own, one event at a time, in order; an exception it raises is logged and
        counted (``node.handler_errors``) and harms nothing else. Its queue is bounded
        like any subscription's (``limits.event_queue``, oldest dropped).

        Example::

            async def deployed(event):
                print("deploy", event.payload)

            unsubscribe = node.on("deploy", deployed)
            await node.emit("deploy", {"version": 3})
            unsubscribe()
        """
        check_name("event", name)
        subscription = self.events(kinds={EventKind.CUSTOM}, names={name})
        task = asyncio.get_running_loop().create_task(
            self._run_handler(subscription, handler), name=f"pydds-handler-{name}"
        )
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

        def unsubscribe() -> None:
            subscription.close()
            task.cancel()

        return unsubscribe

    async def _run_handler(self, subscription: Subscription, handler: Handler) -> None:
        async for event in subscription:
            if event.kind is EventKind.OVERFLOW:
                log.warning("handler %r fell behind: %s", handler, event.payload)
                continue
            try:
                result = handler(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                self.handler_errors += 1
                log.exception("custom event handler %r failed on %r", handler, event.name)

    # -- replication hooks ---------------------------------------------------------------

    def add_change_listener(self, listener: Callable[[Change], None]) -> Callable[[], None]:
        """Call ``listener(change)`` for every change this node makes; return a remover.

        This is how a replication layer (or a test) sees the deltas to ship.
        """
        self._change_listeners.append(listener)
        return functools.partial(self._change_listeners.remove, listener)

    def reading(self, database: str, key: str) -> None:
        """A read of ``key`` begins (``Database.get``): check a client's read right,
        and tell the read listeners.

        Raises:
            Forbidden: the client's token lacks the read right on ``database``.
        """
        if self._scope is not None:
            self.authorize("read", database)
        if self._read_listeners:
            for listener in self._read_listeners:
                listener(database, key)

    @property
    def congested(self) -> bool:
        """Whether a link has many messages waiting for its writer: a writer that
        never awaits anything else should ``await node.flush()`` now."""
        return self._cluster is not None and self._cluster.congested

    async def flush(self) -> None:
        """Let the link writers send what is queued (see ``congested``)."""
        if self._cluster is not None:
            await self._cluster.flush()

    def add_read_listener(self, listener: Callable[[str, str], None]) -> Callable[[], None]:
        """Call ``listener(database, key)`` on every ``get`` (statistics use it);
        return a function that removes it. A listener must be quick and not raise."""
        self._read_listeners.append(listener)
        return functools.partial(self._read_listeners.remove, listener)

    def apply_change(self, change: Change) -> None:
        """Apply a change made elsewhere (its events have that node as origin).

        Raises:
            InvalidUpdate: a delta does not decode.
            InvalidName: the database name breaks the rules.
        """
        for applied in self.database(change.database)._keyspace.apply(change):
            self.record(applied)
