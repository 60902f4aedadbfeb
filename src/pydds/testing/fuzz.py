"""Fuzzing the link protocol: valid frames of every message kind, mutations of them
(bit flips, truncations, splices, random msgpack), and drivers that feed them
through the whole receive path in process: the peers layer alone, its databases
bare keyspaces (``run``: decode, session, membership, replication, acks, pulls),
and a gateway's checks of a hostile client (``run_client``). Used by the tests and
by ``fuzz/fuzz.py``; deterministic for a seed.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..node import Node

import msgpack

from ..config import DatabaseSettings, Limits, check_key, check_name
from ..crdt import values
from ..crdt.directory import Directory, Entry, encode_update
from ..crdt.keydoc import LiveDocs
from ..crdt.sync import decode_state_vector
from ..crdt.ydoc import EMPTY_STATE_VECTOR
from ..errors import InvalidName, InvalidValue, MalformedFrame, ProtocolError
from ..keyspace import Keyspace
from ..net import messages as m
from ..net.auth import Credentials, Grant
from ..net.codec import PROTOCOL, decode_frame, encode_frame
from ..net.peers import ClusterSettings, PeerLink, Peers
from ..net.replication import AckReceived, Replication
from ..net.session import Session, State, Streamed

__all__ = [
    "FuzzReport",
    "Keyspaces",
    "frame_of",
    "mutate",
    "random_msgpack",
    "run",
    "run_client",
    "valid_messages",
]


def valid_messages(rng: random.Random, update: bytes, state_vector: bytes) -> list[m.Message]:
    """A batch of well-formed messages, with a real CRDT ``update`` and ``state_vector``."""
    db = rng.choice(["db", "cache", "x" * rng.randint(1, 128)])
    key = rng.choice(["k", "ключ", "a/b", "k" * rng.randint(1, 1024)])
    gen = rng.choice([1, 2, 2**63 - 1])
    directory = encode_update([(key, Entry(gen, rng.random() < 0.3, 0, 1.0))])
    every: list[m.Message] = [
        m.Hello("peer", rng.choice(["node", "client"]), None, PROTOCOL, b"n" * 16, None, 7),
        m.Proof(b"\x00" * rng.choice([0, 32])),
        m.DirectoryStep1(db, 16, rng.randbytes(rng.choice([128, 9]))),
        m.DirectoryStep2(db, directory, (rng.randint(0, 15),)),
        m.Write(
            db,
            key,
            gen,
            rng.choice(["created", "changed", "deleted", ""]),
            rng.choice([directory, update]),
            update,
            "peer",
        ),
        m.Write(db, key, gen, "changed", None, update, "peer", rng.randint(0, 5)),
        m.Ack(rng.randint(0, 2**63 - 1)),
        m.AckFrom(1, "x"),
        m.ValuePull(db, key, gen, state_vector),
        m.ValueDiff(db, key, gen, update),
        m.ValueMissing(db, key, gen),
        m.Release(db, key, gen),
        m.Holding(db, ((key, gen, state_vector),)),
        m.HoldingDigest(db, 16, rng.randbytes(rng.choice([128, 7]))),
        m.HoldingAsk(db, 16, (rng.randint(0, 20),)),
        m.HoldingBuckets(db, 16, (rng.randint(0, 15),), ((key, gen, state_vector),)),
        m.Members((("n9", "mem://n9"),)),
        m.Leave(rng.choice(["peer", "n9"])),
        m.Relay(("n9",), db, key, gen, update, "peer"),
        m.Custom(f"peer:{rng.randint(1, 9)}", "ev", msgpack.packb({"a": 1}), "peer"),
        m.Ping(rng.randint(0, 9)),
        m.Pong(rng.randint(0, 9)),
    ]
    return rng.sample(every, rng.randint(1, 6))


def random_msgpack(rng: random.Random, depth: int = 0) -> Any:
    """A random msgpack-able value (lists, maps, ints, floats, strings, bytes, None)."""
    kind = rng.randint(0, 9 if depth < 4 else 6)
    if kind == 0:
        return rng.randint(-(2**63), 2**64 - 1)
    if kind == 1:
        return rng.random() * 10 ** rng.randint(-5, 300)
    if kind == 2:
        return (
            "".join(
                chr(rng.randint(0, 0x10FFFF) if rng.random() < 0.1 else rng.randint(32, 126))
                for _ in range(rng.randint(0, 20))
            )
            .encode("utf-8", "surrogatepass")
            .decode("utf-8", "replace")
        )
    if kind == 3:
        return rng.randbytes(rng.randint(0, 40))
    if kind == 4:
        return None
    if kind in (5, 6):
        return rng.choice([True, False, 0, 1, 15, 18, 20, -1])
    if kind in (7, 8):
        return [random_msgpack(rng, depth + 1) for _ in range(rng.randint(0, 6))]
    return {str(i): random_msgpack(rng, depth + 1) for i in range(rng.randint(0, 3))}


def mutate(rng: random.Random, frame: bytes) -> bytes:
    """A corrupted copy of ``frame``."""
    data = bytearray(frame)
    how = rng.randint(0, 5)
    if how == 0 and data:  # flip bits
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif how == 1 and data:  # truncate
        del data[rng.randrange(len(data)) :]
    elif how == 2:  # insert random bytes
        at = rng.randint(0, len(data))
        data[at:at] = rng.randbytes(rng.randint(1, 16))
    elif how == 3 and len(data) > 2:  # overwrite a run
        at = rng.randrange(len(data) - 1)
        data[at : at + 4] = rng.randbytes(4)
    elif how == 4:  # a random msgpack structure
        return bytes(msgpack.packb([random_msgpack(rng) for _ in range(rng.randint(0, 4))]))
    else:  # a message with a random field swapped in
        fields = msgpack.unpackb(frame, strict_map_key=False) if frame else []
        if fields and isinstance(fields[0], list) and len(fields[0]) > 1:
            fields[0][rng.randrange(1, len(fields[0]))] = random_msgpack(rng)
        return bytes(msgpack.packb(fields))
    return bytes(data)


def frame_of(rng: random.Random, update: bytes, state_vector: bytes) -> bytes:
    """A valid frame of a few messages."""
    return encode_frame(valid_messages(rng, update, state_vector))


@dataclass
class FuzzReport:
    """What a fuzz run saw."""

    cases: int = 0
    accepted: int = 0  # frames whose messages were all taken
    malformed: int = 0  # refused by the codec
    refused: int = 0  # refused by the session or the protocol (the link would close)
    crashes: list[str] = field(default_factory=list)  # anything else: must stay empty
    #: refused messages that changed the node's state anyway: must stay empty
    state_changes: list[str] = field(default_factory=list)


class Keyspaces:
    """Databases without a node, made on first use as a node makes them (names
    checked, at most ``max_databases``): what the peers layer reads and changes
    when it is driven alone."""

    def __init__(self, name: str, client_id: int, limits: Limits | None = None) -> None:
        self.name = name
        self.client_id = client_id
        self.limits = limits or Limits()
        self.live = LiveDocs(self.limits.live_docs)
        self.keyspaces: dict[str, Keyspace] = {}

    def __call__(self, database: str) -> Keyspace:
        ks = self.keyspaces.get(database)
        if ks is None:
            check_name("database", database)
            if len(self.keyspaces) >= self.limits.max_databases:
                raise InvalidValue(f"{len(self.keyspaces)} databases, the limit")
            ks = self.keyspaces[database] = Keyspace(
                database,
                DatabaseSettings(),
                client_id=self.client_id,
                node_name=self.name,
                limits=self.limits,
                live=self.live,
            )
        return ks

    def names(self) -> list[str]:
        return sorted(self.keyspaces)

    def set(self, database: str, key: str, value: Any) -> None:
        self(database).set(key, value, values.pack(value, self.limits.max_value_bytes))


def _material() -> tuple[bytes, bytes]:
    source = Keyspaces("source", 5)
    source.set("db", "k", {"v": 1})
    ks = source("db")
    return ks.value_diff("k", 1, EMPTY_STATE_VECTOR) or b"", ks.value_state_vector("k")


async def run(cases: int, seed: int, *, client: bool = False) -> FuzzReport:
    """Feed ``cases`` frames (valid and corrupted) to the peers layer's receive path
    as if from one peer (a client when ``client``), driven alone: no node, its
    databases bare keyspaces, time a plain number. Count what happened.

    A frame a session refuses closes that session; the next case opens a new link,
    as a reconnecting peer would. At the end the databases must still read and
    write.
    """
    rng = random.Random(seed)
    update, state_vector = _material()
    databases = Keyspaces("target", 11)
    peers = Peers(
        "target",
        "node",
        keyspace=databases,
        databases=databases.names,
        settings=ClusterSettings(),
        limits=databases.limits,
        credentials=Credentials(),
        client_id=databases.client_id,
    )
    report = FuzzReport()
    databases.set("db", "mine", 1)
    link = _open_link(peers, client)
    with _quiet():  # a refused link is logged by the peers layer: not here
        for _ in range(cases):
            report.cases += 1
            frame = frame_of(rng, update, state_vector)
            if rng.random() < 0.7:
                frame = mutate(rng, frame)
            try:
                batch = decode_frame(frame)
            except MalformedFrame:
                report.malformed += 1
                continue
            except Exception as exc:  # a crash: recorded, never raised
                report.crashes.append(f"decode: {exc!r}")
                continue
            try:
                for_node = peers.receive(link, batch, len(frame), 0.0)
            except Exception as exc:  # a crash: recorded
                report.crashes.append(f"receive: {exc!r}")
                for_node = []
            refused = link.session.closed
            for message in for_node:
                before = _digest(databases, message)
                try:
                    accepted = peers.dispatch(link, message, 0.0)
                except Exception as exc:  # a crash: recorded
                    report.crashes.append(f"{type(message).__name__}: {exc!r}")
                    break
                if not accepted:
                    refused = True
                    if _digest(databases, message) != before:
                        report.state_changes.append(type(message).__name__)
                    break
            peers.take()  # what a node would carry out: nothing here
            if refused or link.session.closed:
                report.refused += 1
                link.session.close("refused")
                peers.lost(link, 0.0)
                peers.take()
                link = _open_link(peers, client)
            else:
                report.accepted += 1
    for name in databases.names():  # every value still reads
        ks = databases(name)
        for key in ks.keys(prefix=""):
            if ks.holds(key):
                try:
                    ks.read(key, fresh=False)
                except Exception as exc:  # a crash: recorded
                    report.crashes.append(f"read {name}/{key[:20]}: {exc!r}")
    databases.set("db", "after", {"ok": True})  # the databases still work
    ks = databases("db")
    if ks.read("after", fresh=False) != {"ok": True} or ks.read("mine", fresh=False) != 1:
        report.crashes.append("the databases lost their own data")
    return report


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    logger = logging.getLogger("pydds.cluster")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _digest(databases: Keyspaces, message: m.Message) -> tuple[Any, ...]:
    """What a message could change: its database's directory, and its key's value."""
    database = getattr(message, "database", None)
    if database is None or database not in databases.keyspaces:
        return (tuple(databases.names()),)
    ks = databases(database)
    key = getattr(message, "key", None)
    value = ks.value_state_vector(key) if isinstance(key, str) and ks.holds(key) else None
    return (tuple(databases.names()), _entries(ks.directory), len(ks), value)


def _entries(directory: Directory) -> tuple[tuple[str, Entry], ...]:
    return tuple(sorted(directory.entries().items()))


def _open_link(peers: Peers, client: bool) -> PeerLink:
    role = "client" if client else "node"
    link = peers.new_link(dialed=False, now=0.0)
    hello = m.Hello("peer", role, None, PROTOCOL, b"p" * 16, None, 7)
    peers.receive(link, [hello, m.Proof(b"")], 0, 0.0)
    assert link.session.state is State.OPEN
    assert peers.links["peer"] is link
    peers.take()
    return link


# -- a client's point of view ---------------------------------------------------------

#: The fuzzed client's Yjs client id, and another writer's it must never write under.
CLIENT_ID, FOREIGN_ID = 7, 99
#: The client's token reaches ``cache`` (every right); ``other`` is out of its reach.
CLIENT_GRANT = Grant("client", "fuzz", frozenset({"cache"}), frozenset({"read", "write", "emit"}))


async def _client_material(writer: int) -> dict[str, tuple[bytes, bytes]]:
    """Per database: a directory update and a value update made under ``writer``."""
    from ..node import Node

    source = Node("source")
    source.client_id = writer
    out = {}
    for database in ("cache", "other"):
        db = source.database(database)
        await db.set(f"k{writer}", {"v": [1, 2]})
        ks = db.keyspace
        value = ks.value_diff(f"k{writer}", 1, EMPTY_STATE_VECTOR) or b""
        out[database] = (encode_update(ks.directory.entries().items()), value)
    # Entries no write could make: an empty key, an over-long one.
    out["bad"] = (encode_update((key, Entry(1)) for key in ("", "x" * 2000, "fine")), b"")
    await source.close()
    return out


def _hostile(
    rng: random.Random, material: dict[int, dict[str, tuple[bytes, bytes]]], ids: list[str]
) -> list[m.Message]:
    """Messages a client could send, in and out of its rights: updates under its own
    and another writer's id, databases in and out of its scope, keys good and bad,
    origins and event ids its own and others'."""
    writer = rng.choice([CLIENT_ID, FOREIGN_ID])
    db = rng.choice(["cache", "cache", "other", "new"])
    directory, value = material[writer][db if db != "new" else "cache"]
    if rng.random() < 0.2:
        directory = material[writer]["bad"][0]
    key = rng.choice(["k7", "k99", "mine", "fresh", "k" * 1024])
    gen = rng.choice([1, 1, 2, 2**63 - 1])
    origin = rng.choice(["peer", "peer", "target", "n2"])
    every: list[m.Message] = [
        m.DirectoryStep1(db, 16, bytes(128)),
        m.DirectoryStep2(db, directory, (0,)),
        m.Write(
            db,
            key,
            gen,
            rng.choice(["created", "changed", "deleted"]),
            directory,
            value,
            origin,
            rng.choice([0, 1]),
        ),
        m.Write(db, key, gen, "changed", None, value, origin),
        m.Ack(rng.randint(1, 5)),
        m.AckFrom(1, "n2"),
        m.ValuePull(db, key, gen, EMPTY_STATE_VECTOR),
        m.ValueDiff(db, key, gen, value),
        m.ValueMissing(db, key, gen),
        m.Release(db, key, gen),
        m.Holding(db, ((key, gen, EMPTY_STATE_VECTOR),)),
        m.HoldingDigest(db, 16, rng.randbytes(rng.choice([128, 9]))),
        m.HoldingAsk(db, 16, (rng.randint(0, 20),)),
        m.HoldingBuckets(db, 16, (rng.randint(0, 15),), ((key, gen, EMPTY_STATE_VECTOR),)),
        m.Members((("n9", "mem://n9"),)),
        m.Leave(rng.choice(["n2", origin])),
        m.Relay(("n2",), db, key, gen, value, origin),
        m.Custom(rng.choice(ids), "ev", msgpack.packb(1), origin),
    ]
    return rng.sample(every, rng.randint(1, 4))


def _outside(node: Node) -> tuple[Any, ...]:
    """What a client with ``CLIENT_GRANT`` must never change: the databases there
    are, every database out of its scope, and in scope what other writers wrote."""
    names = tuple(sorted(node.databases()))
    out: list[Any] = [names]
    for name in names:
        ks = node.database(name).keyspace
        if name not in (CLIENT_GRANT.databases or ()):
            out.append((name, _entries(ks.directory), tuple(sorted(ks.keys()))))
            continue
        for key in sorted(ks.keys()):
            if ks.holds(key):  # holding a copy or not is no data: what others wrote is
                theirs = _others(ks.value_state_vector(key))
                if theirs:
                    out.append((key, theirs))
    return tuple(out)


def _others(state_vector: bytes) -> tuple[tuple[int, int], ...]:
    """The clocks of every writer but the fuzzed client in ``state_vector``."""
    vector = decode_state_vector(state_vector)
    return tuple(sorted((c, n) for c, n in vector.items() if c != CLIENT_ID))


async def run_client(cases: int, seed: int) -> FuzzReport:
    """Feed ``cases`` frames of hostile client messages (valid and corrupted) to a
    gateway's receive path, from a client whose token reaches one database; count
    what happened. Beyond crashes, a ``state_changes`` entry is recorded whenever
    anything outside the client's rights changed, whether the message was refused
    or not: another database, another writer's operations, a key no write could
    make, a custom event under another origin, an acknowledgement counted.
    """
    from ..node import Node

    rng = random.Random(seed)
    material = {w: await _client_material(w) for w in (CLIENT_ID, FOREIGN_ID)}
    node = Node("target")
    node.client_id = 1234
    report = FuzzReport()
    replication = Replication(
        node.name,
        lambda db: node.database(db).keyspace,
        node.databases,
        max_payload_bytes=node.limits.max_value_bytes,
    )
    replication.opened("n2")  # another node, whose event ids a client may replay
    ids = [f"n2:{replication.incarnation}:{n}" for n in range(1, 4)] + ["x", ""]
    try:
        await node.database("cache").set("mine", 1)
        await node.database("other").set("theirs", 2)
        session = _open_client_session(node, replication)
        for _ in range(cases):
            report.cases += 1
            frame = encode_frame(_hostile(rng, material, ids))
            if rng.random() < 0.3:
                frame = mutate(rng, frame)
            try:
                batch = decode_frame(frame)
            except MalformedFrame:
                report.malformed += 1
                continue
            except Exception as exc:  # a crash: recorded, never raised
                report.crashes.append(f"decode: {exc!r}")
                continue
            refused = False
            for message in session.receive(batch, 0.0):
                before = _outside(node)
                try:
                    sends, notices = replication.handle("peer", message)
                    out = [  # a run made as it is sent: made here, as a link would
                        (peer, each)
                        for peer, sent in sends
                        for each in (sent.messages if isinstance(sent, Streamed) else (sent,))
                    ]
                except ProtocolError:
                    refused = True
                    out, notices = [], ()
                except Exception as exc:  # a crash: recorded
                    report.crashes.append(f"{type(message).__name__}: {exc!r}")
                    break
                changed = _outside(node) != before
                for notice in notices:
                    if isinstance(notice, AckReceived):
                        changed = True  # a client's acknowledgement counted
                for _, sent in out:
                    if isinstance(sent, m.Custom) and sent.origin != "peer":
                        changed = True  # an event relayed under another's name
                    if isinstance(sent, m.Custom) and sent.id in ids:
                        changed = True  # an id that could silence another's events
                if changed:
                    report.state_changes.append(type(message).__name__)
                if refused:
                    break
            if refused or session.state is State.CLOSED:
                report.refused += 1
                replication.closed("peer")
                session = _open_client_session(node, replication)
            else:
                report.accepted += 1
        for name in node.databases():  # every key valid, within the limits
            ks = node.database(name).keyspace
            for key in ks.keys(prefix=""):
                try:
                    check_key(key, node.limits)
                except InvalidName:
                    report.state_changes.append(f"bad key in {name}")
        db = node.database("cache")
        await db.set("after", {"ok": True})
        # "mine" is in the client's scope: it may write it (under its own id). What is
        # out of its scope is checked by ``_outside``.
        theirs = await node.database("other").get("theirs")
        if await db.get("after") != {"ok": True} or theirs != 2:
            report.crashes.append("the node lost its own data")
    finally:
        await node.close()
    return report


def _open_client_session(node: Node, replication: Replication) -> Session:
    session = Session(
        m.Hello(node.name, "node", None, PROTOCOL, b"l" * 16, None, node.client_id), now=0.0
    )
    hello = m.Hello("peer", "client", None, PROTOCOL, b"p" * 16, "fuzz", CLIENT_ID)
    session.receive([hello, m.Proof(b"")], 0.0)
    assert session.state is State.OPEN
    replication.opened("peer", "client", CLIENT_GRANT, CLIENT_ID)
    return session
