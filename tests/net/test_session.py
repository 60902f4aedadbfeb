"""The link session, driven by hand through a pair with an explicit clock."""

from __future__ import annotations

from collections.abc import Iterator

from pydds.net.auth import Credentials
from pydds.net.codec import PROTOCOL
from pydds.net.messages import Close, DirectoryStep2, Hello, Ping, Pong
from pydds.net.session import STREAMED_PER_FRAME, Session, State, Streamed

A = Hello("a", "node", "mem://a", PROTOCOL)
B = Hello("b", "node", "mem://b", PROTOCOL)
C = Hello("c", "client", None, PROTOCOL)


def exchange(x: Session, y: Session, now: float) -> tuple[list, list]:
    """Deliver what each side queued to the other; return what each gave its node."""
    to_y, to_x = x.data_to_send(now), y.data_to_send(now)
    return x.receive(to_x, now), y.receive(to_y, now)


def opened(now: float = 0.0) -> tuple[Session, Session]:
    a, b = Session(A, now=now), Session(B, now=now)
    assert exchange(a, b, now) == ([], [])  # the Hellos, then the Proofs
    assert exchange(a, b, now) == ([], [])
    return a, b


def test_hello_opens_both_ends() -> None:
    a, b = opened()
    assert a.state is b.state is State.OPEN
    assert a.peer == B
    assert b.peer == A


def test_opening_is_reported_once() -> None:
    a, b = Session(A, now=0), Session(B, now=0)
    exchange(a, b, 0)  # the Hellos: not open yet
    assert (a.take_opened(), b.take_opened()) == (False, False)
    exchange(a, b, 0)  # the Proofs
    assert (a.take_opened(), b.take_opened()) == (True, True)
    assert (a.take_opened(), b.take_opened()) == (False, False)
    a.send([DirectoryStep2("db", b"\x00\x00", ())])
    exchange(a, b, 0.1)
    assert b.take_opened() is False


def test_data_passes_through_once_open() -> None:
    a, b = opened()
    update = DirectoryStep2("db", b"\x00\x00", ())
    a.send([update])
    assert exchange(a, b, 0.1) == ([], [update])


def test_data_before_hello_is_a_protocol_error() -> None:
    b = Session(B, now=0)
    assert b.receive([DirectoryStep2("db", b"", ())], now=0) == []
    assert b.state is State.CLOSED
    assert "expected Hello" in (b.close_reason or "")
    assert isinstance(b.data_to_send()[-1], Close)


def test_bad_hellos_are_refused() -> None:
    cases = [
        (Hello("x", "node", "mem://x", PROTOCOL + 1), B, "protocol"),
        (Hello("b", "node", "mem://b2", PROTOCOL), B, "own name"),
        (C, C, "client"),
    ]
    for peer_hello, local, reason in cases:
        s = Session(local, now=0)
        s.data_to_send()
        assert s.receive([peer_hello], now=0) == []
        assert s.state is State.CLOSED
        assert reason in (s.close_reason or ""), (reason, s.close_reason)
        assert s.refused
    refusing = Session(B, now=0, accept_clients=False)
    refusing.receive([C], now=0)
    assert refusing.state is State.CLOSED
    assert refusing.refused


def test_refused_is_a_failed_handshake_only() -> None:
    # Either end refusing a proof, or the handshake timing out, is a refusal.
    secret = Credentials(secrets=["0123456789abcdef-one"])
    other = Credentials(secrets=["0123456789abcdef-two"])
    a = Session(Hello("a", "node", "mem://a", PROTOCOL, nonce=b"n" * 16), now=0, credentials=secret)
    b = Session(Hello("b", "node", "mem://b", PROTOCOL, nonce=b"m" * 16), now=0, credentials=other)
    exchange(a, b, 0)  # the Hellos
    exchange(a, b, 0)  # the proofs: each refuses the other's
    assert a.closed
    assert a.refused
    assert "authentication failed" in (a.close_reason or "")
    slow = Session(B, now=0)
    slow.tick(now=6)
    assert slow.closed
    assert slow.refused
    told = Session(B, now=0)
    told.receive([Close("authentication failed: wrong proof")], now=0)
    assert told.refused  # the peer refused this end
    # Once open, neither a fault, nor a close, nor silence is a refusal.
    for fault in ([A], [Close("bye")]):
        _, b = opened()
        b.receive(fault, now=1)
        assert b.closed
        assert not b.refused
    _, b = opened()
    b.tick(now=60)
    assert b.closed
    assert not b.refused


def test_a_second_hello_closes() -> None:
    _, b = opened()
    b.receive([A], now=1)
    assert b.state is State.CLOSED


def test_pings_on_an_idle_link_and_pongs_back() -> None:
    a, b = opened()
    assert a.tick(0.5) == 1.0  # the next ping is due at 1.0
    a.tick(1.0)
    ping = a.data_to_send(1.0)
    assert ping == [Ping(1)]
    b.receive(ping, now=1.0)
    assert b.data_to_send(1.0) == [Pong(1)]


def test_silence_closes_the_link() -> None:
    a, b = opened()
    for t in (1.0, 2.0, 3.0, 4.0):
        a.tick(t)
        b.receive(a.data_to_send(t), now=t)  # a speaks; b never answers a
    assert a.tick(4.9) is not None
    assert a.tick(5.0) is None
    assert a.state is State.CLOSED
    assert "silent" in (a.close_reason or "")


def test_a_frame_still_being_read_is_no_silence() -> None:
    a, _ = opened()
    a.heard(4.0)  # at 4 s, a frame of b's was still being read: what b sent waits
    assert a.tick(8.9) is not None
    assert a.state is State.OPEN
    a.heard(1.0)  # never back in time
    assert a.tick(9.0) is None
    assert a.state is State.CLOSED


def test_a_streamed_run_is_made_a_few_messages_a_frame_after_the_rest() -> None:
    a, _ = opened()
    made: list[int] = []

    def pings() -> Iterator[Ping]:
        for i in range(10):
            made.append(i)
            yield Ping(i)

    a.queue(Pong(0))
    a.queue(Streamed(pings()))
    assert made == []  # nothing made until the link sends
    assert a.data_to_send(1.0) == [Pong(0), *(Ping(i) for i in range(STREAMED_PER_FRAME))]
    a.queue(Pong(1))  # queued later: goes out before the rest of the run
    frame = a.data_to_send(1.0)
    assert frame[0] == Pong(1)
    assert a.streaming
    while a.streaming:
        frame += a.data_to_send(1.0)
    assert [p.seq for p in frame if isinstance(p, Ping)] == list(range(STREAMED_PER_FRAME, 10))
    a.queue(Streamed(pings()))
    a.close("bye")  # the Close is the last message: the run is dropped
    assert a.data_to_send(2.0) == [Close("bye")]
    assert not a.streaming


def test_traffic_keeps_it_alive() -> None:
    a, b = opened()
    for t in range(1, 20):
        a.tick(t)
        b.tick(t)
        exchange(a, b, float(t))
    assert a.state is b.state is State.OPEN


def test_close_is_the_last_message_and_the_peer_learns_why() -> None:
    a, b = opened()
    a.send([DirectoryStep2("db", b"", ())])
    a.close("shutting down")
    a.send([DirectoryStep2("db", b"", ())])  # ignored: closed
    out = a.data_to_send()
    assert isinstance(out[-1], Close)
    assert len(out) == 2
    b.receive(out, now=0.1)
    assert b.state is State.CLOSED
    assert b.close_reason == "closed by peer: shutting down"


def test_nothing_after_a_close_reaches_the_node() -> None:
    _, b = opened()
    assert b.receive([Close("bye"), DirectoryStep2("db", b"", ())], now=1) == []
    assert b.state is State.CLOSED
