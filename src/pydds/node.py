"""The node: the one orchestrator, and the only async code of the middle.

A node alone is a valid cluster: it stores databases in memory, turns every change
into events, and runs custom-event handlers. Given an address to listen on or nodes
to join, it links to other nodes and replicates. Every decision about links and
peers is the sans-IO peers layer's (``net/peers.py``); the node carries out what it
says (``Peers.take``): per link, a reader that feeds it frames and a writer that
sends what it queued; one timer that sleeps until its next deadline (heartbeats,
redials, expiry, the sweep for stale keys); and the futures of joins, pulls and
acknowledgements. Replication also hooks in through ``add_change_listener`` (every
change this node makes, as a ``Change``) and ``apply_change`` (a change made
elsewhere).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import itertools
import logging
import math
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any

from . import eager
from .acks import parse_ack
from .bus import EventBus
from .changes import Change
from .clock import Clock, RealClock
from .collector import bulk_load
from .config import DatabaseSettings, Limits, check_name, check_seconds, warn_renamed
from .consumers import Consumer, NodeConsumers
from .crdt import values
from .crdt.keydoc import LiveDocs
from .database import Database, Gate
from .errors import (
    AckTimeout,
    Forbidden,
    InvalidUpdate,
    InvalidValue,
    KeyNotFound,
    LinkClosed,
    MalformedFrame,
    ModuleError,
    NodeClosed,
    StorageError,
    Unavailable,
)
from .eventlog import EventLog
from .events import Event, EventKind, Subscription
from .eviction import Evictor
from .keyspace import Keyspace
from .memory import Footprint
from .modules.base import Module
from .modules.host import ModuleHost
from .net.auth import Credentials
from .net.codec import decode_frame, encode_frames
from .net.groups import ConsumerInfo, Groups
from .net.holders import ValueId
from .net.membership import Member, MemberState
from .net.messages import Custom, GroupAck, Message
from .net.peers import NEVER, ClusterSettings, PeerLink, Peers, RareOutput, Traffic, Warmup
from .net.replication import ConsumersOf, GroupAcked, HoldingDue, PullFor, ResendCustoms
from .net.transport import Link, Transport
from .store import Store

__all__ = ["Node"]

log = logging.getLogger("pydds")

_UNSET: Any = object()
#: Yjs client ids stay below 2**53 so that JavaScript peers can read them exactly.
_CLIENT_ID_LIMIT = 2**53

Handler = Callable[[Event], Awaitable[None] | None]

#: Seconds between two sweeps for stale keys.
SWEEP_EVERY = 1.0
#: Changes taken at once (a joining node's directory, say) whose events are made
#: with the cyclic collector paused (``collector.bulk_load``).
BULK_CHANGES = 1000
#: Seconds of handling one frame after which the reader lets other tasks run.
YIELD_AFTER = 0.005


async def _send_all(link: Link, frames: list[bytes]) -> None:
    for frame in frames:
        await link.send(frame)


@dataclass(eq=False)
class _LinkIO:
    """The async side of one link: its transport, its writer's wake-up, and what
    lets a frame leave at once, from the task that queued it (``Node._send_now``)."""

    link: Link
    state: PeerLink
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    idle: bool = False  # the writer waits for a wake-up
    sent_this_turn: bool = False  # a frame left at once in this turn of the loop
    #: The rest of a send that left at once but had to wait (the peer's buffer full).
    sending: asyncio.Task[None] | None = None

    def next_turn(self) -> None:
        self.sent_this_turn = False


class Node:
    """A pydds node. Alone, it is a one-node cluster and an embedded store.

    Example::

        async with pydds.Node() as node:
            db = node.database("cache", stale_after=300)
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
        #: Members remembered from the last run (``remember_members``), dialed once
        #: the node listens.
        self._remembered: tuple[tuple[str, str], ...] = ()
        self._transport = transport
        self._cluster_settings = cluster or ClusterSettings()
        self._frame_bytes = self._cluster_settings.frame_bytes
        self._peers: Peers | None = None  # made when the node first links
        self._started = False
        self._timer: asyncio.Task[None] | None = None  # runs once started or linked
        self._timer_sleep: asyncio.Future[None] | None = None
        self._armed = NEVER  # when the timer wakes next
        self._io: dict[PeerLink, _LinkIO] = {}
        self._joins: dict[PeerLink, asyncio.Future[str | None]] = {}
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._pulls: dict[ValueId, asyncio.Future[bool]] = {}
        self._link_opened = asyncio.Event()  # set (and replaced) when a link opens
        self._tasks: set[asyncio.Task[Any]] = set()
        self._serving: set[asyncio.Task[Any]] = set()  # the tasks that serve a link
        self._draining = False
        self._warming: asyncio.Task[None] | None = None
        self._warm = [0, 0, 0]  # pending, pulled, failed
        #: The Yjs client id of this node's writes; new for every node object, so two
        #: live writers never share one (Yjs would diverge silently).
        self.client_id = secrets.randbelow(_CLIENT_ID_LIMIT - 1) + 1
        self.handler_errors = 0  # exceptions raised by custom-event handlers
        self._keyspaces: dict[str, Keyspace] = {}  # the databases' keyspaces, by name
        limits = self.limits
        #: Every event this node records, by offset (``events(since=...)``).
        self.event_log: EventLog | None = None
        if limits.event_log > 0:
            self.event_log = EventLog(
                count=limits.event_log, size=limits.event_log_bytes, age=limits.event_log_age
            )
        self._bus = EventBus(limits.event_queue, self._keyspaces, self.event_log)
        #: Events this node recorded, by kind (whether or not anyone subscribed).
        self.event_counts: Counter[str] = self._bus.counts
        #: What the values held here take (``Limits.max_memory`` bounds it).
        self.footprint = Footprint(self.limits.max_memory, self.limits.eviction)
        self._live = LiveDocs(self.limits.live_docs, self.footprint.resize)
        #: Evicts copies past the memory limit; counts evictions and reloads.
        self.evictor = Evictor(self.footprint, self._keyspaces, self.clock.now, self._live)
        self._evicting = False
        self._full_logged = -math.inf  # when "nothing to evict" was last logged
        self._databases: dict[str, Database] = {}
        self._change_listeners: list[Callable[[Change], None]] = []
        self._read_listeners: list[Callable[[str, str], None]] = []
        self._handlers: set[asyncio.Task[None]] = set()
        #: This node's consumers of groups and its view of the groups (``consume``).
        self.consumers = NodeConsumers(
            self.name,
            self.limits.event_queue,
            lambda: self.clock.now(),  # the node's clock, as it is then
            self._announce_consumers,
            self._group_acked,
            self._wake_timer,
        )
        self._local_event_ids = itertools.count(1)  # custom events of a node with no links
        self._closed = False
        self._closing = False
        self._modules = ModuleHost(modules)
        #: What this node's links prove and accept (``pydds.Credentials``); none: open.
        self.credentials = credentials or Credentials()
        #: A client's token: what it may do, checked before asking its gateway.
        self._scope = self.credentials.token if self.role == "client" else None
        self._store: Store | None = None  # the store that keeps data on disk, if any
        self._gate = Gate()  # what the databases check before a read or a write
        self._gate_changed()

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
        if self._peers is None:
            return {}
        return {peer: replace(t) for peer, t in self._peers.traffic().items()}

    def clients(self) -> list[str]:
        """The clients linked to this node (it is their gateway), sorted."""
        if self._peers is None:
            return []
        return sorted(peer for peer, link in self._peers.links.items() if link.is_client)

    def holders(self, database: str, key: str) -> list[str]:
        """The peers this node knows to hold the value of ``key`` in ``database``
        (its current generation), sorted; this node is not listed (``holds``)."""
        if self._peers is None or database not in self._databases:
            return []
        gen = self._databases[database].keyspace.generation(key)
        if gen is None:
            return []
        return sorted(self._peers.replication.holders[(database, key, gen)])

    def traffic_total(self) -> Traffic:
        """What every link carried since the node started (a copy)."""
        return replace(self._peers.totals) if self._peers is not None else Traffic()

    def network_counts(self) -> Counter[str]:
        """Counts of the network's work and faults since the node started, by name:
        ``pull:asked``, ``pull:timeout``, ``ack:waited``, ``ack:timeout``,
        ``error:<kind>``, ... (a copy; ``pydds.metrics`` exports them)."""
        return Counter(self._peers.stats) if self._peers is not None else Counter()

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
        if self._started:
            return  # started already
        self._started = True  # sweeps run from now on
        self._ensure_timer()
        if self.role == "client":
            await self._find_gateway()
            return
        horizon, period = self.limits.tombstone_horizon, self._cluster_settings.anti_entropy
        if horizon < 2 * period:
            log.warning(
                "%s: tombstone_horizon %gs is under two anti-entropy periods (%gs): a"
                " delete one node missed may be forgotten elsewhere before it is"
                " repaired there, and the key come back",
                self.name,
                horizon,
                2 * period,
            )
        try:
            await self._modules.start(self)
        except ModuleError:
            await self.close()
            raise
        self._seen_from_log()  # what a store kept, if the network came first
        if self._listen is not None and self.address is None:
            await self._listen_at(self._listen, self._advertise)
        if self._remembered:
            self._network().learn(self._remembered, self.clock.now())
            self._drain()
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
                self._network().redial(address, self.clock.now())
                self._drain()

    def in_touch(self) -> bool:
        """Whether this node is in touch with its cluster: it reaches (links to, or
        through a node it links to) a majority of its members, itself included, or it
        is alone and remembers no members. Only a node in touch prunes tombstones."""
        if self._peers is None:
            return not self._remembered
        return self._peers.in_touch

    def last_in_touch(self) -> float:
        """When this node was last in touch with its cluster (wall clock): the least of
        its databases' (now, without any). See ``in_touch``."""
        return min(
            (db.keyspace.touched_at for db in self._databases.values()), default=self.clock.wall()
        )

    def remember_members(self, members: Iterable[tuple[str, str]]) -> None:
        """Members (name, address) this node knew when it last ran: once it listens,
        each is a member (``joining``), dialed in the background as one a peer listed
        would be, until it links or has been unreachable for ``dead_after``. The
        persistence module calls this at start, from what it kept
        (``pydds-members.json``), so that a restarted node finds its cluster even
        without a ``join``. A client ignores them."""
        if self.role != "node":
            return
        self._remembered = tuple((name, address) for name, address in members)
        if self._started and self.address is not None:
            self._network().learn(self._remembered, self.clock.now())
            self._drain()

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
        self._network().find_gateway(self._join, self.clock.now())
        self._drain()

    def _ensure_timer(self) -> None:
        if self._timer is None and not self._closed:
            self._timer = asyncio.get_running_loop().create_task(self._run_timer())

    def _network(self) -> Peers:
        self._ensure_timer()  # a node that joins without ``start`` has links to time
        if self._peers is None:
            if self._transport is None:
                from .net.ws import WebSocketTransport

                self._transport = WebSocketTransport()
            self._peers = Peers(
                self.name,
                self.role,
                keyspace=lambda name: self.database(name).keyspace,  # made on first use
                databases=self.databases,
                settings=self._cluster_settings,
                limits=self.limits,
                credentials=self.credentials,
                client_id=self.client_id,
            )
            self._seen_from_log()
        return self._peers

    def _seen_from_log(self) -> None:
        """The custom events the event log holds (a store's, after a restart) are
        seen: delivered once, and where peers resume sending from."""
        replication = self._peers.replication if self._peers is not None else None
        if replication is not None and self.event_log is not None:
            replication.seen_again(self.event_log.custom_ids()[-replication.seen_limit :])

    @property
    def transport(self) -> Transport | None:
        """How this node makes links (None until it first links)."""
        return self._transport

    @property
    def address(self) -> str | None:
        """Where this node accepts links (None when it does not listen)."""
        return self._peers.address if self._peers is not None else None

    async def _listen_at(self, address: str, advertise: str | None) -> None:
        peers = self._network()
        assert self._transport is not None
        bound = await self._transport.listen(address, self._accept)
        if advertise is not None and "://" not in advertise:
            advertise = f"{bound.split('://', 1)[0]}://{advertise}"  # the bound scheme
        peers.listening(advertise or bound)

    async def join(self, address: str) -> None:
        """Link to the node at ``address`` (and through it, to the whole cluster).

        Writes made while alone merge on join. Waits (bounded: ``join_timeout``)
        until the link is open and the peer has accepted this node. Joining a node
        this one is linked to already returns at once. A host name that stands for
        several addresses (a DNS round robin, a Kubernetes headless service) is
        resolved on every call and tried address by address, this node's own left
        out, until one joins.

        Raises:
            LinkClosed: no node could be reached there in time (also an OSError).
        """
        if self._closed:
            raise NodeClosed(f"node {self.name!r} is closed")
        self._network()
        assert self._transport is not None
        failures = []
        resolve = getattr(self._transport, "resolve", None)  # a transport without one: as is
        candidates = [address] if resolve is None else await resolve(address)
        own = {self.address, getattr(self._transport, "bound", None)}
        for candidate in candidates:
            if candidate.partition("#")[0] in own:  # (a TLS name after "#")
                continue  # this node itself, among the others
            try:
                await self._join_one(candidate)
                return
            except LinkClosed as exc:
                failures.append(str(exc))
        if not failures:
            raise LinkClosed(f"{address} is this node's own address")
        raise LinkClosed("; ".join(failures))

    async def _join_one(self, address: str) -> None:
        """``join`` the one node at ``address``."""
        peers = self._network()
        assert self._transport is not None
        link = await self._transport.connect(address)
        state = peers.new_link(dialed=True, now=self.clock.now())
        joined = self._joins[state] = asyncio.get_running_loop().create_future()
        self._serve_task(self._serve(link, state))
        self._drain()
        timeout = self._cluster_settings.join_timeout
        if not await self._first(joined, timeout):
            self._joins.pop(state, None)
            raise LinkClosed(f"no open link to {address} within {timeout}s")
        error = joined.result()
        if error is not None:
            raise LinkClosed(f"link to {address} failed: {error}")

    async def _dial(self, address: str) -> None:
        """One attempt to link to ``address``, that the peers layer asked for."""
        ok = True
        try:
            await self.join(address)
        except (LinkClosed, OSError, NodeClosed) as exc:
            log.debug("dialing %s failed: %s", address, exc)
            ok = False
        if self._peers is not None:
            self._peers.dialed(address, ok, self.clock.now())
            self._drain()

    async def _first(self, future: asyncio.Future[Any], seconds: float) -> bool:
        """Wait for ``future`` up to ``seconds`` of the node's clock; True if it is done."""
        sleeper = asyncio.ensure_future(self.clock.sleep_until(self.clock.now() + seconds))
        try:
            await asyncio.wait({future, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
        return future.done()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _serve_task(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = self._spawn(coro)
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    # -- carrying out what the peers layer says ---------------------------------------

    def _drain(self) -> None:
        """Do what the peers layer asked for (``Peers.take``), until it asks nothing
        more. Not re-entered: what doing it makes is done by the same loop."""
        peers = self._peers
        if peers is None or self._draining:
            return
        self._draining = True
        try:
            while peers.pending:
                self._carry_out(peers)
        finally:
            self._draining = False
        if peers.due < self._armed and self._timer_sleep is not None:
            self._timer_sleep.cancel()  # an earlier deadline: the timer wakes for it

    def _carry_out(self, peers: Peers) -> None:
        out = peers.take()
        io = self._io
        for state in out.wake:
            link_io = io.get(state)
            if link_io is None:
                continue
            if link_io.idle and not link_io.sent_this_turn and link_io.sending is None:
                self._send_now(peers, link_io)  # a quiet link: no writer's turn to wait
            else:
                link_io.wake.set()  # its writer batches what comes meanwhile
        rare = out.rare
        if rare is not None:
            self._carry_out_links(rare)
        if len(out.changes) >= BULK_CHANGES:  # a whole directory: its events live on
            with bulk_load():
                self._record_all(out.changes)
        elif out.changes:
            self._record_all(out.changes)
        publish_custom = self._bus.publish_custom
        for message in out.customs:
            publish_custom(message.origin, message.name, message.payload, message.id)
            self.consumers.event(message)
        for ack_id in out.acks:
            acked = self._acks.pop(ack_id, None)
            if acked is not None and not acked.done():
                acked.set_result(None)
        if rare is not None:
            self._carry_out_pulls(rare)
        if self.footprint.over and not self._pulls:  # a pulled copy waits for its reader
            self._evict()

    def _carry_out_links(self, rare: RareOutput) -> None:
        """What an output holds beyond a write's effects, before them: links to
        close and dial, joins decided, member events."""
        io = self._io
        for state in rare.close:
            link_io = io.get(state)
            if link_io is not None:
                self._spawn(link_io.link.close())
        for address in rare.dial:
            self._spawn(self._dial(address))
        for state, error in rare.joins:
            joined = self._joins.pop(state, None)
            if joined is not None and not joined.done():
                joined.set_result(error)
        for kind, member in rare.members:
            self.publish(Event(EventKind(kind), origin=self.name, member=member))

    def _carry_out_pulls(self, rare: RareOutput) -> None:
        """And after them: pulls ended or to make, values to list, a link opened."""
        for value_id, answered in rare.pulls:
            pulled = self._pulls.pop(value_id, None)
            if pulled is not None and not pulled.done():
                pulled.set_result(answered)
        for pull_for in rare.pull_for:
            self._spawn(self._pull_for(pull_for))
        for holding in rare.holding_due:
            self._spawn(self._holding(holding))
        for resend in rare.resend:
            self._resend(resend)
        for said in rare.groups:
            self._group_said(said)
        if rare.linked:
            self._link_opened.set()
            self._link_opened = asyncio.Event()
            if self._warming is None or self._warming.done():
                self._warming = self._spawn(self._warm_up())

    def _resend(self, notice: ResendCustoms) -> None:
        """Send a peer again the custom events of its ``EventsSeen`` that this node's
        log holds (read as its link sends them)."""
        log, peers = self.event_log, self._peers
        if log is None or peers is None:
            return
        resent = log.customs_after(notice.last)
        peers.resend(notice.peer, (Custom(*fields) for fields in resent))

    def _send_now(self, peers: Peers, link_io: _LinkIO) -> None:
        """Send what is queued for a quiet link from the task that queued it (a local
        write, a frame being read), without waiting for the link writer's turn of the
        loop: a send the peer's buffer does not hold up completes at once, one that
        must wait goes on in a task (``eager``). Once per turn of the loop, so that
        what follows in the same turn is batched by the writer."""
        state = link_io.state
        link_io.sent_this_turn = True
        asyncio.get_running_loop().call_soon(link_io.next_turn)
        batch = peers.outgoing(state, self.clock.now())
        if batch:
            frames = self._frames(peers, state, batch)
            link = link_io.link
            sending = link.send(frames[0]) if len(frames) == 1 else _send_all(link, frames)
            try:
                rest = eager.start(sending)
            except LinkClosed:
                rest = None  # its reader sees it
            if rest is not None:
                link_io.sending = rest
                self._tasks.add(rest)
                rest.add_done_callback(functools.partial(self._sent, link_io))
        if state.session.closed or state.session.streaming:
            link_io.wake.set()  # its writer closes the link, or sends the next frame

    def _frames(self, peers: Peers, state: PeerLink, batch: list[Message]) -> list[bytes]:
        """``batch`` encoded as the frames a peer accepts, counted as sent."""
        frames = encode_frames(batch, self._frame_bytes)
        peers.sent(state, len(batch), sum(map(len, frames)))
        return frames

    def _sent(self, link_io: _LinkIO, rest: asyncio.Task[None]) -> None:
        """A send that had to wait is done (its writer may go on)."""
        self._tasks.discard(rest)
        link_io.sending = None
        if not rest.cancelled() and not isinstance(rest.exception(), LinkClosed | None):
            log.error("sending to %s failed", link_io.state.peer, exc_info=rest.exception())
        link_io.wake.set()

    async def _holding(self, notice: HoldingDue) -> None:
        """Tell a peer what this node holds once the directory it was just sent is on
        its way (the link's writer runs first)."""
        await asyncio.sleep(0)
        if self._peers is not None:
            self._peers.holding(notice)
            self._drain()

    async def _pull_for(self, notice: PullFor) -> None:
        """Pull (or reload from disk) a value a peer asked for, then answer it."""
        message = notice.message
        with contextlib.suppress(Unavailable, KeyNotFound):
            await self.pull(message.database, message.key)
        if self._peers is not None:
            self._peers.answer_pull(notice)
            self._drain()

    # -- links ---------------------------------------------------------------------------

    async def _accept(self, link: Link) -> None:
        peers = self._peers
        if peers is None or peers.closing:
            await link.close()
            return
        task = asyncio.current_task()
        if task is not None:  # accepted links run in the transport's task
            self._serving.add(task)
        try:
            await self._serve(link, peers.new_link(dialed=False, now=self.clock.now()))
        finally:
            if task is not None:
                self._serving.discard(task)

    async def _serve(self, link: Link, state: PeerLink) -> None:
        """Read ``link``'s frames into the peers layer until it closes; its writer
        runs beside."""
        peers = self._network()
        clock = self.clock
        session = state.session
        link_io = self._io[state] = _LinkIO(link, state)
        writer = self._spawn(self._write(link_io, state))
        link_io.wake.set()
        max_bytes = self._cluster_settings.max_frame_bytes
        try:
            while not session.closed:
                frame = await link.receive()
                try:
                    batch = decode_frame(frame, max_bytes=max_bytes)
                except MalformedFrame as exc:
                    peers.malformed(state, str(exc))
                    break
                now = clock.now()
                wait = state.limit.take(messages=len(batch), size=len(frame), now=now)
                if wait > 0:  # faster than its limits: slow the peer down, not others
                    peers.stats["rate:waits"] += 1
                    await clock.sleep_until(now + wait)
                    now = clock.now()
                for_node = peers.receive(state, batch, len(frame), now)
                turn = time.monotonic()
                # What the peer sent before its Close counts (a node's last writes and
                # its Leave go out with its Close); a fault found here ends the frame.
                peer_closed = session.closed
                for message in for_node:
                    if session.closed and not peer_closed:
                        break
                    if not peers.dispatch(state, message, now):
                        break
                    if time.monotonic() - turn > YIELD_AFTER:
                        # A large frame does not hold the event loop: what it has
                        # changed so far is seen (events, reads) while the rest waits.
                        self._drain()
                        await asyncio.sleep(0)
                        turn = time.monotonic()
                        # Its frames wait behind this one: the peer is not silent.
                        session.heard(clock.now())
                self._drain()
        except LinkClosed:
            pass
        finally:
            if not session.closed:
                session.close("link lost")
            link_io.wake.set()
            try:
                await asyncio.wait_for(writer, 1.0)
            except (TimeoutError, asyncio.CancelledError):
                writer.cancel()
            await link.close()
            del self._io[state]
            peers.lost(state, clock.now())
            self._drain()

    async def _write(self, link_io: _LinkIO, state: PeerLink) -> None:
        """Send what the peers layer queued for a link, as one frame per wake-up (a
        busy link batches); close the link once its session closed."""
        peers = self._network()
        session, link, wake = state.session, link_io.link, link_io.wake
        try:
            while True:
                link_io.idle = True
                await wake.wait()
                link_io.idle = False
                wake.clear()
                if link_io.sending is not None:  # a frame sent at once still going
                    await asyncio.wait({link_io.sending})
                batch = peers.outgoing(state, self.clock.now())
                if batch:
                    await _send_all(link, self._frames(peers, state, batch))
                if session.streaming:  # the next frame of a large answer, a turn later
                    wake.set()
                    await asyncio.sleep(0)
                if session.closed:
                    await link.close()
                    return
        except LinkClosed:
            return

    # -- the timer --------------------------------------------------------------------

    async def _run_timer(self) -> None:
        """The node's one timer: it sleeps until the next deadline (the peers layer's,
        or the next sweep for stale keys), acts on it, and sleeps again; an earlier
        deadline made meanwhile wakes it (``_drain``)."""
        clock = self.clock
        next_sweep = clock.now() + SWEEP_EVERY
        while not self._closed:
            now = clock.now()
            if now >= next_sweep:
                next_sweep = now + SWEEP_EVERY
                if self._started:
                    self.sweep()
            deadline = min(next_sweep, self._expire_due())
            self.consumers.tick(now)
            deadline = min(deadline, self.consumers.due)
            if self._peers is not None:
                deadline = min(deadline, self._peers.tick(now))
                self._drain()
            self._armed = deadline
            sleep = self._timer_sleep = asyncio.ensure_future(clock.sleep_until(deadline))
            await asyncio.wait({sleep})
            self._timer_sleep = None
            self._armed = NEVER

    @property
    def warmup(self) -> Warmup:
        """Progress of pulling in, after a join, the values other nodes hold fresh."""
        running = self._warming is not None and not self._warming.done()
        pending, pulled, failed = self._warm
        return Warmup(pending, pulled, failed, running)

    async def _warm_up(self) -> None:
        """After a link opens: pull, rate-limited, the values that peers hold fresh
        (read or written within their database's expiry there) and this node lacks,
        in databases with an expiry (without one, values stay lazy). It never delays
        the join; ``warmup`` and a ``warmed`` event report progress."""
        peers = self._network()
        step = 0.1
        per_step = max(1, int(self._cluster_settings.warmup_rate * step))
        failed: set[ValueId] = set()
        quiet_steps = 0  # steps with nothing to pull: the exchange may still be arriving
        warm = self._warm
        while not peers.closing and not self._closed and quiet_steps < 3:
            await self.clock.sleep_until(self.clock.now() + step)
            if peers.closing or self._closed:
                break
            pending = [v for v in peers.warm_candidates() if v not in failed]
            warm[0] = len(pending)
            if not pending:
                quiet_steps += 1
                continue
            quiet_steps = 0
            batch = pending[:per_step]
            results = await asyncio.gather(
                *(self.pull(db, key) for db, key, _ in batch), return_exceptions=True
            )
            for value_id, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    warm[2] += 1
                    failed.add(value_id)
                else:
                    warm[1] += 1
        warm[0] = 0
        if not peers.closing:
            payload = values.pack({"pulled": warm[1], "failed": warm[2]}, 64)
            self.publish(Event(EventKind.WARMED, origin=self.name, packed_payload=payload))

    def _expire_due(self) -> float:
        """Lapse the keys past their deadline in every database; when the timer
        must wake next for this (``clock.now()`` scale)."""
        clock = self.clock
        wall = clock.wall()
        earliest = math.inf
        for name, keyspace in self._keyspaces.items():
            if keyspace.due():
                self.expired(name, keyspace.expire_due())
            deadline = keyspace.next_expiry()
            if deadline is not None:
                earliest = min(earliest, deadline)
        return clock.now() + max(0.0, earliest - wall) if earliest < math.inf else NEVER

    def expired(self, database: str, changes: list[Change]) -> None:
        """Publish the ``expired`` events of keys of ``database`` that lapsed here.
        Nothing is shipped (every node lapses a key by its own clock); peers are
        no longer counted as holders of those values."""
        peers = self._peers
        publish = self._bus.publish_change
        for change in changes:
            if peers is not None:
                peers.gone((database, change.key, change.gen))
            publish(change)

    def deadline_set(self, wall: float) -> None:
        """A key's deadline (wall clock) was set: the timer wakes for it if it would
        sleep past it (``Database`` calls this after a write with a TTL)."""
        if self._timer_sleep is not None:
            at = self.clock.now() + max(0.0, wall - self.clock.wall())
            if at < self._armed:
                self._timer_sleep.cancel()

    def sweep(self) -> None:
        """Mark the keys not accessed for their database's ``expire`` stale: an event
        says so, and peers stop pushing their changes here; and remove the members
        suspect for longer than ``dead_after``. Runs every ``SWEEP_EVERY`` seconds
        once the node is started."""
        peers = self._peers
        if peers is not None:
            peers.expire_members(self.clock.now())
            peers.compact()
        in_touch = self.in_touch()
        # Alone, or getting every change: current.
        current = in_touch and (peers is None or peers.alone or peers.in_sync())
        for name, db in self._databases.items():
            keyspace = db.keyspace
            if current and keyspace.fresh_from is None:
                keyspace.touch()
            keyspace.prune()
            keyspace.compact()
            for key, gen in keyspace.sweep():
                self.publish(Event(EventKind.STALE, name, key, self.name))
                if peers is not None:
                    peers.release(name, key, gen)
        self._evict()  # a node that was full tries again
        if self.event_log is not None:
            self.event_log.trim()  # events older than the log's age
        self._drain()

    # -- the memory limit ----------------------------------------------------------------

    def fit_memory(self) -> None:
        """Evict copies while past the memory limit (``Limits.max_memory``; see
        docs/semantics.md): the node does it after every write it records, every
        batch of a peer's messages, and every read that took a copy back, so that a
        loop that never yields stays within the limit too."""
        if self.footprint.over:
            self._evict()

    def _evict(self) -> None:
        """Evict copies while past the memory limit (``eviction.py`` says which): an
        ``evicted`` event for each, peers stop pushing them here, the store keeps
        those it takes; a ``memory_full`` event when nothing could go. Called once an
        operation is done, never while one is under way (a copy just reloaded for a
        write must stay until the write is made)."""
        evictor = self.evictor
        if self._evicting or self._closed or not evictor.due():
            return
        self._evicting = True
        try:
            self._evict_now(evictor)
        finally:
            self._evicting = False

    def _evict_now(self, evictor: Evictor) -> None:
        store, peers = self._store, self._peers

        def elsewhere(database: str, key: str, gen: int) -> bool:
            return peers is not None and peers.held_elsewhere((database, key, gen), keeper=True)

        room = store.spill_room if store is not None else 0
        evictions, full = evictor.run(spill_room=room, elsewhere=elsewhere)
        for eviction in evictions:
            database, key, gen, state = (
                eviction.database,
                eviction.key,
                eviction.gen,
                eviction.state,
            )
            if state is not None and store is not None:
                store.spill(database, key, gen, state)
            if peers is not None:
                peers.release(database, key, gen)
            self.publish(Event(EventKind.EVICTED, database, key, self.name))
        if full:
            footprint = self.footprint
            now = self.clock.now()
            if now - self._full_logged >= 60:
                self._full_logged = now
                log.warning(
                    "node %s holds %d bytes of values, past its limit of %d, and has "
                    "nothing to evict (no other node or disk has a copy); writes go on",
                    self.name,
                    footprint.used,
                    footprint.limit,
                )
            payload = values.pack({"used": footprint.used, "limit": footprint.limit}, 64)
            self.publish(Event(EventKind.MEMORY_FULL, origin=self.name, packed_payload=payload))
        if evictions and peers is not None:
            self._drain()

    async def _reload(self, database: str, key: str, gen: int) -> bool:
        """Take back from the store a copy this node evicted to it; whether it is
        held now. With a peer holding the value too, the copy is stale (changes
        made meanwhile reach it by the pull that follows)."""
        store, keyspace = self._store, self._keyspaces[database]
        if store is None:
            return False
        try:
            loaded = await store.load_value(database, key)
        except StorageError as exc:  # the copy stays on disk, marked so: a later try
            log.error("cannot reload %r of %r from disk: %s", key, database, exc)
            raise Unavailable(f"{key!r} of {database!r} is on a disk that fails") from None
        state = loaded[1] if loaded is not None and loaded[0] == gen else None
        peers = self._peers
        stale = peers is not None and peers.held_elsewhere((database, key, gen))
        try:
            held = keyspace.reload(key, gen, state, stale=stale)
        except InvalidUpdate:
            log.error("the copy of %r of %r on disk does not load; it is pulled", key, database)
            held = False
        if held:
            self.evictor.reloaded["disk"] += 1
        return held

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
        peers = self._peers
        if level == "local" or peers is None:  # alone, this node is every node
            if change is not None:
                self.record(change)
            if peers is not None and peers.congested:
                await self.flush()
            await self._settled(None, level, durable)
            return
        waiting = self.record(change, level) if change is not None else None
        await self._settled(waiting, level, durable)

    async def commit_many(self, changes: list[Change], ack: str | int = "local") -> None:
        """``commit`` of a batch of changes this node just made: one wait for them
        all (one acknowledgement round, and one store barrier for ``durable``).

        Raises:
            AckTimeout: too few nodes acknowledged every change in time (they stand).
            StorageError: ``durable`` and the store could not write them (they stand).
        """
        durable, level = (False, "local") if ack == "local" else self.ack_level(ack)
        peers = self._peers
        waiting = None
        if level == "local" or peers is None:
            for change in changes:
                self.record(change)
            if peers is not None and peers.congested:
                await self.flush()
        else:
            if peers.congested:  # the batch goes out at once: make room for it first
                await self.flush()
            waiting = self._record_batch(peers, changes, level)
        await self._settled(waiting, level, durable)

    async def _settled(
        self, waiting: asyncio.Future[None] | None, level: str | int, durable: bool
    ) -> None:
        """Wait as a write's ack level says: for its acknowledgements (``waiting``,
        None when none are awaited) and, ``durable``, for the store to have it."""
        on_disk = None
        if durable:
            assert self._store is not None
            on_disk = asyncio.ensure_future(self._store.barrier())
        try:
            if waiting is not None:
                await self._wait_ack(waiting, level)
        finally:
            if on_disk is not None:
                await on_disk

    def _record_batch(
        self, peers: Peers, changes: list[Change], level: str | int
    ) -> asyncio.Future[None] | None:
        """``record`` of changes made here, shipped under one ack id of ``level``."""
        for change in changes:
            for listener in list(self._change_listeners):
                listener(change)
        waiting = self._ack_waiting(peers.changed_many(changes, level))
        if peers.pending:
            self._drain()
        publish = self._bus.publish_change
        for change in changes:
            publish(change)
        return waiting

    async def _wait_ack(self, done: asyncio.Future[None], ack: str | int) -> None:
        """Wait (bounded) for a write's acknowledgements.

        Raises:
            AckTimeout: too few came in time (the write still stands).
        """
        peers = self._network()
        peers.stats["ack:waited"] += 1
        timeout = self._cluster_settings.ack_timeout
        if not await self._first(done, timeout):
            peers.stats["ack:timeout"] += 1
            done.cancel()
            raise AckTimeout(
                f"write not acknowledged at level {ack!r} within {timeout}s "
                "(it stands, and goes on replicating)"
            )

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
        self._evict()  # what was restored may be past the memory limit

    async def refresh(self, database: str, key: str) -> bool:
        """Refresh a stale or missing copy from its holders; True if it is current
        (also when nobody else is in the cluster: this copy is all there is)."""
        try:
            await self.pull(database, key)
            return True
        except Unavailable:
            if self._peers is None or self._peers.alone:
                # Nobody else is in the cluster: this copy is all there is.
                self._databases[database]._keyspace.refreshed(key)
                return True
            return False

    def members(self) -> list[Member]:
        """Every member of the cluster as this node sees it, this node first (a
        client lists the nodes it knows: it is never a member)."""
        if self._peers is None:
            listed = [Member(self.name, None, "node", MemberState.SELF)]
        else:
            listed = self._peers.members()
        return listed if self.role == "node" else listed[1:]

    def remove_member(self, name: str) -> bool:
        """Remove node ``name`` from the cluster: it is counted for ``majority`` and
        ``all`` acknowledgements no more, dialed no more, and every member learns it
        (a ``left`` event everywhere). For a node that crashed or is gone for good:
        until it is removed, or unreachable for ``ClusterSettings.dead_after``, it
        counts. Return whether it was a member (False for this node itself).

        Example::

            node.remove_member("n3")   # n3's disk died: majority is now of the rest

        A removed node that is alive joins again as soon as it links to a member.
        """
        if self._peers is None or not self._peers.remove_member(name, self.clock.now()):
            return False
        self._drain()
        return True

    async def pull(self, database: str, key: str) -> None:
        """Pull the value of ``key`` from the nodes that hold it (a bounded wait);
        ``Database.get`` does this for a value not held here. Every linked node is
        asked; if none holds it while members this node is still linking to (just
        joined) might, it asks again once a link opens, within the same wait.

        Raises:
            Unavailable: no peer holds it, or none answered in time.
            KeyNotFound: the key is absent.
        """
        keyspace = self._keyspaces.get(database)
        on_disk = keyspace.on_disk(key) if keyspace is not None else None
        if on_disk is not None and await self._reload(database, key, on_disk):
            if not keyspace or not keyspace.is_stale(key):
                return
            with contextlib.suppress(Unavailable):  # the copy from disk will do
                await self._pull_from_peers(database, key)
                self.evictor.reloaded["peer"] += 1
            return
        await self._pull_from_peers(database, key)
        if keyspace is not None and keyspace.holds(key):
            self.evictor.reloaded["peer"] += 1

    async def _pull_from_peers(self, database: str, key: str) -> None:
        peers = self._peers
        if peers is None:
            raise Unavailable(f"{key!r} of {database!r} is not held here and no peer is linked")
        clock = self.clock
        deadline = clock.now() + self._cluster_settings.pull_timeout
        while True:
            opened = self._link_opened  # set once a link opens after this ask
            value_id, asked, linking = peers.pull(database, key)
            if asked:
                future = self._pulls.get(value_id)
                if future is None:
                    future = self._pulls[value_id] = asyncio.get_running_loop().create_future()
                self._drain()
                if not await self._first(asyncio.shield(future), deadline - clock.now()):
                    peers.stats["pull:timeout"] += 1
                    peers.forget_pull(value_id)
                    self._pulls.pop(value_id, None)
                    raise Unavailable(f"no holder of {key!r} in {database!r} answered in time")
                if future.result():
                    return
            if not linking or clock.now() >= deadline:
                peers.stats["pull:unavailable"] += 1
                raise Unavailable(f"no linked peer holds {key!r} of {database!r}")
            waiting = asyncio.ensure_future(opened.wait())
            try:
                await self._first(waiting, deadline - clock.now())
            finally:
                waiting.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the node: modules stop, subscriptions end, handlers stop, links
        close (peers learn why; a member says it leaves), memory is freed.
        Idempotent."""
        if self._closed or self._closing:
            return
        self._closing = True
        await self._modules.stop()  # while the node still serves them
        self._closed = True
        self._gate_changed()
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)
        if self._peers is not None:
            await self._close_links(self._peers)
        self._bus.close()
        self.consumers.close()
        tasks = list(self._handlers)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for db in self._databases.values():
            db._keyspace.close()

    async def _close_links(self, peers: Peers) -> None:
        peers.close()
        self._drain()
        serving = list(self._serving)
        if serving:  # each sends its Close and ends when its link does
            await asyncio.wait(serving, timeout=2.0)
        for link_io in list(self._io.values()):  # a peer that never closed its end
            await link_io.link.close()
        if self._transport is not None:
            await self._transport.close()
        rest = list(self._tasks)  # dials, and anything stuck
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)
        for future in self._pulls.values():
            if not future.done():
                future.set_result(False)

    # -- databases -------------------------------------------------------------------

    def database(
        self,
        name: str,
        *,
        stale_after: float | None = _UNSET,
        ttl: float | None = _UNSET,
        expire: float | None = _UNSET,
    ) -> Database:
        """The database ``name``, made on first use.

        Args:
            name: 1 to 128 characters of ``A-Z a-z 0-9 _ . : -``.
            stale_after: seconds without a read or write after which a key goes
                stale on a node (the copy is kept, no longer replicated there; it
                is not a time to live), or None for never. Given for an existing
                database, it changes the setting.
            ttl: the time to live of keys written without one (seconds; every such
                write restarts it), or None (the default) for keys that live until
                deleted. Given for an existing database, it changes the setting
                for later writes.
            expire: the former name of ``stale_after`` (deprecated).

        Raises:
            InvalidName: the name breaks the rules.
            InvalidValue: ``stale_after`` or ``ttl`` is not a positive number or None.
        """
        if self._closed:
            raise NodeClosed(f"node {self.name!r} is closed")
        if expire is not _UNSET:
            warn_renamed("expire", "stale_after")
            if stale_after is not _UNSET:
                raise InvalidValue("give stale_after only (expire is its former name)")
            stale_after = expire
        if stale_after is not _UNSET and stale_after is not None:
            check_seconds("stale_after", stale_after)
        if ttl is not _UNSET and ttl is not None:
            check_seconds("ttl", ttl)
        db = self._databases.get(name)
        if db is None:
            check_name("database", name)
            if len(self._databases) >= self.limits.max_databases:
                raise InvalidValue(
                    f"node {self.name!r} has {len(self._databases)} databases, its limit"
                )
            settings = DatabaseSettings(
                stale_after=None if stale_after is _UNSET else stale_after,
                ttl=None if ttl is _UNSET else ttl,
            )
            keyspace = Keyspace(
                name,
                settings,
                client_id=self.client_id,
                node_name=self.name,
                limits=self.limits,
                live=self._live,
                now=self.clock.now,
                wall=self.clock.wall,
                footprint=self.footprint,
            )
            keyspace.in_touch = self.in_touch
            if self._store is not None:
                keyspace.journal = self._store.journal(name)
            db = self._databases[name] = Database(self, keyspace, self._gate)
            self._keyspaces[name] = keyspace
        else:
            settings = db.settings
            changed = replace(
                settings,
                stale_after=settings.stale_after if stale_after is _UNSET else stale_after,
                ttl=settings.ttl if ttl is _UNSET else ttl,
            )
            if changed != settings:
                db.keyspace.settings = changed
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
        since: int | None = None,
    ) -> Subscription:
        """Subscribe to events, as an async iterator (use it with ``async with``).

        Args:
            database: only events of this database.
            prefix: only events of keys starting with this.
            kinds: only these kinds (``"created"``, ``"changed"``, ``"deleted"``,
                ``"expired"``, ``"custom"``, ...: ``EventKind``); ``"overflow"``
                events are always delivered.
            names: only custom events with these names.
            maxsize: the queue's bound (default ``limits.event_queue``); when full,
                the oldest event is dropped and an ``overflow`` event reports it.
            since: an offset (``Event.offset``; 0: everything the log holds): the
                logged events after it come first, then the live ones, with no gap
                and no duplicate at the seam. Offsets the log no longer holds make
                one ``gap`` event, ``{"from": first, "to": last}``, in their place.

        Example::

            async with node.events(database="cache", prefix="user:") as events:
                async for event in events:
                    print(event.kind, event.key)
        """
        if self._closed:
            raise NodeClosed(f"node {self.name!r} is closed")
        return self._bus.subscribe(
            database=database,
            prefix=prefix,
            kinds=kinds,
            names=names,
            maxsize=maxsize,
            since=since,
            origin=self.name,
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
        peers = self._peers
        if change.origin == self.name and (self._change_listeners or peers is not None):
            if self._change_listeners:
                for listener in list(self._change_listeners):
                    listener(change)
            if peers is not None:
                waiting = self._ack_waiting(
                    peers.changed(change, ack if kind is not None else "local")
                )
                if peers.pending:
                    self._drain()
        if kind is not None:
            self._bus.publish_change(change)
        if self.footprint.over:
            self._evict()
        return waiting

    def _record_all(self, changes: list[Change]) -> None:
        """``record`` what a peer's messages changed here (a directory: thousands)."""
        name, publish = self.name, self._bus.publish_change
        for change in changes:
            if change.origin == name:  # a repair this node made: peers get it
                self.record(change)
            elif change.kind is not None:
                publish(change)

    def _ack_waiting(self, ack_id: int | None) -> asyncio.Future[None] | None:
        """The future done once the write of ``ack_id`` is acknowledged (None: no id)."""
        if ack_id is None:
            return None
        waiting = self._acks[ack_id] = asyncio.get_running_loop().create_future()
        waiting.add_done_callback(functools.partial(self._ack_ended, ack_id))
        return waiting

    def _ack_ended(self, ack_id: int, _: object) -> None:
        self._acks.pop(ack_id, None)
        if self._peers is not None:
            self._peers.forget_ack(ack_id)

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
        peers = self._peers
        ident = peers.emit(name, packed) if peers is not None else None
        self._bus.publish_custom(self.name, name, packed, ident)
        if name in self.groups.names:  # a group consumes it
            ident = ident or f"{self.name}:local:{next(self._local_event_ids)}"
            self.consumers.event(Custom(ident, name, packed, self.name))
        if peers is not None:
            self._drain()
            if peers.congested:
                await self.flush()

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

    def consume(
        self,
        name: str,
        group: str,
        *,
        ack_timeout: float = 30.0,
        maxsize: int | None = None,
    ) -> Consumer:
        """A consumer of the custom events ``name`` in ``group``: each event emitted on
        any node goes to one consumer of the group across the cluster, and to another
        if it is not acknowledged (``await event.ack()``) within ``ack_timeout``
        seconds: at least once. Events emitted while the group has no consumer are
        not kept for it. See docs/events.md, "Consumer groups".

        Example::

            async with node.consume("job", group="billing") as jobs:
                async for job in jobs:
                    await bill(job.payload)
                    await job.ack()

        Raises:
            InvalidName: ``name`` or ``group`` breaks the naming rules.
            InvalidValue: ``ack_timeout`` is not 0.001 to 1e8 seconds, ``maxsize`` <
                1, or this node has 4,096 consumers already.
            Unavailable: this is a client (groups are of nodes).
        """
        if self._closed:
            raise NodeClosed(f"node {self.name!r} is closed")
        if self.role == "client":
            raise Unavailable("a client cannot consume in a group: consume on a node")
        self.authorize("read")
        return self.consumers.consume(name, group, ack_timeout, maxsize)

    @property
    def groups(self) -> Groups:
        """The consumer groups as this node sees them (``pending``, ``given_up``, ...)."""
        return self.consumers.groups

    def ack(self, group: str, ident: str) -> bool:
        """``group`` has handled the custom event ``ident``: no consumer of it gets
        the event again (what ``GroupEvent.ack`` does; over HTTP, ``POST
        /v1/events/ack``). Whether the event was waiting here for an ack."""
        return self.consumers.ack(group, ident)

    def _announce_consumers(self, table: tuple[ConsumerInfo, ...]) -> None:
        if self._peers is not None and not self._closed:
            self._peers.consumers(table)
            self._drain()

    def _group_acked(self, message: GroupAck) -> None:
        if self._peers is not None and not self._closed:
            self._peers.group_ack(message.group, message.id)
            self._drain()

    def _group_said(self, said: ConsumersOf | GroupAcked) -> None:
        """What a node peer said of its consumers, or of an event a group handled."""
        if isinstance(said, GroupAcked):
            self.groups.acked_by(said.group, said.id)
        else:
            self.consumers.peer(said.peer, said.consumers)

    def _wake_timer(self) -> None:
        """The timer sleeps till an earlier deadline than it was set for."""
        sleep = self._timer_sleep
        if sleep is not None and self.consumers.due < self._armed:
            sleep.cancel()

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

    def _gate_changed(self) -> None:
        """Tell the databases what to check before a read or a write (``Gate``)."""
        gate, checked = self._gate, self._closed or self._scope is not None
        gate.read = self.reading if checked or self._read_listeners else None
        gate.write = self.writing if checked else None

    def writing(self, database: str) -> None:
        """A write to ``database`` begins: check the node is open and a client's
        write right.

        Raises:
            NodeClosed: the node is closed.
            Forbidden: the client's token lacks the write right on ``database``.
        """
        if self._closed:
            raise NodeClosed(f"node {self.name!r} is closed")
        self.authorize("write", database)

    def reading(self, database: str, key: str) -> None:
        """A read of ``key`` begins (``Database.get``): check the node is open and a
        client's read right, and tell the read listeners.

        Raises:
            NodeClosed: the node is closed.
            Forbidden: the client's token lacks the read right on ``database``.
        """
        if self._closed:
            raise NodeClosed(f"node {self.name!r} is closed")
        if self._scope is not None:
            self.authorize("read", database)
        if self._read_listeners:
            for listener in self._read_listeners:
                listener(database, key)

    @property
    def congested(self) -> bool:
        """Whether a link has many messages waiting for its writer: a writer that
        never awaits anything else should ``await node.flush()`` now."""
        return self._peers is not None and self._peers.congested

    async def flush(self) -> None:
        """Let the link writers send what is queued (see ``congested``)."""
        if self._peers is not None:
            self._peers.congested = False
        await asyncio.sleep(0)

    def add_read_listener(self, listener: Callable[[str, str], None]) -> Callable[[], None]:
        """Call ``listener(database, key)`` on every ``get`` (statistics use it);
        return a function that removes it. A listener must be quick and not raise."""
        self._read_listeners.append(listener)
        self._gate_changed()

        def remove() -> None:
            self._read_listeners.remove(listener)
            self._gate_changed()

        return remove

    def apply_change(self, change: Change) -> None:
        """Apply a change made elsewhere (its events have that node as origin).

        Raises:
            InvalidUpdate: a delta does not decode.
            InvalidName: the database name breaks the rules.
        """
        for applied in self.database(change.database)._keyspace.apply(change):
            self.record(applied)
