"""One link's protocol state: handshake, heartbeats, closing (sans-IO).

Theory of operation
-------------------
A link carries frames both ways. The session takes the messages of each frame that
arrived (``receive``) and the current time (``tick``), and says what to send
(``data_to_send``), what to hand to the node (``receive``'s return value) and when to
be called again (``tick``'s deadline). It never waits and never reads a clock.

States, and what moves between them::

    OPENING --Hello, valid--> PROVING --Proof, valid--> OPEN --Close in or out--> CLOSED
       |                         |                        |
       +--bad Hello or Proof, Close, handshake timeout ---+--silence past timeout--> CLOSED

Both ends send ``Hello`` (with a fresh nonce) as soon as the link opens, and a
``Proof`` once the peer's ``Hello`` arrived (``net/auth.py``: an HMAC over both
nonces, never a secret). Until the peer's proof is verified nothing else is accepted
(anything else first is a protocol error), and a handshake not done within
``handshake_timeout`` seconds closes the link. Once open, a ``Ping`` goes out every
``heartbeat`` seconds without other traffic; any message from the peer counts as a
sign of life, and ``timeout`` seconds without one close the link (the peer is
suspected; membership decides what follows).

A large answer (a whole directory, the values held) is queued as ``Streamed``: its
messages are made only as the link sends them, ``STREAMED_PER_FRAME`` a frame after
whatever else is queued, so that making it never holds the node for long and other
traffic goes out between its frames.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

from ..errors import ProtocolError
from .auth import Credentials, Grant
from .codec import PROTOCOL
from .messages import Close, Hello, Message, Ping, Pong, Proof

__all__ = ["STREAMED_PER_FRAME", "Session", "State", "Streamed"]

#: Messages of a ``Streamed`` run made and sent in one frame at most.
STREAMED_PER_FRAME = 4


@dataclass(frozen=True, slots=True)
class Streamed:
    """Messages for a peer made only as its link sends them, a few a frame, after
    what was queued before (what is queued later may go out between them)."""

    messages: Iterator[Message]
    per_frame: int = STREAMED_PER_FRAME  # of these messages in one frame at most


class State(Enum):
    OPENING = "opening"
    PROVING = "proving"
    OPEN = "open"
    CLOSED = "closed"


#: Messages a session handles itself (besides the first, Hello).
_LINK_LEVEL = frozenset({Hello, Proof, Close, Ping, Pong})


class Session:
    """The protocol state of one link.

    Example::

        session = Session(Hello("n1", "node", "ws://127.0.0.1:7400", 1), now=0.0)
        frame_out = session.data_to_send()            # [Hello(...)]
        for_node = session.receive(decoded_messages, now=0.1)
        deadline = session.tick(now=0.2)              # call tick again by then
    """

    def __init__(
        self,
        local: Hello,
        *,
        now: float,
        heartbeat: float = 1.0,
        timeout: float = 5.0,
        accept_clients: bool = True,
        credentials: Credentials | None = None,
        handshake_timeout: float = 5.0,
    ) -> None:
        self.local = local  # what this end says about itself
        self.peer: Hello | None = None  # what the peer said, once open
        self.state = State.OPENING
        self.close_reason: str | None = None  # why it closed, once closed
        # The handshake failed: either end refused the other's Hello or proof, or it
        # timed out (a link that closes once open, or is lost, is not refused).
        self.refused = False
        self.heartbeat = heartbeat  # seconds between pings on an idle link
        self.timeout = timeout  # seconds of silence that close the link
        self.accept_clients = accept_clients  # False on a client: clients never link clients
        self._heard = now  # when the peer last said anything
        self._sent = now  # when this end last sent anything
        self._seq = 0  # the last ping's sequence number
        self.credentials = credentials or Credentials()
        self.handshake_timeout = handshake_timeout
        self.grant: Grant | None = None  # what the peer may do, once it proved itself
        self._handshake_deadline = now + handshake_timeout
        self._out: list[Message] = [local]
        self._streams: deque[Streamed] = deque()
        self._opened = False  # the handshake completed and nobody took it yet

    def take_opened(self) -> bool:
        """Whether the handshake completed since this was last asked: the session's
        one event, True once, so that whoever drives it acts on the opening once."""
        opened, self._opened = self._opened, False
        return opened

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def pending(self) -> int:
        """Messages (and ``Streamed`` runs) queued and not yet taken by
        ``data_to_send``."""
        return len(self._out) + len(self._streams)

    @property
    def streaming(self) -> bool:
        """Whether a ``Streamed`` run has messages yet to send."""
        return bool(self._streams)

    def send(self, messages: list[Message]) -> None:
        """Queue messages for the peer (ignored once closed)."""
        if self.state is not State.CLOSED:
            self._out.extend(messages)

    def queue(self, message: Message | Streamed) -> int:
        """Queue one message, or a ``Streamed`` run, for the peer (ignored once
        closed); return how many are queued now (``pending``)."""
        if self.state is not State.CLOSED:
            if isinstance(message, Streamed):
                self._streams.append(message)
            else:
                self._out.append(message)
        return len(self._out) + len(self._streams)

    def data_to_send(self, now: float | None = None) -> list[Message]:
        """Take the queued messages (one frame's worth), then the next few of the
        ``Streamed`` runs."""
        out, self._out = self._out, []
        streams = self._streams
        room = streams[0].per_frame if streams else 0
        while streams and room:
            message = next(streams[0].messages, None)
            if message is None:
                streams.popleft()
                if streams:  # the next run, within its own bound too
                    room = min(room, streams[0].per_frame)
            else:
                out.append(message)
                room -= 1
        if out and now is not None:
            self._sent = now
        return out

    def heard(self, now: float) -> None:
        """The peer is still being heard at ``now``: a long frame of its is being read
        (what it sent since waits behind it), so its silence counts from here."""
        self._heard = max(self._heard, now)

    def close(self, reason: str) -> None:
        """Close from this end: a ``Close`` with ``reason`` is the last message."""
        if self.state is not State.CLOSED:
            self._out.append(Close(reason))
            self._closed(reason)

    def _closed(self, reason: str) -> None:
        self._streams.clear()  # nothing after a Close
        self.state = State.CLOSED
        self.close_reason = reason

    def receive(self, messages: list[Message], now: float) -> list[Message]:
        """Take the messages of one frame from the peer; return those for the node.

        A protocol fault closes the session (``close_reason`` says why) and
        drops the rest of the frame.
        """
        if self.state is State.CLOSED:
            return []
        self._heard = now
        out: list[Message] = []
        opened = self.state is State.OPEN
        for message in messages:
            if opened and message.__class__ not in _LINK_LEVEL:
                out.append(message)  # the common case: data for the node
                continue
            try:
                consumed = self._handle(message)
            except ProtocolError as exc:
                self.refused = self.state is not State.OPEN
                self.close(str(exc))
                return out
            if self.closed:  # a Close from the peer ends the frame
                return out
            if not consumed:
                out.append(message)
        return out

    def _handle(self, message: Message) -> bool:
        """Handle a link-level message; True when it is consumed here."""
        if isinstance(message, Close):
            self.refused = self.state is not State.OPEN  # the peer refused this end
            self._closed(f"closed by peer: {message.reason}")
            return True
        if self.state is State.OPENING:
            if not isinstance(message, Hello):
                raise ProtocolError(f"expected Hello, got {type(message).__name__}")
            self._hello(message)
            return True
        if isinstance(message, Hello):
            raise ProtocolError("a second Hello")
        if self.state is State.PROVING:
            if not isinstance(message, Proof):
                kind = type(message).__name__
                raise ProtocolError(f"unauthenticated: expected Proof, got {kind}")
            self._proof(message)
            return True
        if isinstance(message, Proof):
            raise ProtocolError("a second Proof")
        if isinstance(message, Ping):
            self._out.append(Pong(message.seq))
            return True
        return isinstance(message, Pong)

    def _hello(self, hello: Hello) -> None:
        if hello.protocol != PROTOCOL:
            raise ProtocolError(f"protocol {hello.protocol} is not {PROTOCOL}")
        if hello.role == "client" and (self.local.role == "client" or not self.accept_clients):
            raise ProtocolError("a client cannot link to a client")
        if hello.name == self.local.name:
            raise ProtocolError(f"the peer has this node's own name {hello.name!r}")
        if len(hello.nonce) < 16 and self.credentials.enabled:
            raise ProtocolError("a Hello without a nonce cannot be authenticated")
        self.peer = hello
        self.state = State.PROVING
        mac = self.credentials.proof(
            role=self.local.role,
            name=self.local.name,
            own_nonce=self.local.nonce,
            peer_nonce=hello.nonce,
            peer_token=hello.token,
        )
        self._out.append(Proof(mac))

    def _proof(self, proof: Proof) -> None:
        assert self.peer is not None
        self.grant = self.credentials.verify(
            local_role=self.local.role,
            peer_role=self.peer.role,
            peer_name=self.peer.name,
            peer_token=self.peer.token,
            peer_nonce=self.peer.nonce,
            own_nonce=self.local.nonce,
            proof=proof.mac,
            peer_client_id=self.peer.client_id,
        )
        self.state = State.OPEN
        self._opened = True

    def tick(self, now: float) -> float | None:
        """Act on the time: ping an idle link, close a silent one.

        Returns:
            When to call ``tick`` again (None once closed).
        """
        if self.state is State.CLOSED:
            return None
        if self.state is not State.OPEN and now >= self._handshake_deadline:
            self.refused = True
            self.close(f"handshake not completed within {self.handshake_timeout:g}s")
            return None
        silent_until = self._heard + self.timeout
        if self.state is not State.OPEN:
            silent_until = min(silent_until, self._handshake_deadline)
        if now >= silent_until:
            self.close(f"peer silent for {now - self._heard:.1f}s")
            return None
        if self.state is State.OPEN and now >= self._sent + self.heartbeat:
            self._seq += 1
            self._out.append(Ping(self._seq))
            self._sent = now
        return min(silent_until, self._sent + self.heartbeat)
