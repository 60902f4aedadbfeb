"""The peers layer driven directly (sans-IO, h11-style): no node, no event loop, time
as plain numbers. Its deadlines, as tables: handshake and idle timeouts, redial
backoff, member expiry."""

from __future__ import annotations

import pytest

from pydds.config import Limits
from pydds.net import messages as m
from pydds.net.auth import Credentials
from pydds.net.peers import NEVER, ClusterSettings, Output, PeerLink, Peers


def peers(name: str, role: str = "node", **settings: float) -> Peers:
    def no_database(database: str) -> object:
        raise AssertionError(f"no database is touched here ({database})")

    made = Peers(
        name,
        role,
        keyspace=no_database,  # type: ignore[arg-type]
        databases=lambda: [],
        settings=ClusterSettings(**settings),  # type: ignore[arg-type]
        limits=Limits(),
        credentials=Credentials(),
        client_id=1,
    )
    made.listening(f"mem://{name}")
    return made


def carry(source: Peers, link: PeerLink, target: Peers, other: PeerLink, now: float) -> None:
    """Deliver what ``link`` of ``source`` has queued to ``other`` of ``target``."""
    batch = source.outgoing(link, now)
    if batch:
        for message in target.receive(other, batch, 10, now):
            target.dispatch(other, message, now)


def linked(a: Peers, b: Peers, now: float = 0.0) -> tuple[PeerLink, PeerLink]:
    """A link dialed by ``a`` and accepted by ``b``, handshake done."""
    ab = a.new_link(dialed=True, now=now)
    ba = b.new_link(dialed=False, now=now)
    for _ in range(4):
        carry(a, ab, b, ba, now)
        carry(b, ba, a, ab, now)
    assert ab.peer == b.name
    assert ba.peer == a.name
    assert a.links[b.name] is ab
    assert b.links[a.name] is ba
    return ab, ba


def taken(p: Peers) -> Output:
    return p.take()


def test_a_pair_links_and_each_says_the_other_joined() -> None:
    a, b = peers("a"), peers("b")
    ab, _ = linked(a, b)
    out_a, out_b = taken(a), taken(b)
    assert ("joined", "b") in out_a.members
    assert ("joined", "a") in out_b.members
    assert (ab, None) in out_a.joins  # a's join through ab is done
    assert [m.name for m in a.members()] == ["a", "b"]


@pytest.mark.parametrize(
    ("now", "closed", "reason"),
    [
        (4.9, False, None),
        (5.0, True, "handshake not completed within 5s"),
    ],
)
def test_a_silent_link_closes_at_its_handshake_deadline(
    now: float, closed: bool, reason: str | None
) -> None:
    a = peers("a")
    link = a.new_link(dialed=False, now=0.0)  # the peer never says anything
    deadline = a.tick(0.0)
    assert deadline <= 5.0  # the timer wakes for it
    a.tick(now)
    assert link.session.closed is closed
    assert link.session.close_reason == reason
    if closed:
        assert link in taken(a).wake  # its writer sends the Close
        a.lost(link, now)
        assert a.stats["error:auth"] == 1  # a handshake not completed is refused


@pytest.mark.parametrize(
    ("silent_for", "pings", "closed"),
    [
        (0.5, 0, False),
        (1.0, 1, False),  # heartbeat: a ping on an idle link every second
        (3.0, 3, False),
        (4.9, 4, False),
        (5.0, 4, True),  # timeout: five seconds without a word closes it
    ],
)
def test_an_idle_link_is_pinged_then_closed(silent_for: float, pings: int, closed: bool) -> None:
    a, b = peers("a"), peers("b")
    ab, _ = linked(a, b)
    a.outgoing(ab, 0.0)  # what the handshake left queued is sent at 0
    sent = 0
    t = 0.0
    while True:  # a's timer, as it wakes at each deadline, and a's writer
        deadline = a.tick(t)
        sent += sum(isinstance(x, m.Ping) for x in a.outgoing(ab, t))
        if t >= silent_for:
            break
        t = min(deadline, silent_for)
    assert (sent, ab.session.closed) == (pings, closed)
    if closed:
        assert ab.session.close_reason == "peer silent for 5.0s"


def test_a_lost_member_is_redialed_with_backoff_and_dropped_after_dead_after() -> None:
    a, b = peers("a", dead_after=3.0), peers("b")
    ab, _ = linked(a, b)
    taken(a)
    ab.session.close("link lost")
    a.lost(ab, 0.0)
    out = taken(a)
    assert ("unreachable", "b") in out.members
    assert a.members()[1].state == "suspect"
    assert a.due == 0.0  # the timer wakes at once for the first dial
    # (time, dials asked at that time): each dial fails at once; the next waits
    # 0.1 s, doubling to 1 s; at dead_after (3 s) b has left and nobody dials it.
    table = [
        (0.0, 1),  # next at 0.1
        (0.05, 0),
        (0.1, 1),  # next 0.2 later: 0.3
        (0.25, 0),
        (0.31, 1),  # next at 0.71
        (0.7, 0),
        (0.75, 1),  # next at 1.55
        (1.6, 1),  # next at 2.6: the backoff is at its 1 s cap
        (2.5, 0),
        (2.6, 1),
        (3.0, 0),  # b has been unreachable for dead_after: gone
        (3.7, 0),
    ]
    for now, dials in table:
        a.tick(now)
        out = taken(a)
        assert len(out.dial) == dials, now
        for address in out.dial:
            assert address == "mem://b"
            a.dialed(address, False, now)
        if now >= 3.0:
            assert ("left", "b") in out.members or a.membership.get("b") is None
    assert [m.name for m in a.members()] == ["a"]
    assert a.redialing == []
    assert a.tick(10.0) == NEVER  # nothing left to time


def test_a_member_that_leaves_is_dropped_at_once_and_never_dialed() -> None:
    a, b = peers("a"), peers("b")
    ab, ba = linked(a, b)
    taken(a)
    b.close()  # b says it leaves, then closes
    carry(b, ba, a, ab, 0.0)
    out = taken(a)
    assert ("left", "b") in out.members
    a.lost(ab, 0.0)
    assert ("unreachable", "b") not in taken(a).members
    a.tick(1.0)
    assert taken(a).dial == []
    assert a.needed_acks("all") == 0


@pytest.mark.parametrize(
    ("level", "members", "needed"),
    [
        ("local", 3, 0),
        ("majority", 1, 0),
        ("majority", 2, 1),
        ("majority", 3, 1),
        ("majority", 4, 2),
        ("majority", 5, 2),
        ("all", 3, 2),
        (2, 3, 1),
    ],
)
def test_acks_needed_count_the_members(level: str | int, members: int, needed: int) -> None:
    a = peers("a")
    pairs = tuple((f"n{i}", f"mem://n{i}") for i in range(members - 1))
    a.membership.learn(pairs, 0.0)  # members known, linked or not: they all count
    assert a.needed_acks(level) == needed
