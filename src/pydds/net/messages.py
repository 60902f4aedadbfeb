"""The messages that links carry, as slotted dataclasses (one per kind; treat them as
immutable: they are not frozen only because frozen dataclasses cost five times as
much to make, and every message received is made once).

Names of databases and keys live in the envelope of each message; CRDT payloads
(state vectors and updates) are opaque bytes produced by ``crdt/``. Sync follows
y-protocols: step 1 carries a state vector, step 2 the diff it asks for, then live
updates follow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "MAX_ACK_TIMEOUT",
    "MAX_CONSUMERS",
    "MIN_ACK_TIMEOUT",
    "Ack",
    "AckFrom",
    "Close",
    "Consumers",
    "Custom",
    "DirectoryStep1",
    "DirectoryStep2",
    "EventsSeen",
    "GroupAck",
    "Hello",
    "Holding",
    "HoldingAsk",
    "HoldingBuckets",
    "HoldingDigest",
    "Leave",
    "Members",
    "Message",
    "Ping",
    "Pong",
    "Proof",
    "Reach",
    "Relay",
    "Release",
    "ValueDiff",
    "ValueMissing",
    "ValuePull",
    "Write",
    "event_id_parts",
]


@dataclass(slots=True)
class Hello:
    """The first message on a link: who is speaking."""

    name: str  # the sender's node name
    role: str  # "node" or "client"
    address: str | None  # where the sender accepts links (None for a client)
    protocol: int  # the protocol version the sender speaks
    nonce: bytes = b""  # fresh random bytes the peer's proof must cover
    token: str | None = None  # a client's token id (never a secret)
    client_id: int = 0  # the Yjs client id of the sender's writes


@dataclass(slots=True)
class Proof:
    """The second message: an HMAC over both nonces proving the sender's credential
    (empty from an end that has none). See ``net/auth.py``."""

    mac: bytes


@dataclass(slots=True)
class DirectoryStep1:
    """Sync step 1 for a directory: the digests of the sender's entries in
    ``buckets`` buckets of keys (``crdt/directory.py``); answer with step 2. ``pruned``:
    the sender has forgotten the tombstones of keys gone before this time (wall
    clock; -inf: none), so a receiver out of touch since before then reconciles."""

    database: str
    buckets: int
    digests: bytes
    pruned: float = -math.inf


@dataclass(slots=True)
class DirectoryStep2:
    """Sync step 2 for a directory: the sender's entries of the buckets (of
    ``buckets``) whose digests differed, in updates of at most ``directory.CHUNK``
    entries; the last one lists those buckets in ``complete`` (every entry of theirs
    has been sent). ``buckets`` is 0 from a sender that cannot vouch for its directory
    yet (one reconciling itself: it sends only what it wrote out of touch)."""

    database: str
    update: bytes
    complete: tuple[int, ...]
    buckets: int = 0


@dataclass(slots=True)
class Write:
    """One change made by the sender (who holds the value, unless it deleted the key).

    A holder of the key gets the value delta; any other member gets ``value=None``:
    it learns that the key changed, and applies the directory delta if any.
    """

    database: str
    key: str
    gen: int
    kind: str  # "created", "changed", "deleted", or "" for a directory repair
    directory: bytes | None  # the directory delta, when the entry changed
    value: bytes | None  # the value delta, for holders
    origin: str  # the node that made the change
    ack: int = 0  # when not 0, answer with ``Ack(ack)`` once applied


@dataclass(slots=True)
class Ack:
    """The sender applied the ``Write`` that asked for this acknowledgement."""

    id: int


@dataclass(slots=True)
class AckFrom:
    """To a client, from its gateway: the node ``node`` applied the client's ``Write``
    that asked for acknowledgement ``id`` (the gateway relayed it)."""

    id: int
    node: str


@dataclass(slots=True)
class ValuePull:
    """The sender holds (or wants to hold) this generation of a key: answer with
    ``ValueDiff`` (what its state vector lacks) or ``ValueMissing``, and push it every
    later change with ``Write``."""

    database: str
    key: str
    gen: int
    state_vector: bytes


@dataclass(slots=True)
class Holding:
    """The sender holds these values (key, generation, state vector): register it as
    a holder of each, and answer with a ``ValueDiff`` where it lacks something."""

    database: str
    values: tuple[tuple[str, int, bytes], ...]


@dataclass(slots=True)
class HoldingDigest:
    """Anti-entropy of held values, by digest: for each of ``buckets`` buckets of
    keys, 8 bytes that hash every value the sender holds, and knows the receiver to
    hold, with its generation and state vector (``net/digests.py``). Answer with
    ``HoldingAsk`` for the buckets whose digest differs from the receiver's own."""

    database: str
    buckets: int
    digests: bytes


@dataclass(slots=True)
class HoldingAsk:
    """The buckets (of ``buckets``) whose digests differ: answer with
    ``HoldingBuckets``."""

    database: str
    buckets: int
    wanted: tuple[int, ...]


@dataclass(slots=True)
class HoldingBuckets:
    """Every value the sender holds in the ``wanted`` buckets, as ``Holding`` lists
    them: the receiver repairs what differs, and takes the list as exactly what the
    sender holds there."""

    database: str
    buckets: int
    wanted: tuple[int, ...]
    values: tuple[tuple[str, int, bytes], ...]


@dataclass(slots=True)
class ValueDiff:
    """The answer to a ``ValuePull``: what the puller lacked (not a change: no event)."""

    database: str
    key: str
    gen: int
    update: bytes


@dataclass(slots=True)
class ValueMissing:
    """The answer to a ``ValuePull`` from a node that does not hold that value."""

    database: str
    key: str
    gen: int


@dataclass(slots=True)
class Custom:
    """A custom event; ``id`` deduplicates it across relays."""

    id: str
    name: str
    payload: bytes  # the payload, packed with msgpack
    origin: str


#: A consumer's ack timeout: seconds, within these (``Consumers``).
MIN_ACK_TIMEOUT = 0.001
MAX_ACK_TIMEOUT = 1e8
#: Consumers a node has at most (one ``Consumers`` message names them all).
MAX_CONSUMERS = 4096


def event_id_parts(ident: str) -> tuple[str, str, int]:
    """A custom event id's node, incarnation and counter (``node:incarnation:n``;
    an id of another shape: its node, no incarnation, -1)."""
    parts = ident.rsplit(":", 2)
    if len(parts) == 3 and parts[2].isascii() and parts[2].isdigit() and len(parts[2]) < 19:
        return parts[0], parts[1], int(parts[2])
    return parts[0], "", -1


@dataclass(slots=True)
class EventsSeen:
    """Sent as a link opens: for each node whose custom events the sender has
    received (the maker named in an event's id), the id of the last one. The peer
    sends again, from its event log, those it would have sent this end since (a
    node its own; a gateway, to its client, every node's). A sender's own last id
    is among them, so that the peer knows where to resume next time."""

    last: tuple[tuple[str, str], ...]


@dataclass(slots=True)
class Consumers:
    """The sender's consumers of custom events, all of them (``net/groups.py``):
    (event name, group, consumer id, ack timeout) each. Sent to node peers when
    they change and as a link opens."""

    consumers: tuple[tuple[str, str, str, float], ...]


@dataclass(slots=True)
class GroupAck:
    """``group`` has handled the custom event ``id``: no consumer gets it again."""

    group: str
    id: str


@dataclass(slots=True)
class Release:
    """The sender's copy went stale: stop pushing it changes of this value."""

    database: str
    key: str
    gen: int


@dataclass(slots=True)
class Members:
    """The nodes the sender knows, as ``(name, address)`` pairs (clients never appear)."""

    members: tuple[tuple[str, str], ...]


@dataclass(slots=True)
class Reach:
    """The nodes the sender has an open link to now; sent to its node peers each time
    that changes. A member that this node has no link to is alive while a node linked
    here reaches it (SWIM's indirect probe: the links are the probes)."""

    linked: tuple[str, ...]


@dataclass(slots=True)
class Leave:
    """Node ``name`` leaves the cluster: drop it at once (no suspicion, no redial,
    no longer counted). The leaving node says it to its peers as it closes; each
    passes it on, once, to the nodes it links to (``name`` is then not the sender)."""

    name: str


@dataclass(slots=True)
class Relay:
    """Pass this directory delta of a change on to the nodes ``to``, which the
    writer ``origin`` knows of but has no link to (they get it as a directory repair,
    ``Write`` of kind ``""``, instead of waiting for anti-entropy)."""

    to: tuple[str, ...]
    database: str
    key: str
    gen: int
    directory: bytes
    origin: str


@dataclass(slots=True)
class Ping:
    """A heartbeat; answer with ``Pong`` carrying the same ``seq``."""

    seq: int


@dataclass(slots=True)
class Pong:
    """The answer to a ``Ping``."""

    seq: int


@dataclass(slots=True)
class Close:
    """The sender closes the link, saying why."""

    reason: str


Message = (
    Hello
    | Proof
    | DirectoryStep1
    | DirectoryStep2
    | Write
    | Ack
    | AckFrom
    | ValuePull
    | Holding
    | HoldingDigest
    | HoldingAsk
    | HoldingBuckets
    | ValueDiff
    | ValueMissing
    | Release
    | Members
    | Reach
    | Leave
    | Relay
    | Custom
    | EventsSeen
    | Consumers
    | GroupAck
    | Ping
    | Pong
    | Close
)
