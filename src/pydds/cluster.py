"""A node's links: accepting, dialing, serving each link, heartbeats, reconnection.

Theory of operation
-------------------
Every link runs three tasks: a reader that decodes frames, feeds them to the link's
``Session`` and hands what comes out to ``Replication`` (or to the member table);
a writer that sends all queued messages of the link as one frame whenever it is
woken (per-link order is FIFO, and a busy link batches); and a ticker that drives
the session's heartbeats and silence timeout on the node's ``Clock``.

Two nodes that dial each other at once get two links; both keep the one dialed by
the node whose name sorts first and close the other. A link that closes makes its
peer suspect; the node dials it again with backoff (0.1 s doubling to 1 s) until it
answers or has been suspect for ``dead_after`` seconds, when it has left.

Queues are bounded: a peer with more than ``max_pending`` messages queued for it
(it reads too slowly) is disconnected; anti-entropy at the next link repairs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .changes import Change
from .clock import Clock
from .crdt import values
from .errors import (
    AckTimeout,
    InvalidValue,
    KeyNotFound,
    LinkClosed,
    MalformedFrame,
    NodeClosed,
    ProtocolError,
    Unavailable,
)
from .events import Event, EventKind
from .net import messages as m
from .net.auth import new_nonce
from .net.codec import PROTOCOL, decode_frame, encode_frame
from .net.holders import ValueId
from .net.membership import Member, Membership
from .net.ratelimit import RateLimit
from .net.replication import (
    AckReceived,
    HoldingDue,
    Notice,
    PullDone,
    PullFor,
    RelayAck,
    Replication,
    Send,
)
from .net.session import Session, State
from .net.transport import Link, Transport

if TYPE_CHECKING:
    from .node import Node

__all__ = ["Cluster", "ClusterSettings", "Traffic", "Warmup"]

log = logging.getLogger("pydds.cluster")

#: Messages queued on one link after which local writes yield to the link writers.
FLUSH_AT = 1000
#: Seconds between two attempts to reach a lost peer, at most.
MAX_BACKOFF = 1.0
#: Clients' acknowledged writes a gateway tracks at most (the oldest are forgotten).
MAX_RELAYED = 100_000
#: Seconds of handling one frame after which the reader lets other tasks run.
YIELD_AFTER = 0.005


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """Timing and bounds of a node's links."""

    heartbeat: float = 1.0  # seconds between pings on an idle link
    timeout: float = 5.0  # seconds of silence after which a link closes
    pull_timeout: float = 2.0  # the bounded wait of a pull
    join_timeout: float = 5.0  # the bounded wait of ``Node.join``
    dead_after: float = 30.0  # seconds suspect before a member has left
    anti_entropy: float = 30.0  # seconds between state-vector exchanges on a link
    ack_timeout: float = 5.0  # the bounded wait of a write with an ack level
    warmup_rate: float = 1000.0  # pulls per second of the warm-up after a join
    max_pending: int = 100_000  # messages queued for one peer before it is dropped
    max_frame_bytes: int = 32 * 1024 * 1024  # larger frames close the link
    handshake_timeout: float = 5.0  # seconds for a link to prove itself, or it closes
    max_messages_per_s: float = 1_000_000  # read from one link; faster peers are slowed
    max_bytes_per_s: float = 256 * 1024 * 1024  # likewise
    max_pulls: int = 10_000  # pulls under way at once; more fail with Unavailable


@dataclass(eq=False)
class _Link:
    session: Session
    link: Link
    dialed: bool  # this node opened it
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    #: Done (on the dialing end) once the peer accepted this node: its first data.
    opened: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    traffic: Traffic = field(default_factory=lambda: Traffic())


@dataclass(slots=True)
class Traffic:
    """What one link carried, counted since it opened."""

    bytes_in: int = 0
    bytes_out: int = 0
    messages_in: int = 0
    messages_out: int = 0


@dataclass(frozen=True, slots=True)
class Warmup:
    """Progress of the warm-up after joining: the values being pulled in."""

    pending: int  # values still to pull
    pulled: int  # values pulled
    failed: int  # values no holder gave in time
    running: bool  # whether a warm-up is under way


@dataclass(eq=False)
class _AckWait:
    needed: int  # acknowledgements still needed from peers
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    peers: set[str] = field(default_factory=set)  # who acknowledged


class Cluster:
    """The network side of one node."""

    def __init__(self, node: Node, transport: Transport, clock: Clock, settings: ClusterSettings):
        self.node = node
        self.transport = transport
        self.clock = clock
        self.settings = settings
        self.address: str | None = None  # where this node accepts links
        self.replication = Replication(
            node.name,
            lambda name: node.database(name).keyspace,
            node.databases,
            is_client=node.role == "client",
            max_payload_bytes=node.limits.max_value_bytes,
        )
        self.membership = Membership(
            node.name, None, dead_after=settings.dead_after, dials=node.role == "node"
        )
        self.gateways: list[str] = []  # a client's addresses to try besides known nodes
        self.congested = False  # some link has FLUSH_AT messages waiting for its writer
        self._links: dict[str, _Link] = {}  # open links by peer name
        self._states: set[_Link] = set()  # every link being served, open or opening
        self._dialing: set[str] = set()  # addresses a redial task is working on
        self._pulls: dict[ValueId, asyncio.Future[bool]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._serving: set[asyncio.Task[Any]] = set()  # the tasks that serve a link
        self._ack_ids = itertools.count(1)
        self._acks: dict[int, _AckWait] = {}
        #: relay ack id -> (client, the client's ack id, when): see ``_relay_ack``
        self._relayed: dict[int, tuple[str, int, float]] = {}
        self._closing = False
        self._warm_pending: list[ValueId] = []
        self._warm_pulled = 0
        self._warm_failed = 0
        self._warming: asyncio.Task[None] | None = None
        #: Counts of pulls, acknowledgements and errors, by name (see ``pydds.metrics``).
        self.stats: Counter[str] = Counter()
        self.totals = Traffic()  # what every link carried, since the node started

    def _serve_task(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = self._spawn(coro)
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- opening and closing --------------------------------------------------------------

    async def listen(self, address: str, advertise: str | None = None) -> str:
        """Accept links at ``address``; return the address peers should dial
        (``advertise`` when given, else the bound address)."""
        bound = await self.transport.listen(address, self._accept)
        if advertise is not None and "://" not in advertise:
            advertise = f"{bound.split('://', 1)[0]}://{advertise}"  # the bound scheme
        self.address = advertise or bound
        self.membership.address = self.address
        return self.address

    async def _accept(self, link: Link) -> None:
        if self._closing:
            await link.close()
            return
        task = asyncio.current_task()
        if task is not None:  # accepted links run in the transport's task
            self._serving.add(task)
        try:
            await self._serve(link, dialed=False)
        finally:
            if task is not None:
                self._serving.discard(task)

    async def join(self, address: str) -> None:
        """Link to the node at ``address`` and wait (bounded) until the link is open
        and the peer has accepted this node (its first data after the handshake).
        Joining a node this one is linked to already returns at once (the new link
        closes as a duplicate; the open one stays).

        Raises:
            LinkClosed: it could not be reached or refused the link in time.
        """
        link = await self.transport.connect(address)
        state = _Link(self._session(), link, True)
        self._serve_task(self._serve(link, dialed=True, state=state))
        done = await self._first(state.opened, self.settings.join_timeout)
        if not done:
            raise LinkClosed(f"no open link to {address} within {self.settings.join_timeout}s")
        if state.opened.exception() is not None:
            peer = state.session.peer
            linked = self._links.get(peer.name) if peer is not None else None
            if linked is not None and linked is not state and not linked.session.closed:
                return  # linked to it already (this link was the duplicate): joined
            raise LinkClosed(f"link to {address} failed: {state.opened.exception()}")

    async def _first(self, future: asyncio.Future[Any], seconds: float) -> bool:
        """Wait for ``future`` up to ``seconds`` of the node's clock; True if it is done."""
        sleeper = asyncio.ensure_future(self.clock.sleep_until(self.clock.now() + seconds))
        try:
            await asyncio.wait({future, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
        return future.done()

    def redial(self, address: str) -> None:
        """Keep dialing ``address`` with backoff until a link to it opens."""
        if address not in self._dialing and address != self.address:
            self._dialing.add(address)
            self._spawn(self._redial(address))

    async def _backoff(self) -> AsyncIterator[None]:
        """Retry turns while the node runs: 0.1 s apart at first, doubling to
        ``MAX_BACKOFF`` (a healed network is noticed within that)."""
        delay = 0.1
        while not self._closing:
            yield
            await self.clock.sleep_until(self.clock.now() + delay)
            delay = min(delay * 2, MAX_BACKOFF)

    async def _dial(self, address: str) -> bool:
        """One attempt to link to ``address``."""
        try:
            await self.join(address)
            return True
        except (LinkClosed, OSError) as exc:
            log.debug("dialing %s failed: %s", address, exc)
            return False

    async def _redial(self, address: str) -> None:
        known: str | None = None  # the name of the node at ``address``, once known
        try:
            async for _ in self._backoff():
                name = self._name_at(address) or known
                if name is not None:
                    if name in self._links:
                        return
                    if self.membership.get(name) is None:
                        return  # it has left, or was removed
                    known = name
                if await self._dial(address):
                    return
                self.expire_members()
        finally:
            self._dialing.discard(address)

    def find_gateway(self, addresses: list[str]) -> None:
        """A client reached none of ``addresses``: keep them as gateways to try, and
        try them (and every node it learns of) with backoff until one answers."""
        self.gateways.extend(addresses)
        self._spawn(self._find_gateway(addresses[0]))

    async def _find_gateway(self, lost: str) -> None:
        """A client lost its gateway: link to another node it knows (the lost one
        last), with backoff, until one answers."""
        async for _ in self._backoff():
            if self._links:
                return
            known = [m.address for m in self.membership.members()[1:] if m.address]
            for address in sorted({*known, *self.gateways, lost}, key=lambda a: a == lost):
                if await self._dial(address):
                    return

    def _name_at(self, address: str) -> str | None:
        for member in self.membership.members():
            if member.address == address and member.state != "self":
                return member.name
        return None

    def expire_members(self) -> None:
        """Remove the members suspect for longer than ``dead_after`` (a ``left`` event
        each): run by the node's sweeper, and after a failed redial."""
        gone = self.membership.expire(self.clock.now())
        if gone:
            self._members_changed()
        for name in gone:
            self._member_event(EventKind.LEFT, name)

    def _members_changed(self) -> None:
        """The member table changed: replication relays to members it has no link to."""
        self.replication.members = frozenset(m.name for m in self.membership.members()[1:])

    def _left(self, sender: str, name: str) -> None:
        """Node ``name`` leaves the cluster, as ``sender`` says (``name`` itself, or a
        node it told): drop it now (a ``left`` event), count it no more, dial it no
        more, and pass the news on once to the other nodes linked here."""
        if name == self.node.name:
            return
        if name != sender:
            linked = self._links.get(name)
            if linked is not None and not linked.session.closed:
                return  # linked here: its own Leave, or its link closing, tells
        if not self.membership.remove(name):
            return  # not a member (dropped already): passed on no further
        self._members_changed()
        self._member_event(EventKind.LEFT, name)
        if self.node.role == "node":
            self.send(
                [
                    (peer, m.Leave(name))
                    for peer, state in self._links.items()
                    if peer not in (sender, name) and not self._is_client(state)
                ]
            )

    def _member_event(self, kind: EventKind, member: str) -> None:
        self.node.publish(Event(kind, origin=self.node.name, member=member))

    async def close(self) -> None:
        """Close every link (peers learn why) and stop accepting."""
        self._closing = True
        if self.node.role == "node":  # a member says goodbye; a client goes quietly
            for state in self._links.values():
                if not self._is_client(state):
                    state.session.send([m.Leave(self.node.name)])
        for state in list(self._states):  # open links, and links still opening
            state.session.close("node shutting down")
            state.wake.set()
        serving = list(self._serving)
        if serving:  # each sends its Close and ends when its link does
            await asyncio.wait(serving, timeout=2.0)
        for state in list(self._states):  # a peer that never closed its end
            await state.link.close()
        await self.transport.close()
        rest = list(self._tasks)  # redials sleeping, and anything stuck
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)
        for future in self._pulls.values():
            if not future.done():
                future.set_result(False)

    # -- serving a link -----------------------------------------------------------------

    def _hello(self) -> m.Hello:
        role = self.node.role
        return m.Hello(
            self.node.name,
            role,
            self.address,
            PROTOCOL,
            new_nonce(),
            self.node.credentials.credential_id(role),
            self.node.client_id,
        )

    def _session(self) -> Session:
        return Session(
            self._hello(),
            now=self.clock.now(),
            heartbeat=self.settings.heartbeat,
            timeout=self.settings.timeout,
            credentials=self.node.credentials,
            handshake_timeout=self.settings.handshake_timeout,
        )

    async def _serve(self, link: Link, *, dialed: bool, state: _Link | None = None) -> None:
        if state is None:
            state = _Link(self._session(), link, dialed)
        session = state.session
        limit = RateLimit(
            self.settings.max_messages_per_s, self.settings.max_bytes_per_s, self.clock.now()
        )
        self._states.add(state)
        if self._closing:
            session.close("node shutting down")
        writer = self._spawn(self._write(state))
        ticker = self._spawn(self._tick(state))
        state.wake.set()
        try:
            while not session.closed:
                frame = await link.receive()
                try:
                    batch = decode_frame(frame, max_bytes=self.settings.max_frame_bytes)
                except MalformedFrame as exc:
                    self.stats["error:malformed_frame"] += 1
                    session.close(str(exc))
                    break
                size, count = len(frame), len(batch)
                now = self.clock.now()
                wait = limit.take(messages=count, size=size, now=now)
                if wait > 0:  # faster than its limits: slow the peer down, not others
                    self.stats["rate:waits"] += 1
                    await self.clock.sleep_until(now + wait)
                    now = self.clock.now()
                state.traffic.bytes_in += size
                state.traffic.messages_in += count
                self.totals.bytes_in += size
                self.totals.messages_in += count
                was_open = session.state is State.OPEN
                for_node = session.receive(batch, now)
                if not was_open and session.state is State.OPEN and not self._opened(state):
                    break
                if for_node and not state.opened.done() and session.state is State.OPEN:
                    # The peer's first data after the handshake (a node sends its
                    # members at once): it accepted this end's proof. Until then a
                    # node without credentials, which accepts any proof, could not
                    # tell a peer that refuses it from one that lets it in.
                    state.opened.set_result(None)
                turn = time.monotonic()
                # What the peer sent before its Close counts (a node's last writes and
                # its Leave go out with its Close); a fault found here ends the frame.
                peer_closed = session.closed
                for message in for_node:
                    if session.closed and not peer_closed:
                        break
                    if not self._dispatch(state, message):
                        break
                    if time.monotonic() - turn > YIELD_AFTER:
                        # A large frame does not hold the event loop: what it has
                        # changed so far is seen (events, reads) while the rest waits.
                        state.wake.set()
                        await asyncio.sleep(0)
                        turn = time.monotonic()
                if session.pending or session.closed:  # answers, or a Close, to send
                    state.wake.set()
        except LinkClosed:
            pass
        finally:
            ticker.cancel()
            state.wake.set()
            if not session.closed:
                session.close("link lost")
            try:
                await asyncio.wait_for(writer, 1.0)
            except (TimeoutError, asyncio.CancelledError):
                writer.cancel()
            await link.close()
            self._states.discard(state)
            self._gone(state)

    def _opened(self, state: _Link) -> bool:
        """The handshake completed; return False if this link is a duplicate."""
        assert state.session.peer is not None
        peer = state.session.peer.name
        if state.session.peer.role == "client":
            return self._client_opened(state, peer)
        if self.node.role == "client" and any(
            s.session.peer and s.session.peer.role == "node" for s in self._links.values()
        ):
            state.session.close("a client links to one gateway at a time")
            return False
        existing = self._links.get(peer)
        if existing is not None and self._is_client(existing):
            # A client that took the name before any node had it: the node wins.
            existing.session.close(f"a node named {peer!r} linked: a client needs another name")
            existing.wake.set()
            del self._links[peer]
            self._notices(self.replication.closed(peer))
            existing = None
        if existing is not None:
            keep_new = (self.node.name if state.dialed else peer) < (
                self.node.name if existing.dialed else peer
            )
            loser = existing if keep_new else state
            loser.session.close("duplicate link")
            loser.wake.set()
            if not keep_new:
                return False
            self._links[peer] = state
            # As on a first link: the peer's members, which also tell a peer that
            # dialed this link that it was accepted (its join waits for that).
            state.session.send([m.Members(self.membership.listing())])
            return True
        self._links[peer] = state
        before = self.membership.get(peer)
        self.membership.linked(peer, state.session.peer.address)
        self._members_changed()
        if before is None or before.state == "joining":
            self._member_event(EventKind.JOINED, peer)
        elif before.state == "suspect":
            self._member_event(EventKind.REACHABLE, peer)
        if self.node.role == "node":  # a client joins no one into the cluster
            state.session.send([m.Members(self.membership.listing())])
        self.send(self.replication.opened(peer))
        if self._warming is None or self._warming.done():
            self._warming = self._spawn(self._warm_up())
        return True

    # -- warm-up ----------------------------------------------------------------------

    @property
    def warmup(self) -> Warmup:
        running = self._warming is not None and not self._warming.done()
        return Warmup(len(self._warm_pending), self._warm_pulled, self._warm_failed, running)

    async def _warm_up(self) -> None:
        """After a link opens: pull, rate-limited, the values that peers hold fresh
        (read or written within their database's expiry there) and this node lacks,
        in databases with an expiry (without one, values stay lazy). It never delays
        the join; ``warmup`` and a ``warmed`` event report progress."""
        step = 0.1
        per_step = max(1, int(self.settings.warmup_rate * step))
        failed: set[ValueId] = set()
        quiet_steps = 0  # steps with nothing to pull: the exchange may still be arriving
        while not self._closing and not self.node.closed and quiet_steps < 3:
            await self.clock.sleep_until(self.clock.now() + step)
            if self._closing or self.node.closed:
                break
            self._warm_pending = [v for v in self._warm_candidates() if v not in failed]
            if not self._warm_pending:
                quiet_steps += 1
                continue
            quiet_steps = 0
            batch = self._warm_pending[:per_step]
            results = await asyncio.gather(
                *(self.pull(db, key) for db, key, _ in batch), return_exceptions=True
            )
            for value_id, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    self._warm_failed += 1
                    failed.add(value_id)
                else:
                    self._warm_pulled += 1
        self._warm_pending = []
        if not self._closing:
            payload = values.pack({"pulled": self._warm_pulled, "failed": self._warm_failed}, 64)
            event = Event(EventKind.WARMED, origin=self.node.name, packed_payload=payload)
            self.node.publish(event)

    def _warm_candidates(self) -> list[ValueId]:
        out = []
        databases = set(self.node.databases())
        for (database, key, gen), holders in self.replication.holders.items():
            if not holders or database not in databases:
                continue
            ks = self.node.database(database).keyspace
            if ks.settings.expire is None:
                continue  # no expiry window: its values stay lazy
            if ks.generation(key) == gen and not ks.holds(key):
                out.append((database, key, gen))
        return out

    @staticmethod
    def _is_client(state: _Link) -> bool:
        return state.session.peer is not None and state.session.peer.role == "client"

    def _client_opened(self, state: _Link, peer: str) -> bool:
        """A client linked: this node is its gateway. Clients are never members, and
        a client never takes a node's name (a node that comes back would find its
        name in use)."""
        if peer == self.node.name or self.membership.get(peer) is not None:
            state.session.close(f"{peer!r} is a node's name: a client needs a name of its own")
            return False
        if peer in self._links:
            state.session.close(f"{peer!r} is linked already")
            return False
        self._links[peer] = state
        # The nodes it may move to if this gateway goes away.
        state.session.send([m.Members(self.membership.listing())])
        hello = state.session.peer
        assert hello is not None
        self.send(self.replication.opened(peer, "client", state.session.grant, hello.client_id))
        return True

    def _gone(self, state: _Link) -> None:
        reason = state.session.close_reason or ""
        if state.session.refused:
            self.stats["error:auth"] += 1
            hello = state.session.peer
            log.warning(
                "link from %s refused: %s",
                f"{hello.role} {hello.name!r}" if hello is not None else "an unnamed peer",
                reason,
            )
        if not state.opened.done():
            state.opened.set_exception(LinkClosed(state.session.close_reason or "closed"))
            state.opened.exception()  # retrieved: a failed join raises its own error
        peer = state.session.peer.name if state.session.peer is not None else None
        if peer is None or self._links.get(peer) is not state:
            return
        del self._links[peer]
        self._notices(self.replication.closed(peer))
        hello = state.session.peer
        if hello is None or hello.role == "client":
            return  # a client's gateway forgets it: clients are never members
        if self.node.role == "node" and self.membership.get(peer) is None:
            return  # it left: dropped already, nothing to redial
        self.membership.unlinked(peer, self.clock.now())
        if not self._closing:
            self._member_event(EventKind.UNREACHABLE, peer)
        address = hello.address
        if self._closing or address is None:
            return
        if self.node.role == "client":
            self._spawn(self._find_gateway(address))
        else:
            self.redial(address)

    def _dispatch(self, state: _Link, message: m.Message) -> bool:
        """Act on one message from a link; False when it was a fault (the link closes)."""
        hello = state.session.peer
        assert hello is not None
        peer = hello.name
        if isinstance(message, m.Members) and hello.role == "node":
            learned = self.membership.learn(message.members, self.clock.now())
            if learned:
                self._members_changed()
            if self.node.role == "node":  # a client only remembers gateways to move to
                for _, address in learned:
                    self.redial(address)
            return True
        if isinstance(message, m.Leave) and hello.role == "node":
            self._left(peer, message.name)
            return True
        try:
            sends, notices = self.replication.handle(peer, message)
        except ProtocolError as exc:
            self.stats["error:protocol"] += 1
            log.warning("closing the link to %s: %s", peer, exc)
            state.session.close(str(exc))
            return False
        except NodeClosed:
            state.session.close("node shutting down")
            return False
        if sends:
            self.send(sends)
        if notices:
            self._notices(notices)
        return True

    def _notices(self, notices: Iterable[Notice]) -> None:
        record = self.node.record
        for notice in notices:
            if isinstance(notice, Change):  # what a message changed here
                record(notice)
                continue
            if isinstance(notice, PullFor):
                self._spawn(self._pull_for(notice))
                continue
            if isinstance(notice, HoldingDue):
                self._spawn(self._holding(notice))
                continue
            if isinstance(notice, PullDone):
                future = self._pulls.pop(notice.value, None)
                if future is not None and not future.done():
                    future.set_result(notice.answered)
            elif isinstance(notice, RelayAck):
                self._relay_ack(notice)
            elif isinstance(notice, AckReceived):
                relayed = self._relayed.get(notice.id)
                if relayed is not None:  # a relayed client write: tell the client who
                    self.send([(relayed[0], m.AckFrom(relayed[1], notice.peer))])
                    continue
                wait = self._acks.get(notice.id)
                if wait is not None and notice.peer not in wait.peers:
                    wait.peers.add(notice.peer)
                    if len(wait.peers) >= wait.needed and not wait.done.done():
                        wait.done.set_result(None)
            else:
                self._custom_received(notice.message)

    def _relay_ack(self, notice: RelayAck) -> None:
        """Relay a client's write to the cluster under an ack id of this node's; the
        acks that come back go to the client as ``AckFrom`` (for ``2 * ack_timeout``,
        at most ``MAX_RELAYED`` writes at a time: the oldest are forgotten)."""
        relay_id = next(self._ack_ids)
        now = self.clock.now()
        relayed = self._relayed
        relayed[relay_id] = (notice.client, notice.id, now)
        while relayed:
            oldest = next(iter(relayed))
            if (
                len(relayed) <= MAX_RELAYED
                and relayed[oldest][2] > now - 2 * self.settings.ack_timeout
            ):
                break
            del relayed[oldest]
        self.send(self.replication.changed(notice.change, relay_id, to=notice.to))

    def _custom_received(self, message: m.Custom) -> None:
        try:
            values.check(values.unpack(message.payload), self.node.limits.max_depth)
        except (InvalidValue, ValueError, TypeError) as exc:
            self.stats["error:custom_payload"] += 1
            log.warning("dropped custom event %r from %s: %s", message.name, message.origin, exc)
            return
        self.node.publish(
            Event(
                EventKind.CUSTOM,
                origin=message.origin,
                name=message.name,
                packed_payload=message.payload,
            )
        )

    async def _holding(self, notice: HoldingDue) -> None:
        """Tell a peer what this node holds, once the directory it was just sent is on
        its way (the link's writer runs first)."""
        await asyncio.sleep(0)
        self.send(self.replication.holding(notice.peer, notice.database))

    async def _pull_for(self, notice: PullFor) -> None:
        """Pull a value a client asked for, then answer the client."""
        msg = notice.message
        with contextlib.suppress(Unavailable, KeyNotFound):
            await self.pull(msg.database, msg.key)
        self.send([self.replication.answer_pull(notice.client, msg)])

    async def _write(self, state: _Link) -> None:
        session, link = state.session, state.link
        try:
            while True:
                await state.wake.wait()
                state.wake.clear()
                batch = session.data_to_send(self.clock.now())
                if batch:
                    frame = encode_frame(batch)
                    state.traffic.bytes_out += len(frame)
                    state.traffic.messages_out += len(batch)
                    self.totals.bytes_out += len(frame)
                    self.totals.messages_out += len(batch)
                    await link.send(frame)
                if session.closed:
                    await link.close()
                    return
        except LinkClosed:
            return

    async def _tick(self, state: _Link) -> None:
        resync_at = self.clock.now() + self.settings.anti_entropy
        while True:
            now = self.clock.now()
            deadline = state.session.tick(now)
            if deadline is None:
                state.wake.set()
                return
            peer = state.session.peer
            if now >= resync_at and peer is not None and self._links.get(peer.name) is state:
                self.send(self.replication.resync(peer.name))
                resync_at = now + self.settings.anti_entropy
            state.wake.set()
            await self.clock.sleep_until(min(deadline, resync_at))

    # -- what the node asks ------------------------------------------------------------------

    def send(self, sends: Iterable[Send]) -> None:
        """Queue messages to peers; a peer too far behind is disconnected."""
        links, max_pending = self._links, self.settings.max_pending
        for peer, message in sends:
            state = links.get(peer)
            if state is None:
                continue
            pending = state.session.queue(message)
            if pending > FLUSH_AT:
                self.congested = True
            if pending > max_pending and not state.session.closed:
                # Its writer is stuck sending (the peer reads nothing): cut the link
                # rather than queue more.
                self.stats["error:slow_peer"] += 1
                state.session.close(f"peer too slow: {pending} messages queued")
                self._spawn(state.link.close())
            state.wake.set()

    async def flush(self) -> None:
        """Let the link writers send what is queued (writes call this when a link
        has ``FLUSH_AT`` messages waiting, so that a writer that never awaits anything
        else still streams frames while it writes, instead of one at the end)."""
        self.congested = False
        await asyncio.sleep(0)

    def changed(self, change: Change, ack: str | int = "local") -> asyncio.Future[None] | None:
        """A change made on this node: ship it.

        Returns:
            With an ack level beyond ``"local"``, a future done once enough nodes
            applied it (see ``wait_ack``); None otherwise.
        """
        needed = 0 if ack == "local" else self.needed_acks(ack)
        if needed <= 0:
            if self._links:
                self.send(self.replication.changed(change))
            return None
        ack_id = next(self._ack_ids)
        wait = self._acks[ack_id] = _AckWait(needed)
        self.send(self.replication.changed(change, ack_id))
        wait.done.add_done_callback(lambda _: self._acks.pop(ack_id, None))
        return wait.done

    def needed_acks(self, ack: str | int) -> int:
        """How many other nodes must acknowledge a write of level ``ack``."""
        nodes = len(self.membership.members())  # this node and every node it knows
        if ack == "local":
            return 0
        if self.node.role == "client":  # a client is no node: every ack is another's
            known = nodes - 1
            if ack == "majority":
                return known // 2 + 1
            return known if ack == "all" else int(ack)
        if ack == "majority":
            return nodes // 2  # with this node: a majority of all nodes
        if ack == "all":
            return nodes - 1
        assert isinstance(ack, int)
        return ack - 1

    async def wait_ack(self, done: asyncio.Future[None], ack: str | int) -> None:
        """Wait (bounded) for a write's acknowledgements.

        Raises:
            AckTimeout: too few came in time (the write still stands).
        """
        self.stats["ack:waited"] += 1
        if not await self._first(done, self.settings.ack_timeout):
            self.stats["ack:timeout"] += 1
            done.cancel()
            raise AckTimeout(
                f"write not acknowledged at level {ack!r} within {self.settings.ack_timeout}s "
                "(it stands, and goes on replicating)"
            )

    async def pull(self, database: str, key: str) -> None:
        """Pull the value of ``key`` from its holders, with a bounded wait.

        Every linked peer is asked. If none holds it while members this node is
        still linking to (just joined) might, it asks again once they are linked,
        within the same bounded wait.

        Raises:
            Unavailable: no peer holds it, or none answered in time.
        """
        deadline = self.clock.now() + self.settings.pull_timeout
        pulling = self.replication.pulls
        if len(pulling) >= self.settings.max_pulls:
            gen = self.node.database(database).keyspace.generation(key)
            if (database, key, gen) not in pulling:
                self.stats["pull:refused"] += 1
                raise Unavailable(f"too many pulls under way ({len(pulling)}); try again")
        while True:
            value_id, sends = self.replication.pull(database, key)
            linking = any(m.state == "joining" for m in self.membership.members())
            if value_id in self.replication.pulls:
                future = self._pulls.get(value_id)
                if future is None:
                    future = self._pulls[value_id] = asyncio.get_running_loop().create_future()
                self.send(sends)
                left = deadline - self.clock.now()
                self.stats["pull:asked"] += 1
                if not await self._first(asyncio.shield(future), left):
                    self.stats["pull:timeout"] += 1
                    self.replication.forget_pull(value_id)
                    self._pulls.pop(value_id, None)
                    raise Unavailable(f"no holder of {key!r} in {database!r} answered in time")
                if future.result():
                    return
            if not linking or self.clock.now() >= deadline:
                self.stats["pull:unavailable"] += 1
                raise Unavailable(f"no linked peer holds {key!r} of {database!r}")
            await self.clock.sleep_until(min(deadline, self.clock.now() + 0.05))

    def release(self, database: str, key: str, gen: int) -> None:
        """This node's copy of a value went stale: peers stop pushing it."""
        self.send(self.replication.release(database, key, gen))

    @property
    def alone(self) -> bool:
        """Whether this node knows no other member (it is the whole cluster)."""
        return len(self.membership.members()) == 1

    def emit(self, name: str, packed: bytes) -> None:
        """A custom event emitted on this node: to every peer, once."""
        self.send(self.replication.custom(name, packed, self.node.name))

    def members(self) -> list[Member]:
        return self.membership.members()

    def traffic(self) -> dict[str, Traffic]:
        """What each open link carried since it opened, by peer name."""
        return {peer: state.traffic for peer, state in self._links.items()}
