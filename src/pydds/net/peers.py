"""The peers layer (sans-IO): every decision about this node's links and peers.

Theory of operation
-------------------
``Peers`` holds the link table, the member table and the replication protocol, and
decides: which link to keep of two to the same peer (the one dialed by the node
whose name sorts first), what a client may be (never a member, never a gateway),
who is a member and when one has left, whom to dial again and when (backoff 0.1 s
doubling to ``MAX_BACKOFF``, until the member has been unreachable for
``dead_after``), how many acknowledgements a write needs and when it has them,
where a client's acknowledged write is relayed, what warm-up pulls.

It does no IO and keeps no time of its own: every input carries ``now``, and what
the node must do next collects in an ``Output`` that the node takes (``take``) after
each input and carries out: wake a link's writer, dial an address, close a link,
publish member and custom events, record the changes a message made, resolve the
futures of joins, pulls and acks. ``tick(now)`` acts on the time (heartbeats,
silence and handshake timeouts, anti-entropy, redials, member expiry) and returns
the next deadline; ``due`` is the earliest deadline made since, so that the node's
one timer can wake sooner. Nothing re-enters the protocol while it handles a
message: its results wait in the output.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from ..changes import Change
from ..config import Limits
from ..crdt import values
from ..errors import InvalidValue, NodeClosed, ProtocolError, Unavailable
from . import messages as m
from .auth import Credentials, new_nonce
from .codec import PROTOCOL
from .holders import ValueId
from .local import LocalDatabase
from .membership import Member, Membership, MemberState
from .ratelimit import RateLimit
from .replication import (
    AckReceived,
    ConsumersOf,
    CustomReceived,
    GroupAcked,
    HoldingDue,
    Notice,
    PullDone,
    PullFor,
    RelayAck,
    Replication,
    ResendCustoms,
    Send,
)
from .session import Session, State, Streamed

__all__ = ["ClusterSettings", "Output", "PeerLink", "Peers", "RareOutput", "Traffic", "Warmup"]

#: The member states that count as reached (for ``in_touch``).
_REACHED = frozenset({MemberState.SELF, MemberState.ALIVE, MemberState.INDIRECT})

log = logging.getLogger("pydds.cluster")

#: Messages queued on one link after which local writes yield to the link writers.
FLUSH_AT = 1000
#: Seconds between two attempts to reach a lost peer: at first, and at most.
#: Seconds between two ``Reach`` messages of a node at most: the link changes in
#: between go in the next one (a cluster forming, each node's links changing n
#: times, would otherwise send n messages of n names on each of n links: n**3).
REACH_EVERY = 1.0
MIN_BACKOFF = 0.1
MAX_BACKOFF = 1.0
#: Clients' acknowledged writes a gateway tracks at most (the oldest are forgotten).
MAX_RELAYED = 100_000
#: Custom events sent again (``resend``) in one frame at most.
RESENT_PER_FRAME = 256
#: Bytes of a frame at most (but a single larger message): a large answer, such as a
#: whole directory, goes in frames that each take a moment to read.
FRAME_BYTES = 1 << 20
#: Never: a deadline that is no deadline.
NEVER = float("inf")


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """Timing and bounds of a node's links."""

    heartbeat: float = 1.0  # seconds between pings on an idle link
    timeout: float = 5.0  # seconds of silence after which a link closes
    pull_timeout: float = 2.0  # the bounded wait of a pull
    join_timeout: float = 5.0  # the bounded wait of ``Node.join``
    #: Seconds a member may be unreachable before it is removed (it then counts for
    #: acknowledgements no more). Long, so that a partition of a few minutes does not
    #: shrink the majority; ``Node.remove_member`` removes a member that is gone sooner.
    dead_after: float = 600.0
    anti_entropy: float = 30.0  # seconds between state-vector exchanges on a link
    ack_timeout: float = 5.0  # the bounded wait of a write with an ack level
    warmup_rate: float = 1000.0  # pulls per second of the warm-up after a join
    max_pending: int = 100_000  # messages queued for one peer before it is dropped
    max_frame_bytes: int = 32 * 1024 * 1024  # larger frames close the link
    handshake_timeout: float = 5.0  # seconds for a link to prove itself, or it closes
    max_messages_per_s: float = 1_000_000  # read from one link; faster peers are slowed
    max_bytes_per_s: float = 256 * 1024 * 1024  # likewise
    max_pulls: int = 10_000  # pulls under way at once; more fail with Unavailable

    @property
    def frame_bytes(self) -> int:
        """Bytes a frame is cut at (but for a single larger message): under what a
        peer configured alike accepts, and little enough to be read in a moment."""
        return min(FRAME_BYTES, self.max_frame_bytes // 2)


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


@dataclass(eq=False, slots=True)
class PeerLink:
    """One link's protocol state: its session, who opened it, what it carried."""

    session: Session
    dialed: bool  # this node opened it
    limit: RateLimit  # what the peer may send per second
    resync_at: float  # when anti-entropy runs next on it
    traffic: Traffic = field(default_factory=Traffic)
    #: Whether the dialing end knows the peer accepted it (its first data after the
    #: handshake): the join through this link is decided.
    joined: bool = False
    #: Whether the peer said which custom events it has (``EventsSeen``): once a
    #: link, as each asks this node to read its event log again
    said_seen: bool = False

    @property
    def peer(self) -> str | None:
        """The peer's name, once it said it."""
        return self.session.peer.name if self.session.peer is not None else None

    @property
    def is_client(self) -> bool:
        return self.session.peer is not None and self.session.peer.role == "client"


class Output:
    """What the node must do after an input, in order within each kind. (A plain
    class: one is made for most inputs, and literal lists cost less than a
    dataclass's default factories.) What a write makes (links to wake, changes,
    custom events, acknowledgements) is here; the rest, rare, is in ``rare``, made
    only when something needs it (``Peers._rare``), so that an output of a write
    costs four lists to make and four to look at."""

    __slots__ = ("acks", "changes", "customs", "rare", "wake")

    def __init__(self) -> None:
        self.wake: list[PeerLink] = []  # writers with something to send
        self.changes: list[Change] = []  # what messages changed here
        self.customs: list[m.Custom] = []  # custom events to publish
        self.acks: list[int] = []  # ack ids with enough acknowledgements
        self.rare: RareOutput | None = None  # links, members, pulls: see ``RareOutput``

    def __bool__(self) -> bool:
        return bool(self.wake or self.changes or self.customs or self.acks or self.rare)

    # What ``rare`` holds, read as if it were here (empty when there is none).
    @property
    def dial(self) -> list[str]:
        return self.rare.dial if self.rare is not None else []

    @property
    def close(self) -> list[PeerLink]:
        return self.rare.close if self.rare is not None else []

    @property
    def joins(self) -> list[tuple[PeerLink, str | None]]:
        return self.rare.joins if self.rare is not None else []

    @property
    def members(self) -> list[tuple[str, str]]:
        return self.rare.members if self.rare is not None else []

    @property
    def pulls(self) -> list[tuple[ValueId, bool]]:
        return self.rare.pulls if self.rare is not None else []

    @property
    def pull_for(self) -> list[PullFor]:
        return self.rare.pull_for if self.rare is not None else []

    @property
    def holding_due(self) -> list[HoldingDue]:
        return self.rare.holding_due if self.rare is not None else []

    @property
    def linked(self) -> bool:
        return self.rare is not None and self.rare.linked


class RareOutput:
    """The part of an ``Output`` that writes do not make."""

    __slots__ = (
        "close",
        "dial",
        "groups",
        "holding_due",
        "joins",
        "linked",
        "members",
        "pull_for",
        "pulls",
        "resend",
    )

    def __init__(self) -> None:
        self.dial: list[str] = []  # addresses to dial once, now
        self.close: list[PeerLink] = []  # links to cut at once
        #: Joins decided: the link, and why it failed (None: joined).
        self.joins: list[tuple[PeerLink, str | None]] = []
        self.members: list[tuple[str, str]] = []  # (event kind, member)
        self.pulls: list[tuple[ValueId, bool]] = []  # pulls ended
        self.pull_for: list[PullFor] = []  # clients' pulls to make
        self.holding_due: list[HoldingDue] = []  # see ``HoldingDue``
        self.resend: list[ResendCustoms] = []  # custom events a peer missed
        self.groups: list[ConsumersOf | GroupAcked] = []  # what peers say of consumers
        self.linked = False  # a link opened: waiting pulls may ask again; warm-up starts


@dataclass(slots=True)
class _AckWait:
    needed: int  # acknowledgements still needed from peers
    peers: set[str] = field(default_factory=set)  # who acknowledged
    #: Writes under this ack id (a batch: ``changed_many``); a peer counts once it
    #: acknowledged every one of them.
    writes: int = 1
    acked: Counter[str] | None = None  # a batch's acknowledgements so far, by peer


@dataclass(slots=True)
class _Redial:
    next_at: float
    delay: float = MIN_BACKOFF
    name: str | None = None  # the node at the address, once known
    in_flight: bool = False


@dataclass(slots=True)
class _GatewaySearch:
    lost: str  # the gateway lost: tried last
    next_at: float
    delay: float = MIN_BACKOFF
    queue: list[str] = field(default_factory=list)  # this round's addresses yet to try
    in_flight: str | None = None


class Peers:
    """This node's links, members and replication, without IO (see the module)."""

    def __init__(
        self,
        name: str,
        role: str,
        *,
        keyspace: Callable[[str], LocalDatabase],
        databases: Callable[[], Iterable[str]],
        settings: ClusterSettings,
        limits: Limits,
        credentials: Credentials,
        client_id: int,
    ) -> None:
        self.name = name
        self.role = role  # "node" or "client"
        self.settings = settings
        self.limits = limits
        self.credentials = credentials
        self.client_id = client_id
        self.address: str | None = None  # where this node accepts links
        self.replication = Replication(
            name,
            keyspace,
            databases,
            is_client=role == "client",
            max_payload_bytes=limits.max_value_bytes,
            chunk_bytes=settings.frame_bytes // 4,
            limits=limits,
        )
        self.membership = Membership(
            name, None, dead_after=settings.dead_after, dials=role == "node"
        )
        self._keyspace = keyspace
        self._databases = databases
        self.gateways: list[str] = []  # a client's addresses to try besides known nodes
        self.congested = False  # some link has FLUSH_AT messages waiting for its writer
        self.closing = False
        self.links: dict[str, PeerLink] = {}  # open links by peer name
        self.serving: set[PeerLink] = set()  # every link being served, open or opening
        self._redials: dict[str, _Redial] = {}  # by address
        self._reach_sent = -NEVER  # when this node last sent its ``Reach``
        self._reach_due = NEVER  # when it sends the next (NEVER: nothing changed)
        self._search: _GatewaySearch | None = None
        self._ack_ids = itertools.count(1)
        self._acks: dict[int, _AckWait] = {}
        #: relay ack id -> (client, the client's ack id, when): see ``_relay_ack``
        self._relayed: dict[int, tuple[str, int, float]] = {}
        #: Counts of pulls, acknowledgements and errors, by name (see ``pydds.metrics``).
        self.stats: Counter[str] = Counter()
        self.totals = Traffic()  # what every link carried, since the node started
        self.due = NEVER  # the earliest deadline made since the last ``tick``
        self._output: Output | None = None  # made by the first thing to output
        self.pending = False  # whether there is output to take (read once per input)

    @property
    def _out(self) -> Output:
        out = self._output
        if out is None:
            out = self._output = Output()
            self.pending = True
        return out

    @property
    def _rare(self) -> RareOutput:
        out = self._out
        rare = out.rare
        if rare is None:
            rare = out.rare = RareOutput()
        return rare

    def take(self) -> Output:
        """What the node must do now (what comes next goes to a fresh output)."""
        out, self._output = self._output, None
        self.pending = False
        return out if out is not None else Output()

    def _deadline(self, at: float) -> None:
        if at < self.due:
            self.due = at

    # -- links ----------------------------------------------------------------------

    def listening(self, address: str) -> None:
        """This node accepts links at ``address`` (what peers should dial)."""
        self.address = address
        self.membership.address = address

    def new_link(self, *, dialed: bool, now: float) -> PeerLink:
        """A link is made (dialed, or accepted): its session starts with this node's
        ``Hello``. Serve it until ``lost``."""
        hello = m.Hello(
            self.name,
            self.role,
            self.address,
            PROTOCOL,
            new_nonce(),
            self.credentials.credential_id(self.role),
            self.client_id,
        )
        session = Session(
            hello,
            now=now,
            heartbeat=self.settings.heartbeat,
            timeout=self.settings.timeout,
            credentials=self.credentials,
            handshake_timeout=self.settings.handshake_timeout,
        )
        limit = RateLimit(self.settings.max_messages_per_s, self.settings.max_bytes_per_s, now)
        link = PeerLink(session, dialed, limit, now + self.settings.anti_entropy)
        self.serving.add(link)
        if self.closing:
            session.close("node shutting down")
        self._out.wake.append(link)
        self._deadline(min(now + self.settings.heartbeat, now + self.settings.handshake_timeout))
        return link

    def malformed(self, link: PeerLink, reason: str) -> None:
        """A frame from ``link`` did not decode: the link closes."""
        self.stats["error:malformed_frame"] += 1
        link.session.close(reason)
        self._out.wake.append(link)

    def receive(
        self, link: PeerLink, batch: list[m.Message], size: int, now: float
    ) -> list[m.Message]:
        """A frame of ``size`` bytes came on ``link``: the session takes the link's own
        messages (handshake, heartbeats); the rest, returned, go to ``dispatch`` one
        by one (an empty list if the link closed as a duplicate)."""
        session = link.session
        link.traffic.bytes_in += size
        link.traffic.messages_in += len(batch)
        self.totals.bytes_in += size
        self.totals.messages_in += len(batch)
        for_node = session.receive(batch, now)
        if session.take_opened() and not self._opened(link, now):
            self._out.wake.append(link)
            return []
        if for_node and not link.joined and session.state is State.OPEN:
            # The peer's first data after the handshake (a node sends its members at
            # once): it accepted this end's proof. Until then a node without
            # credentials, which accepts any proof, could not tell a peer that
            # refuses it from one that lets it in.
            link.joined = True
            if link.dialed:
                self._rare.joins.append((link, None))
        if session.pending or session.closed:  # answers, or a Close, to send
            self._out.wake.append(link)
        return for_node

    def _opened(self, link: PeerLink, now: float) -> bool:
        """The handshake completed; return False if this link is a duplicate."""
        hello = link.session.peer
        assert hello is not None
        peer = hello.name
        if hello.role == "client":
            return self._client_opened(link, peer)
        if self.role == "client" and any(not s.is_client for s in self.links.values()):
            link.session.close("a client links to one gateway at a time")
            return False
        existing = self.links.get(peer)
        if existing is not None and existing.is_client:
            # A client that took the name before any node had it: the node wins.
            existing.session.close(f"a node named {peer!r} linked: a client needs another name")
            self._out.wake.append(existing)
            del self.links[peer]
            self._notices(self.replication.closed(peer))
            existing = None
        if existing is not None:
            keep_new = (self.name if link.dialed else peer) < (
                self.name if existing.dialed else peer
            )
            loser = existing if keep_new else link
            loser.session.close("duplicate link")
            self._out.wake.append(loser)
            if not keep_new:
                return False
            self.links[peer] = link
            # As on a first link: the peer's members, which also tell a peer that
            # dialed this link that it was accepted (its join waits for that).
            link.session.send([m.Members(self.membership.listing())])
            # What was queued on the closed link is lost with it (a sync step of
            # either end, a write): the new link syncs again, at once.
            self.send(self.replication.relinked(peer))
            return True
        self.links[peer] = link
        before = self.membership.get(peer)
        self.membership.linked(peer, hello.address)
        self._members_changed()
        if before is None or before.state is MemberState.JOINING:
            self._rare.members.append(("joined", peer))
        elif before.state in (MemberState.SUSPECT, MemberState.INDIRECT):
            self._rare.members.append(("reachable", peer))
        if self.role == "node":  # a client joins no one into the cluster
            link.session.send([m.Members(self.membership.listing())])
            self._reach_changed(now)
        self.send(self.replication.opened(peer))
        self._rare.linked = True
        return True

    def _client_opened(self, link: PeerLink, peer: str) -> bool:
        """A client linked: this node is its gateway. Clients are never members, and
        a client never takes a node's name (a node that comes back would find its
        name in use)."""
        if peer == self.name or self.membership.get(peer) is not None:
            link.session.close(f"{peer!r} is a node's name: a client needs a name of its own")
            return False
        if peer in self.links:
            link.session.close(f"{peer!r} is linked already")
            return False
        self.links[peer] = link
        # The nodes it may move to if this gateway goes away.
        link.session.send([m.Members(self.membership.listing())])
        hello = link.session.peer
        assert hello is not None
        self.send(self.replication.opened(peer, "client", link.session.grant, hello.client_id))
        return True

    def lost(self, link: PeerLink, now: float) -> None:
        """``link`` ended (closed by either end, or broken): forget it; a member it
        was the link to is suspect and dialed again."""
        self.serving.discard(link)
        session = link.session
        reason = session.close_reason or "closed"
        if session.refused:
            self.stats["error:auth"] += 1
            hello = session.peer
            log.warning(
                "link from %s refused: %s",
                f"{hello.role} {hello.name!r}" if hello is not None else "an unnamed peer",
                reason,
            )
        peer = link.peer
        if not link.joined and link.dialed:
            linked = self.links.get(peer) if peer is not None else None
            if linked is not None and linked is not link and not linked.session.closed:
                self._rare.joins.append((link, None))  # the duplicate of an open link
            else:
                self._rare.joins.append((link, reason))
            link.joined = True
        if peer is None or self.links.get(peer) is not link:
            return
        del self.links[peer]
        self._notices(self.replication.closed(peer))
        hello = session.peer
        if hello is None or hello.role == "client":
            return  # a client's gateway forgets it: clients are never members
        if self.role == "node" and not self.closing:
            self._reach_changed(now)  # the nodes linked here changed
        if self.role == "node" and self.membership.get(peer) is None:
            return  # it left: dropped already, nothing to redial
        self.membership.unlinked(peer, now)  # suspect, or indirect
        self._time_suspects()
        if self.closing:
            return
        self._rare.members.append(("unreachable", peer))  # its link here is gone
        address = hello.address
        if address is None:
            return
        if self.role == "client":
            self._search = _GatewaySearch(address, now)
            self._deadline(now)
        else:
            self.redial(address, now)

    def close(self) -> None:
        """The node closes: a member says goodbye (``Leave``), a client goes quietly;
        every link closes (peers learn why)."""
        self.closing = True
        if self.role == "node":
            for link in self.links.values():
                if not link.is_client:
                    link.session.send([m.Leave(self.name)])
        for link in self.serving:
            link.session.close("node shutting down")
            self._out.wake.append(link)
        self._redials.clear()
        self._search = None

    # -- dialing ----------------------------------------------------------------------

    def redial(self, address: str, now: float) -> None:
        """Dial ``address`` with backoff until a link to it opens (or the member at it
        is gone)."""
        if address not in self._redials and address != self.address and not self.closing:
            self._redials[address] = _Redial(now)
            self._deadline(now)

    @property
    def redialing(self) -> list[str]:
        """The addresses being dialed again, with backoff."""
        return sorted(self._redials)

    def find_gateway(self, addresses: list[str], now: float) -> None:
        """A client reached none of ``addresses``: keep them as gateways to try, and
        try them (and every node it learns of) with backoff until one answers."""
        self.gateways.extend(addresses)
        self._search = _GatewaySearch(addresses[0], now)
        self._deadline(now)

    def dialed(self, address: str, ok: bool, now: float) -> None:
        """The node's dial of ``address`` (asked by ``Output.dial``) ended: a link to
        it opened (``ok``), or it could not be reached."""
        redial = self._redials.get(address)
        if redial is not None and redial.in_flight:
            if ok:
                del self._redials[address]
            else:
                redial.in_flight = False
                redial.next_at = now + redial.delay
                redial.delay = min(redial.delay * 2, MAX_BACKOFF)
                self._deadline(redial.next_at)
                self.expire_members(now)
        search = self._search
        if search is not None and search.in_flight == address:
            search.in_flight = None
            if ok:
                self._search = None
            elif not search.queue:
                search.next_at = now + search.delay
                search.delay = min(search.delay * 2, MAX_BACKOFF)
                self._deadline(search.next_at)
            else:
                search.next_at = now
                self._deadline(now)

    def _name_at(self, address: str) -> str | None:
        for member in self.membership.members():
            if member.address == address and member.state is not MemberState.SELF:
                return member.name
        return None

    def _due_dials(self, now: float) -> float:
        """Ask for the dials that are due; the next dial deadline."""
        next_at = NEVER
        for address, redial in list(self._redials.items()):
            if redial.in_flight:
                continue
            if redial.next_at > now:
                next_at = min(next_at, redial.next_at)
                continue
            name = self._name_at(address) or redial.name
            if name is not None:
                if name in self.links or self.membership.get(name) is None:
                    del self._redials[address]  # linked, or it has left / was removed
                    continue
                redial.name = name
            redial.in_flight = True
            self._rare.dial.append(address)
        search = self._search
        if search is not None and search.in_flight is None:
            if self.links:
                self._search = None
            elif search.next_at > now:
                next_at = min(next_at, search.next_at)
            else:
                if not search.queue:
                    known = [m.address for m in self.membership.members()[1:] if m.address]
                    lost = search.lost
                    search.queue = sorted({*known, *self.gateways, lost}, key=lambda a: a == lost)
                search.in_flight = search.queue.pop(0)
                self._rare.dial.append(search.in_flight)
        return next_at

    # -- time ------------------------------------------------------------------------

    def tick(self, now: float) -> float:
        """Act on the time: every link's heartbeat, silence and handshake timeouts and
        anti-entropy, the redials due, members unreachable for too long. Returns the
        next deadline (``NEVER``: none)."""
        self.due = NEVER
        deadline = NEVER
        for link in list(self.serving):
            session = link.session
            at = session.tick(now)
            if at is None:  # closed: its writer sends the Close
                self._out.wake.append(link)
                continue
            peer = link.peer
            if now >= link.resync_at and peer is not None and self.links.get(peer) is link:
                self.send(self.replication.resync(peer, coarse=True))
                link.resync_at = now + self.settings.anti_entropy
            if session.pending:
                self._out.wake.append(link)
            deadline = min(deadline, at, link.resync_at)
        self.expire_members(now)
        expiry = self.membership.next_expiry()
        if expiry is not None:
            deadline = min(deadline, expiry)
        if not self.closing:
            deadline = min(deadline, self._due_dials(now))
            if self._reach_due <= now:
                self._send_reach(now)
            deadline = min(deadline, self._reach_due)
        return deadline

    # -- members ---------------------------------------------------------------------

    def members(self) -> list[Member]:
        """Every member, this node first."""
        return self.membership.members()

    @property
    def alone(self) -> bool:
        """Whether this node knows no other member (it is the whole cluster)."""
        return len(self.membership.members()) == 1

    @property
    def in_touch(self) -> bool:
        """Whether this end reaches a majority of the members, itself included (a
        client: whether it links to a node)."""
        if self.role == "client":
            return any(not link.is_client for link in self.links.values())
        reached, members = self.membership.count_in(_REACHED)
        return 2 * reached > members

    def compact(self) -> None:
        """Give back the memory of values no longer held (``Holders.compact``)."""
        self.replication.holders.compact()

    def in_sync(self) -> bool:
        """Whether this node links to members that are, with itself, a majority of
        the members, and has had from each the first sync step of every database it
        had when their link opened: it gets every change made in the cluster, so its
        time last in touch moves on (a node only reachable, or linked again and not
        synced yet, may have missed deletes)."""
        if self.role == "client":
            return False
        awaiting, links, me = self.replication.awaiting, self.links, self.name
        members = self.membership.members()
        count = sum(
            1 for m in members if m.name == me or (m.name in links and not awaiting.get(m.name))
        )
        return 2 * count > len(members)

    def expire_members(self, now: float) -> None:
        """Remove the members unreachable for longer than ``dead_after`` (a ``left``
        event each)."""
        gone = self.membership.expire(now)
        if gone:
            self._members_changed()
        for name in gone:
            self._rare.members.append(("left", name))

    def learn(self, members: tuple[tuple[str, str], ...], now: float) -> None:
        """Members (name, address) listed by a peer, or remembered from this node's
        last run: each new one is a member (``joining``) and, on a node, dialed until
        it links or has been unreachable for ``dead_after``."""
        learned = self.membership.learn(members, now)
        if learned:
            self._members_changed()
            self._time_suspects()
        if self.role == "node":  # a client only remembers gateways to move to
            for _, address in learned:
                self.redial(address, now)

    def _time_suspects(self) -> None:
        """Wake when the next suspect member is due to be removed (after a change of
        the table: a member learned, unlinked, unreached, or removed)."""
        expiry = self.membership.next_expiry()
        if expiry is not None:
            self._deadline(expiry)

    def _reach_changed(self, now: float) -> None:
        """The nodes linked here changed: say so now, or, if this node said it less
        than ``REACH_EVERY`` ago, once that is over (with every change till then)."""
        if now - self._reach_sent >= REACH_EVERY:
            self._send_reach(now)
        elif self._reach_due == NEVER:
            self._reach_due = self._reach_sent + REACH_EVERY
            self._deadline(self._reach_due)

    def _send_reach(self, now: float) -> None:
        """Tell every node linked here which nodes this one has links to now."""
        self._reach_sent, self._reach_due = now, NEVER
        nodes = sorted(peer for peer, link in self.links.items() if not link.is_client)
        reach = m.Reach(tuple(nodes))
        self.send([(peer, reach) for peer in nodes])  # wakes each link's writer

    def _members_changed(self) -> None:
        """The member table changed: replication relays to members it has no link to."""
        self.replication.members = frozenset(m.name for m in self.membership.members()[1:])

    def remove_member(self, name: str, now: float) -> bool:
        """An operator removes node ``name`` (one that crashed, or is gone for good):
        drop it now (a ``left`` event), count it no more for acknowledgements, dial
        it no more, cut a link to it if there is one, and tell the nodes linked here
        (``Leave``, passed on once). Return whether it was a member. A removed node
        that is alive simply joins again when it links to a member."""
        if name == self.name or self.membership.remove(name, now) is None:
            return False
        self._time_suspects()
        self._members_changed()
        self._rare.members.append(("left", name))
        link = self.links.get(name)
        if link is not None:
            link.session.close("removed from the cluster by an operator")
            self._out.wake.append(link)
        if self.role == "node":
            self.send(
                [
                    (peer, m.Leave(name))
                    for peer, other in self.links.items()
                    if peer != name and not other.is_client
                ]
            )
        return True

    def _left(self, sender: str, name: str, now: float) -> None:
        """Node ``name`` leaves the cluster, as ``sender`` says (``name`` itself, or a
        node it told): drop it now (a ``left`` event), count it no more, dial it no
        more, and pass the news on once to the other nodes linked here."""
        if name == self.name:
            return
        if name != sender:
            linked = self.links.get(name)
            if linked is not None and not linked.session.closed:
                return  # linked here: its own Leave, or its link closing, tells
        if self.membership.remove(name, now) is None:
            return  # not a member (dropped already): passed on no further
        self._time_suspects()
        self._members_changed()
        self._rare.members.append(("left", name))
        if self.role == "node":
            self.send(
                [
                    (peer, m.Leave(name))
                    for peer, link in self.links.items()
                    if peer not in (sender, name) and not link.is_client
                ]
            )

    # -- what peers say ---------------------------------------------------------------

    def dispatch(self, link: PeerLink, message: m.Message, now: float) -> bool:
        """Act on one message from ``link``; False when it was a fault (the link
        closes)."""
        hello = link.session.peer
        assert hello is not None
        peer = hello.name
        if isinstance(message, m.Members) and hello.role == "node":
            self.learn(message.members, now)
            return True
        if isinstance(message, m.Reach) and hello.role == "node":
            self.membership.reached(peer, message.linked, now)
            self._time_suspects()
            return True
        if isinstance(message, m.Leave) and hello.role == "node":
            self._left(peer, message.name, now)
            return True
        if isinstance(message, m.EventsSeen):
            if link.said_seen:
                return True  # once a link: what it asks again is read once
            link.said_seen = True
        try:
            sends, notices = self.replication.handle(peer, message)
        except ProtocolError as exc:
            self.stats["error:protocol"] += 1
            log.warning("closing the link to %s: %s", peer, exc)
            link.session.close(str(exc))
            self._out.wake.append(link)
            return False
        except NodeClosed:
            link.session.close("node shutting down")
            self._out.wake.append(link)
            return False
        if sends:
            self.send(sends)
        if notices:
            self._notices(notices, now)
        return True

    def _notices(self, notices: Iterable[Notice], now: float = 0.0) -> None:
        changes = None
        for notice in notices:
            if notice.__class__ is Change:  # what a message changed here (most notices)
                if changes is None:
                    changes = self._out.changes
                changes.append(notice)
            elif isinstance(notice, PullFor):
                self._rare.pull_for.append(notice)
            elif isinstance(notice, HoldingDue):
                self._rare.holding_due.append(notice)
            elif isinstance(notice, PullDone):
                self._rare.pulls.append((notice.value, notice.answered))
            elif isinstance(notice, RelayAck):
                self._relay_ack(notice, now)
            elif isinstance(notice, AckReceived):
                self._ack_received(notice)
            elif isinstance(notice, CustomReceived):
                self._custom_received(notice.message)
            elif isinstance(notice, ResendCustoms):
                self._rare.resend.append(notice)
            elif isinstance(notice, (ConsumersOf, GroupAcked)):
                self._rare.groups.append(notice)

    def _ack_received(self, notice: AckReceived) -> None:
        relayed = self._relayed.get(notice.id)
        if relayed is not None:  # a relayed client write: tell the client who
            self.send([(relayed[0], m.AckFrom(relayed[1], notice.peer))])
            return
        wait = self._acks.get(notice.id)
        if wait is not None and notice.peer not in wait.peers:
            if wait.writes > 1:  # a batch: the peer has applied it once it acked each
                acked = wait.acked = wait.acked or Counter()
                acked[notice.peer] += 1
                if acked[notice.peer] < wait.writes:
                    return
            wait.peers.add(notice.peer)
            if len(wait.peers) >= wait.needed:
                del self._acks[notice.id]
                self._out.acks.append(notice.id)

    def _relay_ack(self, notice: RelayAck, now: float) -> None:
        """Relay a client's write to the cluster under an ack id of this node's; the
        acks that come back go to the client as ``AckFrom`` (for ``2 * ack_timeout``,
        at most ``MAX_RELAYED`` writes at a time: the oldest are forgotten)."""
        relay_id = next(self._ack_ids)
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
            values.check(values.unpack(message.payload), self.limits.max_depth)
        except (InvalidValue, ValueError, TypeError) as exc:
            self.stats["error:custom_payload"] += 1
            log.warning("dropped custom event %r from %s: %s", message.name, message.origin, exc)
            return
        self._out.customs.append(message)

    def holding(self, notice: HoldingDue) -> None:
        """Tell a peer what this node holds, once the directory it was just sent is on
        its way (the node calls this a turn after ``Output.holding_due``)."""
        self.send(self.replication.holding(notice.peer, notice.database))

    def answer_pull(self, notice: PullFor) -> None:
        """Answer a client's pull, once its gateway pulled the value (or failed to)."""
        self.send([self.replication.answer_pull(notice.client, notice.message)])

    # -- what the node asks -------------------------------------------------------------

    def send(self, sends: Iterable[Send]) -> None:
        """Queue messages to peers; a peer too far behind is disconnected."""
        links, max_pending = self.links, self.settings.max_pending
        for peer, message in sends:
            link = links.get(peer)
            if link is None:
                continue
            pending = link.session.queue(message)
            if pending == 1:
                self._out.wake.append(link)  # later messages ride on the same wake-up
            if pending > FLUSH_AT:
                self.congested = True
            if pending > max_pending and not link.session.closed:
                # Its writer is stuck sending (the peer reads nothing): cut the link
                # rather than queue more.
                self.stats["error:slow_peer"] += 1
                link.session.close(f"peer too slow: {pending} messages queued")
                self._out.wake.append(link)
                self._rare.close.append(link)

    def outgoing(self, link: PeerLink, now: float) -> list[m.Message]:
        """What ``link``'s writer sends now, as one frame (counted as it goes)."""
        return link.session.data_to_send(now)

    def sent(self, link: PeerLink, messages: int, size: int) -> None:
        """``link``'s writer sent a frame of ``messages`` in ``size`` bytes."""
        link.traffic.bytes_out += size
        link.traffic.messages_out += messages
        self.totals.bytes_out += size
        self.totals.messages_out += messages

    def changed(self, change: Change, ack: str | int = "local") -> int | None:
        """A change made on this node: ship it.

        Returns:
            With an ack level beyond ``"local"`` that needs other nodes, an ack id
            that ``Output.acks`` names once enough of them applied it (see
            ``forget_ack``); None otherwise.
        """
        needed = 0 if ack == "local" else self.needed_acks(ack)
        if needed <= 0:
            if self.links:
                self.send(self.replication.changed(change))
            return None
        ack_id = next(self._ack_ids)
        self._acks[ack_id] = _AckWait(needed)
        self.send(self.replication.changed(change, ack_id))
        return ack_id

    def changed_many(self, changes: list[Change], ack: str | int) -> int | None:
        """Changes made on this node in one batch: ship them, under one ack id for
        all (a peer counts once it acknowledged every one). See ``changed``."""
        needed = 0 if ack == "local" else self.needed_acks(ack)
        if needed <= 0 or not changes:
            for change in changes:
                self.changed(change)
            return None
        ack_id = next(self._ack_ids)
        self._acks[ack_id] = _AckWait(needed, writes=len(changes))
        changed = self.replication.changed
        for change in changes:
            self.send(changed(change, ack_id))
        return ack_id

    def forget_ack(self, ack_id: int) -> None:
        """Stop counting the acknowledgements of a write (its wait ended)."""
        self._acks.pop(ack_id, None)

    @property
    def acks_waiting(self) -> int:
        """Writes whose acknowledgements are being counted."""
        return len(self._acks)

    def needed_acks(self, ack: str | int) -> int:
        """How many other nodes must acknowledge a write of level ``ack``."""
        nodes = len(self.membership.members())  # this node and every node it knows
        if ack == "local":
            return 0
        if self.role == "client":  # a client is no node: every ack is another's
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

    def pull(self, database: str, key: str) -> tuple[ValueId, bool, bool]:
        """Ask the linked nodes for the value of ``key``: its value id, whether anyone
        was asked (``Output.pulls`` then says how it ended), and whether members this
        node is still linking to (just joined) might hold it when they are linked.

        Raises:
            Unavailable: too many pulls under way.
            KeyNotFound: the key is absent.
        """
        pulling = self.replication.pulls
        if len(pulling) >= self.settings.max_pulls:
            gen = self._keyspace(database).generation(key)
            if (database, key, gen) not in pulling:
                self.stats["pull:refused"] += 1
                raise Unavailable(f"too many pulls under way ({len(pulling)}); try again")
        value_id, sends = self.replication.pull(database, key)
        asked = value_id in pulling
        if asked:
            self.send(sends)
            self.stats["pull:asked"] += 1
        linking = any(m.state is MemberState.JOINING for m in self.membership.members())
        return value_id, asked, linking

    def forget_pull(self, value_id: ValueId) -> None:
        """Stop waiting for the answers to a pull (it timed out)."""
        self.replication.forget_pull(value_id)

    def gone(self, value_id: ValueId) -> None:
        """A value's generation is gone here by itself (its key expired): no peer
        holds it any more (each lapses it by its own clock)."""
        self.replication.holders.drop(value_id)

    def held_elsewhere(self, value_id: ValueId, *, keeper: bool = False) -> bool:
        """Whether a linked node (no client) holds ``value_id``. With ``keeper``:
        one whose name sorts before this node's, so that this copy may be evicted.
        Of the nodes holding a value, the one whose name sorts first never evicts
        it but to its disk, so every value keeps a copy however many evict at once
        (each seeing the others as holders). A client's gateway is always a keeper:
        a client's copy is never counted as one."""
        holders = self.replication.holders[value_id]
        if not holders:
            return False
        clients = self.replication.clients
        name = self.name
        if self.role == "client":
            keeper = False
        return any(h not in clients and (not keeper or h < name) for h in holders)

    def release(self, database: str, key: str, gen: int) -> None:
        """This node's copy of a value went stale: peers stop pushing it."""
        self.send(self.replication.release(database, key, gen))

    def emit(self, name: str, packed: bytes) -> str:
        """A custom event emitted on this node: to every peer, once; its id."""
        message, sends = self.replication.custom(name, packed, self.name)
        self.send(sends)
        return message.id

    def consumers(self, table: tuple[tuple[str, str, str, float], ...]) -> None:
        """This node's consumers of custom events changed: every node peer is told."""
        self.send(self.replication.consumers(table))

    def group_ack(self, group: str, ident: str) -> None:
        """``group`` handled the custom event ``ident`` here: every node peer is told."""
        self.send(self.replication.group_ack(group, ident))

    def resend(self, peer: str, messages: Iterator[m.Message]) -> None:
        """Send ``peer`` what it missed, made as its link sends it (``Streamed``)."""
        self.send([(peer, Streamed(messages, per_frame=RESENT_PER_FRAME))])

    def traffic(self) -> dict[str, Traffic]:
        """What each open link carried since it opened, by peer name."""
        return {peer: link.traffic for peer, link in self.links.items()}

    def warm_candidates(self) -> list[ValueId]:
        """The values peers hold fresh that this node lacks, in databases with an
        expiry (without one, values stay lazy): what warm-up pulls."""
        out = []
        databases = set(self._databases())
        for (database, key, gen), holders in self.replication.holders.items():
            if not holders or database not in databases:
                continue
            ks = self._keyspace(database)
            if ks.settings.stale_after is None:
                continue
            if ks.generation(key) == gen and not ks.holds(key):
                out.append((database, key, gen))
        return out
