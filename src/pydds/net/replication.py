"""The replication protocol between this node and its peers (sans-IO).

Theory of operation
-------------------
Directories are eager, values lazy:

* When a link opens, each end sends ``DirectoryStep1`` (its state vector) for every
  database it has. The answer is ``DirectoryStep2`` (what it lacks), then (after the
  node has sent that: the ``HoldingDue`` notice) ``Holding``
  (key, generation, state vector) for the values the answering end holds fresh: the
  asker registers it as a holder of each, and sends a ``ValueDiff`` for each value
  where it has something the holder lacks. A ``DirectoryStep1``
  is answered with ``DirectoryStep2`` (the missing part); one for a database this
  node lacks makes it, and asks for it in turn. A ``ValuePull`` is answered with
  ``ValueDiff`` or ``ValueMissing`` and registers the puller as a holder.
* Every local change goes to every peer as a ``Write``: with the value delta to the
  peers that hold the key, without it to the others, who learn that the key changed
  (and apply the directory delta when the entry changed).
* A peer that sends a ``Write`` of a created or changed value holds it; so does one
  that answers a pull with a diff. ``holders`` tracks which peer holds which
  generation of which key, so that a change reaches exactly the holders.
* Reading a value not held here pulls it (``pull``): every peer is asked; the first
  diff makes this node a holder; all peers answering ``ValueMissing`` (or leaving)
  make the pull fail.
* A node whose copy went stale sends ``Release``: its peers stop pushing to it. Its
  next read pulls again (a ``ValuePull``), which makes it a holder once more.
* A node that a client links to is its gateway: it answers the client's pulls (pulling
  first if it must), relays the client's writes and events to the cluster and the
  cluster's to the client. A client's messages may only be its own (their origin is
  the client): a client relays nothing and joins no one (``Members`` from a client
  closes the link).
* Custom events carry an id; each is delivered once (a bounded set of seen ids). An
  id is its emitter's name, an incarnation (when the node object was made, and
  random digits: a restarted node's ids never repeat its earlier ones, and sort
  after them) and a counter. A
  gateway gives a client's event an id of its own (a client names no event: it
  could otherwise send ids of another's and silence that one's next events). A
  payload over ``max_payload_bytes`` closes the link.
* Anti-entropy (``resync``) repeats the link-open exchange periodically: deltas that
  were lost, or applied before the ones they depend on, are repaired by the diffs
  that answer it. After the first ``Holding`` on a link, held values are compared
  by digests (``net/digests.py``): ``HoldingDigest``, answered by ``HoldingAsk``
  for the buckets that differ, answered by ``HoldingBuckets``, which lists them; a
  value either end lacks is then sent (``ValueDiff``) or pulled (``ValuePull``).

``handle`` returns the messages to send (``(peer, message)`` pairs) and notices for
the node: the changes it applied (each an event to publish, or a directory repair to
ship), pulls answered or failed, custom events to publish. Data goes through the
node's databases (``LocalDatabase``), which stay synchronous and return what they
changed: nothing leaves while a message is being handled but what ``handle``
returns.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, TypeGuard

from ..changes import Change
from ..config import Limits, check_key
from ..crdt.directory import CHUNK_BYTES, check_digests, decode_update, encode_update
from ..crdt.sync import decode_state_vector, update_state_vector, writes_only_as
from ..crdt.ydoc import EMPTY_STATE_VECTOR
from ..errors import InvalidName, InvalidUpdate, InvalidValue, KeyNotFound, ProtocolError
from . import digests
from . import messages as m
from .auth import Grant
from .codec import MAX_BUCKET_VALUES
from .holders import Holders, ValueId
from .local import LocalDatabase
from .session import Streamed

__all__ = [
    "AckReceived",
    "ConsumersOf",
    "CustomReceived",
    "GroupAcked",
    "HoldingDue",
    "Notice",
    "PullDone",
    "PullFor",
    "RelayAck",
    "Replication",
    "ResendCustoms",
    "Send",
]

#: A message (or a run of them made as they are sent) for a peer.
Send = tuple[str, m.Message | Streamed]
HOLDING_CHUNK = 1000  # held values announced per Holding message
MAX_LAST_SEEN = 4096  # nodes whose last custom event id is kept (``EventsSeen``)
MAX_AHEAD = 10_000  # ids of a node kept past a gap in its events, at most


@dataclass(frozen=True, slots=True)
class PullDone:
    """A pull ended: answered (this node now holds the value) or not."""

    value: ValueId
    answered: bool


def _held_bytes(key: str, state_vector: bytes) -> int:
    """What a held value takes in a ``Holding`` or ``HoldingBuckets``, about."""
    return len(key.encode()) + len(state_vector) + 16


def _incarnation_order(incarnation: str) -> tuple[int, str]:
    """Incarnations sort by when their process began (``Replication.incarnation``);
    the random ones of earlier releases, shorter, before them all."""
    return len(incarnation), incarnation


def _later(a: str, b: str) -> bool:
    """Whether incarnation ``a`` began after ``b``."""
    return _incarnation_order(a) > _incarnation_order(b)


@dataclass(slots=True)
class _Cursor:
    """Up to where a node has every custom event of another: its incarnation and
    counter, and the ids it has past a gap (``MAX_AHEAD`` at most)."""

    incarnation: str
    counter: int
    ahead: set[tuple[str, int]] = field(default_factory=set)

    def absorb(self) -> None:
        """Move on over the ids past the counter that came already."""
        ahead = self.ahead
        while ahead and (self.incarnation, self.counter + 1) in ahead:
            self.counter += 1
            ahead.discard((self.incarnation, self.counter))


@dataclass(frozen=True, slots=True)
class AckReceived:
    """A peer acknowledged the write with this request id."""

    id: int
    peer: str


@dataclass(frozen=True, slots=True)
class CustomReceived:
    """A custom event from a peer, seen for the first time."""

    message: m.Custom


@dataclass(frozen=True, slots=True)
class ResendCustoms:
    """A peer's link opened and it said which custom events it has (``EventsSeen``):
    send it again, from this node's event log, those of the nodes in ``last`` after
    the id named for each (``EventLog.customs_after``)."""

    peer: str
    last: dict[str, str]


@dataclass(frozen=True, slots=True)
class ConsumersOf:
    """Node ``peer``'s consumers of custom events now (none: its link closed)."""

    peer: str
    consumers: tuple[tuple[str, str, str, float], ...]


@dataclass(frozen=True, slots=True)
class GroupAcked:
    """A peer says ``group`` has handled the custom event ``id``."""

    group: str
    id: str


@dataclass(frozen=True, slots=True)
class PullFor:
    """A peer pulled a value this node must take first (a client's gateway pulls
    it from the cluster; a node reloads a copy it evicted to disk): take it, then
    answer."""

    client: str  # the peer that asked (a client, or a node)
    message: m.ValuePull


@dataclass(frozen=True, slots=True)
class HoldingDue:
    """A peer has been sent the directory of ``database``: send it ``holding(peer,
    database)`` next. It is a notice, not a message, so that the directory goes out
    first (a joining node places 100,000 keys while this node lists what it holds)."""

    peer: str
    database: str


@dataclass(frozen=True, slots=True)
class RelayAck:
    """A client's write asked for acknowledgements: its gateway (this node) applied
    it and acknowledged; relay it to ``to`` asking each to acknowledge, and tell the
    client who did (``AckFrom``)."""

    client: str
    id: int  # the client's request id
    change: Change
    to: frozenset[str]


#: A ``Change`` is what applying a message changed here: an event (it has a kind), or
#: a directory entry this node wrote again (origin this node, no kind) to ship.
Notice = (
    Change
    | PullDone
    | CustomReceived
    | AckReceived
    | PullFor
    | HoldingDue
    | RelayAck
    | ResendCustoms
    | ConsumersOf
    | GroupAcked
)
#: What handling a message makes: messages to send, notices for the node.
Handled = tuple[Sequence[Send], Sequence[Notice]]
_NOTHING: Handled = ((), ())


def _validate(msg: m.Message) -> None:
    """Decode every CRDT payload of a message (updates whole, state vectors) before
    anything is applied: one that does not decode refuses the whole message, so a
    write whose directory part is good and value part is not changes nothing.

    Raises:
        InvalidUpdate: a payload does not decode.
    """
    if isinstance(msg, m.Write):
        if msg.directory is not None:
            decode_update(msg.directory)
        if msg.value is not None:
            update_state_vector(msg.value)
    elif isinstance(msg, m.DirectoryStep2):
        decode_update(msg.update)
    elif isinstance(msg, m.ValueDiff):
        update_state_vector(msg.update)
    elif isinstance(msg, m.Relay):
        decode_update(msg.directory)
    elif isinstance(msg, m.ValuePull):
        decode_state_vector(msg.state_vector)
    elif isinstance(msg, m.DirectoryStep1):
        check_digests(msg.buckets, msg.digests)
    elif isinstance(msg, (m.Holding, m.HoldingBuckets)):
        for _, _, state_vector in msg.values:
            decode_state_vector(state_vector)


def _decoded_where_used(
    msg: m.Message,
) -> TypeGuard[m.Write | m.DirectoryStep2 | m.Holding]:
    """Whether the handler of ``msg`` decodes its payloads itself, each whole before it
    changes anything, so that ``_validate`` first would decode them twice (for a node's
    message to a database this node has): a write of a value only (the keyspace
    applies it only where that decodes it whole first, and checks it elsewhere), a
    directory's sync step 2 (a joining node's whole directory), the values a peer
    holds (the state vectors compared are decoded first; the others are not used)."""
    return (isinstance(msg, m.Write) and msg.directory is None) or isinstance(
        msg, (m.DirectoryStep2, m.Holding)
    )


#: A bucket digest that none matches (a hash of all ones is as likely as any other:
#: one chance in 2**64 per bucket that the bucket is taken as equal and not sent).
_NO_MATCH = b"\xff" * 8


def _ahead(theirs: bytes, ours: bytes) -> bool:
    """Whether the state vector ``theirs`` holds operations ``ours`` lacks.

    Raises:
        InvalidUpdate: a state vector does not decode.
    """
    if theirs == ours:
        return False  # the common case of anti-entropy: nothing new either way
    mine = decode_state_vector(ours)
    return any(clock > mine.get(client, 0) for client, clock in decode_state_vector(theirs).items())


def _wanted(buckets: int, wanted: tuple[int, ...]) -> frozenset[int]:
    """The buckets asked for, each checked against their number.

    Raises:
        ProtocolError: a bucket is out of range.
    """
    if any(at >= buckets for at in wanted):
        raise ProtocolError(f"a bucket is out of the range of {buckets}")
    return frozenset(wanted)


#: Messages a client never sends: it joins no one into the cluster and relays nothing.
_FROM_NODES_ONLY = frozenset({m.Members, m.Leave, m.Relay, m.Reach, m.Consumers, m.GroupAck})


class Replication:
    """What this node tells its peers, and what it does with what they tell it."""

    def __init__(
        self,
        name: str,
        keyspace: Callable[[str], LocalDatabase],
        databases: Callable[[], Iterable[str]],
        *,
        is_client: bool = False,
        seen_limit: int = 100_000,
        max_payload_bytes: int = 1 << 60,
        incarnation: str | None = None,
        digest_from: int = digests.MIN_DIGESTED,
        chunk_bytes: int = CHUNK_BYTES,
        limits: Limits | None = None,
    ) -> None:
        self.name = name  # this node's name
        #: The node's limits: what a client's write to a database not made yet is
        #: checked against before it is made
        self.limits = limits or Limits()
        self.chunk_bytes = chunk_bytes  # a directory's entries go in updates of about this
        #: Held values from which periodic anti-entropy exchanges digests of them
        self.digest_from = digest_from
        self.peers: set[str] = set()  # peers with an open link
        self.clients: set[str] = set()  # peers that are clients: this node is their gateway
        self.holders = Holders()  # which peers hold which values
        self.pulls: dict[ValueId, set[str]] = {}  # pulls under way: peers yet to answer
        self.seen_limit = seen_limit  # custom event ids remembered (oldest forgotten)
        self.is_client = is_client  # this end is a client: its only peer is its gateway
        self.max_payload_bytes = max_payload_bytes  # a custom event's, packed, at most
        #: The middle of this node's custom event ids (``name:incarnation:counter``):
        #: when this process began (Unix milliseconds, 11 hex digits) and 8 random
        #: ones, so that a later process's sort after an earlier one's.
        self.incarnation = incarnation or f"{int(time.time() * 1000):011x}{secrets.token_hex(4)}"
        self._event_ids = itertools.count(1)
        self._make_keyspace = keyspace
        self._databases = databases
        self._known: dict[str, LocalDatabase] = {}  # databases seen here (they live on)
        self._seen: OrderedDict[str, None] = OrderedDict()
        #: node -> up to where this node has every custom event it gave an id to (its
        #: own among them): what ``EventsSeen`` says, for at most ``MAX_LAST_SEEN``
        self._cursors: dict[str, _Cursor] = {self.name: _Cursor(self.incarnation, 0)}
        #: This node's consumers of custom events (``consumers``), told to node peers
        self.consumer_table: tuple[tuple[str, str, str, float], ...] = ()
        self.grants: dict[str, Grant] = {}  # what each client peer may do (its token)
        self.client_ids: dict[str, int] = {}  # each client peer's Yjs client id
        #: (peer, database): sent a whole ``Holding`` on this link; digests from then on
        self._announced: set[tuple[str, str]] = set()
        #: node peer -> the databases this node had when their link opened whose first
        #: sync step from the peer has not come yet (``Peers.in_sync``; a database
        #: made since has had every change cross the link)
        self.awaiting: dict[str, set[str]] = {}
        #: The other nodes of the cluster this node knows (linked or not), kept by the
        #: node from its member table: a change's directory delta is relayed to those
        #: this node has no link to.
        self.members: frozenset[str] = frozenset()

    def _keyspace(self, database: str) -> LocalDatabase:
        """The keyspace of ``database`` (made on first use), remembered."""
        keyspace = self._known.get(database)
        if keyspace is None:
            keyspace = self._known[database] = self._make_keyspace(database)
        return keyspace

    # -- links -----------------------------------------------------------------------

    def opened(
        self, peer: str, role: str = "node", grant: Grant | None = None, client_id: int = 0
    ) -> list[Send]:
        """A link to ``peer`` opened: start syncing directories and held values. A
        client peer may do what its ``grant`` allows, and write only under its own
        Yjs ``client_id``."""
        self.peers.add(peer)
        if role == "client":
            self.clients.add(peer)
            self.grants[peer] = grant or Grant("client")
            self.client_ids[peer] = client_id
        else:  # a node answers each step 1 with its own (``awaiting``)
            self.awaiting[peer] = set(self._readable(peer))
        return [*self._events_seen(peer), *self._consumers_to(peer), *self.resync(peer)]

    def relinked(self, peer: str) -> list[Send]:
        """A new link to ``peer`` replaced the open one (what was queued on that is
        lost): sync again, as on a first link."""
        if peer not in self.clients:
            self.awaiting[peer] = set(self._readable(peer))
        return [*self._events_seen(peer), *self._consumers_to(peer), *self.resync(peer)]

    def _consumers_to(self, peer: str) -> list[Send]:
        """This node's consumers, for a node peer as a link opens: said even when
        there are none, as a peer may keep the table of this node's last process."""
        if peer in self.clients or self.is_client:
            return []
        return [(peer, m.Consumers(self.consumer_table))]

    def _events_seen(self, peer: str) -> list[Send]:
        """``EventsSeen`` for a peer this node exchanges custom events with."""
        if not self._may(peer, "read") and not self._may(peer, "emit"):
            return []
        return [(peer, m.EventsSeen(tuple(self.last_seen().items())))]

    def last_seen(self) -> dict[str, str]:
        """Node -> the id up to which this node has every custom event it gave (this
        node's own first): what ``EventsSeen`` says."""
        return {node: f"{node}:{c.incarnation}:{c.counter}" for node, c in self._cursors.items()}

    def _may(self, peer: str, right: str, database: str | None = None) -> bool:
        """Whether ``peer`` (a node: always) may ``right`` on ``database``."""
        grant = self.grants.get(peer)
        return grant is None or grant.allows(right, database)

    def _check(self, peer: str, right: str, database: str) -> None:
        if not self._may(peer, right, database):
            raise ProtocolError(f"client {peer!r} has no {right} right on {database!r}")

    def _own(self, peer: str, update: bytes | None) -> bool:
        """Whether a client's update writes under its own client id only (another
        writer's id, even at a future clock, would silence that writer forever)."""
        if update is None:
            return True
        return writes_only_as(update, self.client_ids.get(peer, 0))

    def resync(self, peer: str, *, coarse: bool = False) -> list[Send]:
        """Anti-entropy with ``peer``: a sync step 1 for every directory (``coarse``:
        one digest of the whole of each, as every period sends; the peer asks for the
        buckets when it differs); the answers repair whatever was lost or applied out
        of order."""
        return [(peer, self._step1(self._keyspace(name), coarse)) for name in self._readable(peer)]

    def _readable(self, peer: str) -> list[str]:
        """The databases here that ``peer`` may read."""
        return [name for name in self._databases() if self._may(peer, "read", name)]

    @staticmethod
    def _step1(ks: LocalDatabase, coarse: bool = False) -> m.DirectoryStep1:
        directory = ks.directory
        buckets = 1 if coarse else directory.bucket_count()
        return m.DirectoryStep1(ks.name, buckets, directory.digests(buckets), ks.pruned)

    def holding(self, peer: str, database: str) -> list[Send]:
        """``Holding`` messages for every fresh value held here in ``database`` (what
        a ``HoldingDue`` notice asks for; nothing if the link closed meanwhile)."""
        if peer not in self.peers or not self._may(peer, "read", database):
            return []
        ks = self._keyspace(database)
        if ks.fresh_from is not None:
            return []  # its keys may be ones the cluster deleted: reconciled first
        held = list(ks.held())
        if (peer, database) in self._announced and len(held) >= self.digest_from:
            buckets = digests.bucket_count(len(held))
            digest = self._digests(peer, database, buckets)
            return [(peer, m.HoldingDigest(database, buckets, digest))]
        self._announced.add((peer, database))
        return self._holding(peer, database, held)

    def _holding(self, peer: str, database: str, held: list[tuple[str, int]]) -> list[Send]:
        """``Holding`` messages for ``held``, made as they are sent (a value gone or
        written again meanwhile is left out: its change reaches the peer)."""
        ks = self._keyspace(database)

        def messages() -> Iterator[m.Message]:
            budget = self.chunk_bytes  # a message's bytes, about: frames a peer takes
            for start in range(0, len(held), HOLDING_CHUNK):
                values = ks.held_state_vectors(held[start : start + HOLDING_CHUNK])
                part: list[tuple[str, int, bytes]] = []
                size = 0
                for value in values:
                    value_size = _held_bytes(value[0], value[2])
                    if part and size + value_size > budget:  # long keys or vectors: cut
                        yield m.Holding(database, tuple(part))
                        part, size = [], 0
                    part.append(value)
                    size += value_size
                if part:
                    yield m.Holding(database, tuple(part))

        return [(peer, Streamed(messages()))]

    def _digests(self, peer: str, database: str, buckets: int) -> bytes:
        """The digests of the values held here that ``peer`` holds too (as far as
        this node knows)."""
        peers_of = self.holders.__getitem__
        both = (
            (key, hashed)
            for key, gen, hashed in self._keyspace(database).held_hashes()
            if peer in peers_of((database, key, gen))
        )
        return digests.digests(both, buckets)

    def closed(self, peer: str) -> list[Notice]:
        """The link to ``peer`` closed: it holds nothing for us now, answers nothing."""
        self.peers.discard(peer)
        self.grants.pop(peer, None)
        self.client_ids.pop(peer, None)
        self.clients.discard(peer)
        self.holders.drop_peer(peer)
        self._announced = {done for done in self._announced if done[0] != peer}
        self.awaiting.pop(peer, None)
        for ks in self._known.values():
            if ks.fresh_from == peer:  # asked again of the next node linked
                ks.fresh_from, ks.fresh_seen = None, set()
        notices: list[Notice] = []
        for value, waiting in list(self.pulls.items()):
            waiting.discard(peer)
            if not waiting:
                del self.pulls[value]
                notices.append(PullDone(value, answered=False))
        notices.append(ConsumersOf(peer, ()))  # what it consumed (if any) goes to others
        return notices

    # -- this node's changes -----------------------------------------------------------

    def changed(
        self, change: Change, ack: int = 0, *, to: Iterable[str] | None = None
    ) -> list[Send]:
        """A change: a ``Write`` to every peer (or those in ``to``), with the value
        for holders. A client sends its gateway the value always: a gateway holds
        what its clients write.

        With ``ack`` (a request id), every node among them is asked to acknowledge,
        and nodes that do not hold the value get all of it and become holders, so
        that the acknowledged write survives the loss of the others. Clients are
        never asked: they do not count for acknowledgements.
        """
        database, key, gen, directory, delta, origin, event_kind = change
        value_id = (database, key, gen)
        holders = self.holders[value_id]
        kind: str = "" if event_kind is None else event_kind
        if kind == "changed" and delta is None:
            kind = ""  # a TTL change: the directory's alone (no holder has news to pull)
        whole: bytes | None = None
        if ack and delta is not None:
            whole = self._keyspace(database).value_diff(key, gen, EMPTY_STATE_VECTOR)
        grants = self.grants
        clients = self.clients
        out: list[Send] = []
        for peer in self.peers if to is None else to:
            if grants and peer in grants and not grants[peer].allows("read", database):
                continue  # a client whose token does not reach this database
            value = delta if peer in holders or self.is_client else None
            if value is not None and self.is_client and peer not in holders:
                self.holders.add(value_id, peer)  # the gateway holds what its client writes
            asked = 0 if clients and peer in clients else ack
            if value is None and whole is not None and asked:
                value = whole  # all of it: the node holds it from now on
                self.holders.add(value_id, peer)
            if directory is None and value is None and kind != "changed" and not asked:
                continue
            out.append((peer, m.Write(database, key, gen, kind, directory, value, origin, asked)))
        if event_kind == "deleted" or event_kind == "expired":
            self.holders.drop(value_id)  # that generation is gone (expired: everywhere)
        if directory is not None and not self.is_client:
            out.extend(self._relays(database, key, gen, directory, origin, out))
        return out

    def _relays(
        self,
        database: str,
        key: str,
        gen: int,
        directory: bytes,
        origin: str,
        writes: list[Send],
    ) -> list[Send]:
        """``Relay`` of a change's directory delta to the members this node has no
        link to, asked of every node the change went to (any of them may reach them)."""
        unlinked = self.members - self.peers
        if not unlinked:
            return []
        to = tuple(sorted(unlinked))
        relay = m.Relay(to, database, key, gen, directory, origin)
        clients = self.clients
        return [(peer, relay) for peer, _ in writes if peer not in clients]

    def pull(self, database: str, key: str) -> tuple[ValueId, list[Send]]:
        """Ask every peer for the value of ``key`` (not held here).

        Raises:
            KeyNotFound: the key is absent.
        """
        ks = self._keyspace(database)
        gen = ks.generation(key)
        if gen is None:
            raise KeyNotFound(f"key {key!r} is not in database {database!r}")
        value_id = (database, key, gen)
        if not self.peers:
            self.pulls.pop(value_id, None)
            return value_id, []
        # Every pull asks every peer again: an earlier request may have been lost.
        asked = self.peers - self.clients  # a client's copy is no source: nodes answer
        if not asked:
            self.pulls.pop(value_id, None)
            return value_id, []
        self.pulls[value_id] = set(asked)
        message = m.ValuePull(database, key, gen, ks.value_state_vector(key))
        return value_id, [(peer, message) for peer in asked]

    def release(self, database: str, key: str, gen: int) -> list[Send]:
        """This node's copy went stale: every peer stops pushing it."""
        message = m.Release(database, key, gen)
        return [(peer, message) for peer in self.peers if self._may(peer, "read", database)]

    def answer_pull(self, peer: str, msg: m.ValuePull) -> Send:
        """The answer to a pull: what the puller lacks, or that it is not held here."""
        ks = self._keyspace(msg.database)
        diff = ks.value_diff(msg.key, msg.gen, msg.state_vector)
        if diff is None:
            return (peer, m.ValueMissing(msg.database, msg.key, msg.gen))
        return (peer, m.ValueDiff(msg.database, msg.key, msg.gen, diff))

    def forget_pull(self, value_id: ValueId) -> None:
        """Stop waiting for the answers to a pull (it timed out)."""
        self.pulls.pop(value_id, None)

    def custom(self, name: str, payload: bytes, origin: str) -> tuple[m.Custom, list[Send]]:
        """A custom event emitted here, under a new id: it, and it to every peer."""
        message = m.Custom(self._event_id(), name, payload, origin)
        self._remember(message.id)
        return message, [(peer, message) for peer in self.peers if self._may(peer, "read")]

    def _event_id(self) -> str:
        return f"{self.name}:{self.incarnation}:{next(self._event_ids)}"

    def _remember(self, event_id: str) -> bool:
        """Record a custom event id; False if it was seen already."""
        if event_id in self._seen:
            return False
        self._seen[event_id] = None
        if len(self._seen) > self.seen_limit:
            self._seen.popitem(last=False)
        self._advance(*m.event_id_parts(event_id))
        return True

    def _advance(self, node: str, incarnation: str, counter: int) -> None:
        """Move ``node``'s cursor on for an id of its that came: only past ids that
        all came, so that what was missed is asked for again even if later ones came
        first (a resend and new events share a link)."""
        if counter < 0:
            return  # no id of pydds's: nowhere to resume from
        cursor = self._cursors.get(node)
        if cursor is None:
            self._new_cursor(node, incarnation, counter)
            return
        if _later(cursor.incarnation, incarnation) or (
            incarnation == cursor.incarnation and counter <= cursor.counter
        ):
            return  # had, or of a process before the one it is at (sent again late)
        if counter == (cursor.counter + 1 if incarnation == cursor.incarnation else 1):
            if incarnation != cursor.incarnation:  # it restarted: its first event
                cursor.incarnation = incarnation
                cursor.ahead = {(i, n) for i, n in cursor.ahead if i == incarnation}
            cursor.counter = counter
            cursor.absorb()
            return
        cursor.ahead.add((incarnation, counter))
        if len(cursor.ahead) > MAX_AHEAD:  # gaps that nothing fills: go on past half
            ahead = cursor.ahead
            newest = max((i for i, _ in ahead), key=_incarnation_order)
            if _later(newest, cursor.incarnation):  # its restart's first event never came
                cursor.incarnation = newest
                cursor.counter = min(n for i, n in ahead if i == newest) - 1
            mine = sorted(n for i, n in ahead if i == cursor.incarnation)
            if mine:
                cursor.counter = max(cursor.counter, mine[len(mine) // 2])
            cut, at = cursor.counter, cursor.incarnation
            cursor.ahead = {(i, n) for i, n in ahead if i == at and n > cut}
            cursor.absorb()

    def _new_cursor(self, node: str, incarnation: str, counter: int) -> None:
        cursors = self._cursors
        if len(cursors) >= MAX_LAST_SEEN:  # the oldest goes, never this node's own
            del cursors[next(n for n in cursors if n != self.name)]
        cursors[node] = _Cursor(incarnation, counter)

    def seen_again(self, ids: Iterable[str]) -> None:
        """Custom event ids this node had before it restarted (its event log's, oldest
        first): seen, so not delivered twice, and where to resume from (its own
        cursor stays where this process began)."""
        seen = self._seen
        for event_id in ids:
            if m.event_id_parts(event_id)[0] == self.name:
                seen[event_id] = None
            else:
                self._remember(event_id)
        while len(seen) > self.seen_limit:
            seen.popitem(last=False)

    # -- what peers say -------------------------------------------------------------------

    def _client_may(self, peer: str, msg: m.Message) -> None:
        """What a client may send: its own writes, within its token's scope.

        Raises:
            ProtocolError: anything else (the link closes).
        """
        if msg.__class__ in _FROM_NODES_ONLY:
            raise ProtocolError(f"a client cannot send {type(msg).__name__}")
        if isinstance(msg, m.Write):
            if msg.origin != peer:
                raise ProtocolError("a client relays nothing: a write's origin must be itself")
            self._check(peer, "write", msg.database)
            if not self._own(peer, msg.value):
                raise ProtocolError("a client may write under its own client id only")
            # A database is made only by a write that is taken: checked, unmade, as
            # one with no keys.
            ks = self._existing(msg.database)
            keys = len(ks) if ks is not None else 0
            max_keys = ks.limits.max_keys if ks is not None else self.limits.max_keys
            if (ks is None or msg.key not in ks) and keys >= max_keys:
                raise ProtocolError(f"database {msg.database!r} is full ({keys} keys)")
            if msg.directory is not None:
                self._check_entries(ks, msg.directory, msg.key)
            elif msg.value is not None:
                # A client learns of keys from its gateway, or creates them with their
                # entry: a value of a generation the gateway lacks would only wait here.
                entry = ks.directory.get(msg.key) if ks is not None else None
                if entry is None or entry.gen < msg.gen:
                    raise ProtocolError(
                        f"a write of a value of {msg.key!r} (generation {msg.gen}) this "
                        "node has no entry for"
                    )
        elif isinstance(msg, m.DirectoryStep2):
            # What the gateway lacks of the client's directory: its own offline
            # writes, which need the write right and the client's own id, and add
            # only keys a write could add. Even an empty one is for a database the
            # client may read (it answers the gateway's step 1): one out of its scope
            # would make that database here.
            self._check(peer, "read", msg.database)
            if decode_update(msg.update):
                self._check(peer, "write", msg.database)
                self._check_entries(self._existing(msg.database), msg.update, None)
        elif isinstance(msg, m.ValueDiff):
            self._check(peer, "write", msg.database)
            if not self._own(peer, msg.update):
                raise ProtocolError("a client may write under its own client id only")
        elif isinstance(msg, m.Custom):
            if not self._may(peer, "emit"):
                raise ProtocolError(f"client {peer!r} has no emit right")
        elif isinstance(
            msg,
            (
                m.DirectoryStep1,
                m.ValuePull,
                m.Holding,
                m.HoldingDigest,
                m.HoldingAsk,
                m.HoldingBuckets,
                m.Release,
            ),
        ):
            self._check(peer, "read", msg.database)

    def _existing(self, database: str) -> LocalDatabase | None:
        """The keyspace of ``database`` if the node has it (None: it would be made)."""
        ks = self._known.get(database)
        if ks is None and database in self._databases():
            ks = self._keyspace(database)
        return ks

    def _check_entries(self, ks: LocalDatabase | None, update: bytes, key: str | None) -> None:
        """Refuse a client's directory update unless it writes well-formed entries of
        valid keys (only ``key``, for a write's), within the database's ``max_keys``:
        the checks a write through ``Database`` makes, before anything is applied.

        Raises:
            ProtocolError: it does not.
        """
        try:
            entries = decode_update(update)
        except InvalidUpdate as exc:
            raise ProtocolError(f"directory update: {exc}") from None
        limits = ks.limits if ks is not None else self.limits
        new: set[str] = set()
        for name in entries:
            if key is not None and name != key:
                raise ProtocolError(f"a write of {key!r} writes the entry of another key")
            check_key(name, limits)
            if ks is None or ks.directory.get(name) is None:
                new.add(name)
        if new and (len(ks) if ks is not None else 0) + len(new) > limits.max_keys:
            raise ProtocolError(f"directory update: more than {limits.max_keys} keys")

    def handle(self, peer: str, message: m.Message) -> Handled:
        """Handle one message from ``peer``: the messages to send and the notices for
        the node that it makes (empty sequences, often).

        Raises:
            ProtocolError: the message carries data that does not apply (the link
                closes with this reason; nothing else changed).
        """
        from_client = peer in self.clients
        try:
            if from_client or not (
                _decoded_where_used(message) and message.database in self._known
            ):
                _validate(message)  # CRDT payloads decode before anything is touched
            if from_client:
                self._client_may(peer, message)
            return self._handlers[message.__class__](self, peer, message, from_client)
        except (InvalidUpdate, InvalidName, InvalidValue) as exc:
            raise ProtocolError(f"{type(message).__name__}: {exc}") from None

    def _on_write(self, peer: str, msg: m.Write, from_client: bool) -> Handled:
        out: list[Send] = []
        ks = self._known.get(msg.database)
        if ks is None:
            ks = self._keyspace(msg.database)
        kind = msg.kind
        value = msg.value
        applied = ks.apply_parts(
            msg.key,
            msg.gen,
            msg.directory,
            value,
            msg.origin,
            value is None and kind == "changed",
        )
        if kind == "deleted":
            self.holders.drop((msg.database, msg.key, msg.gen))  # that generation is gone
        elif kind == "changed" or kind == "created":
            value_id = (msg.database, msg.key, msg.gen)
            if peer not in self.holders[value_id]:
                self.holders.add(value_id, peer)
            if (
                value is None
                and ks.generation(msg.key) == msg.gen
                and ks.holds(msg.key)
                and not ks.is_stale(msg.key)
            ):
                # The writer did not know this node holds the value (both created the
                # key at once, say): ask it for what this copy lacks, which also makes
                # this node a holder there. Without this, anti-entropy would repair it.
                state_vector = ks.value_state_vector(msg.key)
                out.append((peer, m.ValuePull(msg.database, msg.key, msg.gen, state_vector)))
        if msg.ack and not self.is_client:  # a client acknowledges nothing
            out.append((peer, m.Ack(msg.ack)))
        # A gateway relays: a client's writes to everyone else, the cluster's writes to
        # its clients.
        targets = self.peers if from_client else self.clients
        relay_to = targets - {peer} if targets else targets
        if not relay_to:
            return out, applied
        # Holders get the delta as it came, the others a notice.
        change = Change(
            msg.database, msg.key, msg.gen, msg.directory, value, msg.origin, kind or None
        )
        if from_client and msg.ack:  # the node gives the relay an ack id
            return out, [*applied, RelayAck(peer, msg.ack, change, frozenset(relay_to))]
        out.extend(self.changed(change, to=relay_to))
        return out, applied

    def _on_directory_step1(self, peer: str, msg: m.DirectoryStep1, from_client: bool) -> Handled:
        new = msg.database not in self._known
        ks = self._keyspace(msg.database)
        directory = ks.directory
        wanted = directory.differing(msg.buckets, msg.digests)  # InvalidUpdate if bad
        out: list[Send] = []
        if not from_client:
            self.awaiting.get(peer, set()).discard(msg.database)
        if not from_client and ks.fresh_from is None:
            if ks.behind(msg.pruned):
                # Back after the peer pruned deletes this node may not have seen: ask
                # for every entry it has (no digest matches), to drop what it lacks.
                ks.fresh_from, ks.fresh_seen = peer, set()
                buckets = directory.bucket_count()
                fresh = m.DirectoryStep1(msg.database, buckets, _NO_MATCH * buckets, ks.pruned)
                out.append((peer, fresh))
            elif ks.in_touch():
                ks.touch()  # in sync with a node no further in pruning: current
        finer = msg.buckets == 1 and ks.fresh_from is None and not new
        if wanted and finer:
            # One digest of the whole differs: ask for the peer's buckets (its answer
            # is what differs of its own; what differs of the peer's comes back when
            # the peer's step 1 finds this node's whole digest differing in turn).
            out.append((peer, self._step1(ks)))
        elif wanted and ks.fresh_from is not None:
            # Not to be trusted yet: only what this node wrote out of touch, and no
            # bucket said complete.
            own = ks.offline_entries()
            out.append((peer, m.DirectoryStep2(msg.database, encode_update(own), ())))
        elif wanted:  # made as they are sent: a whole directory holds nothing up
            chunks = directory.chunks(msg.buckets, wanted, max_bytes=self.chunk_bytes)
            step2 = m.DirectoryStep2
            name, buckets = msg.database, msg.buckets
            out.append(
                (
                    peer,
                    Streamed(step2(name, update, tuple(done), buckets) for update, done in chunks),
                )
            )
        if new:  # a database this node lacked: the peer sent no step 1 for it
            out.append((peer, self._step1(ks)))
        # Then the values held here, once the peer has the directory to place them.
        return out, (HoldingDue(peer, msg.database),)

    def _on_directory_step2(self, peer: str, msg: m.DirectoryStep2, from_client: bool) -> Handled:
        ks = self._keyspace(msg.database)
        changes: list[Notice] = [*ks.apply_directory(msg.update, peer)]
        if ks.fresh_from == peer:
            if not msg.buckets:  # reconciling itself: asked again at its next step 1
                ks.fresh_from, ks.fresh_seen = None, set()
            elif len(set(msg.complete)) == msg.buckets:  # its whole directory is in
                changes.extend(ks.reconcile(peer))
                changes.append(HoldingDue(peer, msg.database))  # the values it held back
        return (), changes

    def _on_value_pull(self, peer: str, msg: m.ValuePull, from_client: bool) -> Handled:
        self.holders.add((msg.database, msg.key, msg.gen), peer)
        ks = self._keyspace(msg.database)
        if from_client and msg.key in ks and not ks.holds(msg.key):
            return (), (PullFor(peer, msg),)  # the gateway pulls it first
        if ks.on_disk(msg.key) == msg.gen:
            return (), (PullFor(peer, msg),)  # evicted to disk here: reloaded first
        return (self.answer_pull(peer, msg),), ()

    def _on_holding(self, peer: str, msg: m.Holding, from_client: bool) -> Handled:
        out: list[Send] = []
        ks = self._keyspace(msg.database)
        # What the peer lacks first: this decodes every state vector it compares (one
        # that does not decode refuses the message before anything changed).
        for key, gen, state_vector in msg.values:
            if ks.holds(key) and ks.generation(key) == gen:
                ours = ks.value_state_vector(key)
                if _ahead(ours, state_vector):  # the peer lacks something: send it
                    diff = ks.value_diff(key, gen, state_vector)
                    if diff is not None:
                        out.append((peer, m.ValueDiff(msg.database, key, gen, diff)))
        for key, gen, _ in msg.values:
            self.holders.add((msg.database, key, gen), peer)
        return out, ()

    def _on_holding_digest(self, peer: str, msg: m.HoldingDigest, from_client: bool) -> Handled:
        if len(msg.digests) != 8 * msg.buckets:
            raise ProtocolError(f"{msg.buckets} buckets need {8 * msg.buckets} bytes of digest")
        ours = self._digests(peer, msg.database, msg.buckets)
        wanted = digests.differing(ours, msg.digests)
        if not wanted:
            return _NOTHING
        return ((peer, m.HoldingAsk(msg.database, msg.buckets, tuple(wanted))),), ()

    def _on_holding_ask(self, peer: str, msg: m.HoldingAsk, from_client: bool) -> Handled:
        wanted = _wanted(msg.buckets, msg.wanted)
        ks = self._keyspace(msg.database)
        by_bucket: dict[int, list[tuple[str, int, bytes]]] = {}
        for key, gen in ks.held():
            at = digests.bucket(key, msg.buckets)
            if at in wanted:
                by_bucket.setdefault(at, []).append((key, gen, ks.value_state_vector(key)))
        out: list[Send] = []
        group: list[int] = []
        values: list[tuple[str, int, bytes]] = []

        def answer() -> Send:
            return (peer, m.HoldingBuckets(msg.database, msg.buckets, (*group,), (*values,)))

        size = 0  # of ``values``, about: answers a peer's frames take (long keys)
        for at in sorted(wanted):
            listed = by_bucket.get(at, [])
            listed_size = sum(_held_bytes(key, sv) for key, _, sv in listed)
            over = size + listed_size > self.chunk_bytes
            if group and (len(values) + len(listed) > MAX_BUCKET_VALUES or over):
                out.append(answer())
                group, values, size = [], [], 0
            if len(listed) > MAX_BUCKET_VALUES:  # one bucket over the bound: listed, not exact
                out.extend(self._holding(peer, msg.database, [(k, g) for k, g, _ in listed]))
                continue
            group.append(at)
            values.extend(listed)
            size += listed_size
        if group:
            out.append(answer())
        return out, ()

    def _on_holding_buckets(self, peer: str, msg: m.HoldingBuckets, from_client: bool) -> Handled:
        wanted = _wanted(msg.buckets, msg.wanted)
        for key, _, _ in msg.values:  # checked before anything is made or changed
            if digests.bucket(key, msg.buckets) not in wanted:
                raise ProtocolError(f"{key!r} is in none of the buckets listed")
        database = msg.database
        ks = self._keyspace(database)
        listed = {(key, gen) for key, gen, _ in msg.values}
        out: list[Send] = []
        for key, gen, state_vector in msg.values:
            self.holders.add((database, key, gen), peer)
            if not (ks.holds(key) and ks.generation(key) == gen):
                continue
            ours = ks.value_state_vector(key)
            if _ahead(ours, state_vector):  # the peer lacks something: send it
                diff = ks.value_diff(key, gen, state_vector)
                if diff is not None:
                    out.append((peer, m.ValueDiff(database, key, gen, diff)))
            if _ahead(state_vector, ours):  # this node lacks something: ask for it
                out.append((peer, m.ValuePull(database, key, gen, ours)))
        # The list is all the peer holds there: it holds none of the others.
        for key, gen in ks.held():
            if (key, gen) not in listed and digests.bucket(key, msg.buckets) in wanted:
                self.holders.discard((database, key, gen), peer)
        return out, ()

    def _on_value_diff(self, peer: str, msg: m.ValueDiff, from_client: bool) -> Handled:
        value_id = (msg.database, msg.key, msg.gen)
        self.holders.add(value_id, peer)
        applied = self._keyspace(msg.database).apply_pulled(msg.key, msg.gen, msg.update, peer)
        if self.pulls.pop(value_id, None) is not None:
            return (), [*applied, PullDone(value_id, answered=True)]
        return (), applied

    def _on_value_missing(self, peer: str, msg: m.ValueMissing, from_client: bool) -> Handled:
        value_id = (msg.database, msg.key, msg.gen)
        waiting = self.pulls.get(value_id)
        if waiting is not None:
            waiting.discard(peer)
            if not waiting:
                del self.pulls[value_id]
                return (), (PullDone(value_id, answered=False),)
        return _NOTHING

    def _on_release(self, peer: str, msg: m.Release, from_client: bool) -> Handled:
        self.holders.discard((msg.database, msg.key, msg.gen), peer)
        return _NOTHING

    def _on_ack(self, peer: str, msg: m.Ack, from_client: bool) -> Handled:
        if from_client:  # asked nothing, and counts for nothing
            raise ProtocolError("a client acknowledges nothing (Ack)")
        return (), (AckReceived(msg.id, peer),)

    def _on_ack_from(self, peer: str, msg: m.AckFrom, from_client: bool) -> Handled:
        if not self.is_client:
            raise ProtocolError("only a client is told who acknowledged (AckFrom)")
        return (), (AckReceived(msg.id, msg.node),)

    def _on_custom(self, peer: str, msg: m.Custom, from_client: bool) -> Handled:
        if len(msg.payload) > self.max_payload_bytes:
            raise ProtocolError(
                f"custom event payload of {len(msg.payload)} bytes "
                f"(at most {self.max_payload_bytes})"
            )
        if from_client:
            if msg.origin != peer:
                raise ProtocolError("a client relays nothing: an event's origin must be itself")
            msg = m.Custom(self._event_id(), msg.name, msg.payload, msg.origin)
        if not self._remember(msg.id):
            return _NOTHING
        relay_to = (self.peers if from_client else self.clients) - {peer}
        return [(other, msg) for other in relay_to], (CustomReceived(msg),)

    def _on_events_seen(self, peer: str, msg: m.EventsSeen, from_client: bool) -> Handled:
        # What this node sent the peer: to a node, the events it gave ids to; to a
        # client, every node's. What it receives from the peer: the reverse.
        last = dict(msg.last)
        if from_client:
            resend = {node: ident for node, ident in last.items() if node != peer}
        else:
            resend = {self.name: last[self.name]} if self.name in last else {}
        for node, ident in last.items():
            if node not in self._cursors and not from_client and (self.is_client or node == peer):
                owner, incarnation, counter = m.event_id_parts(ident)
                if owner == node and counter >= 0:  # resume from here if the link drops
                    self._new_cursor(node, incarnation, counter)
        if not resend or not self._may(peer, "read"):
            return _NOTHING
        return (), (ResendCustoms(peer, resend),)

    def _on_consumers(self, peer: str, msg: m.Consumers, from_client: bool) -> Handled:
        return (), (ConsumersOf(peer, msg.consumers),)

    def _on_group_ack(self, peer: str, msg: m.GroupAck, from_client: bool) -> Handled:
        return (), (GroupAcked(msg.group, msg.id),)

    def consumers(self, table: tuple[tuple[str, str, str, float], ...]) -> list[Send]:
        """This node's consumers changed (``table``: all of them): to every node peer,
        and to each that links later."""
        self.consumer_table = table
        return [(peer, m.Consumers(table)) for peer in self.peers - self.clients]

    def group_ack(self, group: str, ident: str) -> list[Send]:
        """``group`` handled event ``ident`` here: to every node peer."""
        message = m.GroupAck(group, ident)
        return [(peer, message) for peer in self.peers - self.clients]

    def _on_relay(self, peer: str, msg: m.Relay, from_client: bool) -> Handled:
        # Passed on once: to the named nodes this node links to, as a directory repair
        # (which makes no one a holder), never back and never further.
        write = m.Write(msg.database, msg.key, msg.gen, "", msg.directory, None, msg.origin)
        to = self.peers - self.clients - {peer, self.name}
        return [(other, write) for other in msg.to if other in to], ()

    def _on_ignore(self, peer: str, msg: m.Message, from_client: bool) -> Handled:
        return _NOTHING  # link-level messages are the session's, Members the node's

    #: message class -> its handler (every class: the session and the node take
    #: some before they get here)
    _handlers: ClassVar[dict[type, Callable[..., Handled]]] = {
        m.Write: _on_write,
        m.DirectoryStep1: _on_directory_step1,
        m.DirectoryStep2: _on_directory_step2,
        m.ValuePull: _on_value_pull,
        m.Holding: _on_holding,
        m.HoldingDigest: _on_holding_digest,
        m.HoldingAsk: _on_holding_ask,
        m.HoldingBuckets: _on_holding_buckets,
        m.ValueDiff: _on_value_diff,
        m.ValueMissing: _on_value_missing,
        m.Release: _on_release,
        m.Ack: _on_ack,
        m.AckFrom: _on_ack_from,
        m.Custom: _on_custom,
        m.EventsSeen: _on_events_seen,
        m.Consumers: _on_consumers,
        m.GroupAck: _on_group_ack,
        m.Relay: _on_relay,
        m.Hello: _on_ignore,
        m.Proof: _on_ignore,
        m.Members: _on_ignore,
        m.Leave: _on_ignore,
        m.Ping: _on_ignore,
        m.Pong: _on_ignore,
        m.Close: _on_ignore,
    }
