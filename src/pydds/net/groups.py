"""Consumer groups of custom events, without IO: which consumer gets each event, and
which gets it next when it is not acknowledged in time.

Theory of operation
-------------------
A consumer is an event name, a group, an id unique in the cluster and an ack timeout
(``ConsumerInfo``). A node knows its own consumers and, from each node peer's
``Consumers`` message (its whole table, sent when it changes and as a link opens),
that peer's. Every node receives every custom event, so every node can decide alike
who gets one: the consumers of the group for the event's name, ranked by a hash of
the event id and the consumer id (rendezvous hashing), take it in turn, the first at
attempt 0, the next at attempt 1, and so on around. The node of the consumer whose
turn it is delivers it (``Delivery``).

Every node keeps each event a group has not acknowledged (``pending``) until an ack
comes (``GroupAck``, which the acknowledging node sends every node). When the ack
timeout of the consumer whose turn it is passes, the event goes to the next attempt.
A consumer that goes (closed, or its node unreachable) hands its pending events to
their next attempt at once; events that came while a group had no consumer wait for
its first. Nodes that see different consumers (a partition, a consumer just made)
may each deliver an event: duplicates, never losses. The pending events are bounded
(``max_pending``): past it the oldest is given up, counted in ``given_up``.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from . import messages as m

__all__ = ["MAX_PENDING", "ConsumerInfo", "Delivery", "Groups"]

log = logging.getLogger("pydds.groups")

#: Events a node keeps unacknowledged, all groups together, by default.
MAX_PENDING = 100_000
#: Acknowledged (group, event id) remembered, so that an event sent again after a
#: partition is not delivered again.
ACKED_KEPT = 100_000


class ConsumerInfo(NamedTuple):
    """One consumer of a group (``Consumers`` carries these)."""

    name: str  # the custom event name it consumes
    group: str
    id: str  # unique in the cluster: ``node/n``
    ack_timeout: float  # seconds it has to acknowledge an event


@dataclass(frozen=True, slots=True)
class Delivery:
    """Give ``event`` to the local consumer ``consumer`` (its ``attempt``-th try)."""

    consumer: str
    event: m.Custom
    attempt: int


@dataclass(slots=True)
class _Pending:
    event: m.Custom
    group: str
    attempt: int
    owner: str | None  # the consumer whose turn it is (None: the group has none)
    deadline: float


class Groups:
    """The consumer groups as this node sees them (see the module).

    Example::

        groups = Groups("n1")
        groups.add(ConsumerInfo("job", "billing", "n1/1", 30.0))
        groups.event(m.Custom("n1:x:1", "job", b"\\x01", "n1"), now=0.0)  # [Delivery]
        groups.ack("billing", "n1:x:1")    # GroupAck to send every node
    """

    def __init__(self, node: str, *, max_pending: int = MAX_PENDING) -> None:
        self.node = node
        self.max_pending = max_pending
        self.local: dict[str, ConsumerInfo] = {}  # this node's, by id
        self.remote: dict[str, tuple[ConsumerInfo, ...]] = {}  # each node peer's
        self.pending: OrderedDict[tuple[str, str], _Pending] = OrderedDict()
        self.acked: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.given_up = 0  # pending events dropped past ``max_pending``
        self.delivered = 0  # deliveries made here
        self.redelivered = 0  # of them, attempts after the first
        self._timeouts: list[tuple[float, str, str, int]] = []  # (deadline, group, id, attempt)
        self._by_name: dict[str, dict[str, list[ConsumerInfo]]] = {}
        self.names: frozenset[str] = frozenset()  # the event names some group consumes

    @property
    def due(self) -> float:
        """When ``tick`` must run next (inf: nothing waits)."""
        return self._timeouts[0][0] if self._timeouts else float("inf")

    def snapshot(self) -> dict[str, int]:
        """Figures for ``/v1/stats``: consumers seen (this node's and its peers'),
        events pending, deliveries made here, of them again, and given up."""
        return {
            "consumers": len(self.local) + sum(len(t) for t in self.remote.values()),
            "pending": len(self.pending),
            "delivered": self.delivered,
            "redelivered": self.redelivered,
            "given_up": self.given_up,
        }

    def table(self) -> tuple[ConsumerInfo, ...]:
        """This node's consumers, as its ``Consumers`` message says."""
        return tuple(self.local.values())

    # -- who consumes ------------------------------------------------------------------

    def add(self, consumer: ConsumerInfo, now: float = 0.0) -> list[Delivery]:
        """A consumer of this node's; deliveries of what waited for its group."""
        self.local[consumer.id] = consumer
        return self._changed(now)

    def remove(self, consumer_id: str, now: float) -> list[Delivery]:
        """A consumer of this node's closed: its pending events go to the next."""
        self.local.pop(consumer_id, None)
        return self._changed(now)

    def peer(self, node: str, consumers: Iterable[ConsumerInfo], now: float) -> list[Delivery]:
        """A node peer's consumers now (none: it went)."""
        table = tuple(c for c in consumers if c.id not in self.local)
        if table:
            self.remote[node] = table
        elif self.remote.pop(node, None) is None:
            return []
        return self._changed(now)

    def _changed(self, now: float) -> list[Delivery]:
        by_name: dict[str, dict[str, list[ConsumerInfo]]] = {}
        for consumer in (*self.local.values(), *(c for t in self.remote.values() for c in t)):
            by_name.setdefault(consumer.name, {}).setdefault(consumer.group, []).append(consumer)
        self._by_name = by_name
        self.names = frozenset(by_name)
        out = []
        for pending in self.pending.values():
            live = self._consumers(pending.event.name, pending.group)
            if pending.owner is None or pending.owner not in {c.id for c in live}:
                if pending.owner is not None:
                    pending.attempt += 1
                delivery = self._turn(pending, now)
                if delivery is not None:
                    out.append(delivery)
        return out

    def _consumers(self, name: str, group: str) -> list[ConsumerInfo]:
        return self._by_name.get(name, {}).get(group, [])

    # -- events ------------------------------------------------------------------------

    def event(self, event: m.Custom, now: float) -> list[Delivery]:
        """A custom event emitted here or received: what this node delivers of it."""
        groups = self._by_name.get(event.name)
        if not groups:
            return []
        out = []
        for group in groups:
            key = (group, event.id)
            if key in self.pending or key in self.acked:
                continue  # sent again: it is in hand
            pending = self.pending[key] = _Pending(event, group, 0, None, now)
            if len(self.pending) > self.max_pending:
                (lost_group, lost_id), _ = self.pending.popitem(last=False)
                self.given_up += 1
                if self.given_up % 1000 == 1:  # the first, and one in a thousand after
                    log.warning(
                        "%s: %d events unacknowledged: gave up %s of group %s (%d in all)",
                        self.node,
                        self.max_pending,
                        lost_id,
                        lost_group,
                        self.given_up,
                    )
            delivery = self._turn(pending, now)
            if delivery is not None:
                out.append(delivery)
        return out

    def _turn(self, pending: _Pending, now: float) -> Delivery | None:
        """Give ``pending`` to the consumer whose turn its attempt is; a delivery if
        that consumer is this node's."""
        live = self._consumers(pending.event.name, pending.group)
        if not live:
            pending.owner = None  # waits for the group's first consumer
            return None
        ident = pending.event.id
        ranked = sorted(live, key=lambda c: _rank(ident, c.id))
        owner = ranked[pending.attempt % len(ranked)]
        pending.owner = owner.id
        pending.deadline = now + owner.ack_timeout
        timeouts = self._timeouts
        heapq.heappush(timeouts, (pending.deadline, pending.group, ident, pending.attempt))
        if len(timeouts) > 2 * len(self.pending) + 1024:  # mostly acknowledged: anew
            timeouts[:] = [
                (p.deadline, p.group, p.event.id, p.attempt)
                for p in self.pending.values()
                if p.owner is not None
            ]
            heapq.heapify(timeouts)
        if owner.id not in self.local:
            return None
        self.delivered += 1
        if pending.attempt:
            self.redelivered += 1
        return Delivery(owner.id, pending.event, pending.attempt)

    def tick(self, now: float) -> list[Delivery]:
        """The ack timeouts passed by ``now``: those events go to their next attempt."""
        out = []
        timeouts = self._timeouts
        while timeouts and timeouts[0][0] <= now:
            _, group, ident, attempt = heapq.heappop(timeouts)
            pending = self.pending.get((group, ident))
            if pending is None or pending.attempt != attempt:
                continue  # acknowledged, or moved on since
            pending.attempt += 1
            delivery = self._turn(pending, now)
            if delivery is not None:
                out.append(delivery)
        return out

    # -- acknowledgements --------------------------------------------------------------

    def ack(self, group: str, ident: str) -> m.GroupAck | None:
        """``group`` has handled event ``ident`` here: the message to send every node
        (None: it was not pending here, nothing to say)."""
        if not self.acked_by(group, ident):
            return None
        return m.GroupAck(group, ident)

    def acked_by(self, group: str, ident: str) -> bool:
        """``group`` has handled event ``ident`` (here, or a peer said so); whether it
        was pending here."""
        key = (group, ident)
        was = self.pending.pop(key, None) is not None
        self.acked[key] = None
        if len(self.acked) > ACKED_KEPT:
            self.acked.popitem(last=False)
        return was


def _rank(ident: str, consumer: str) -> bytes:
    """A consumer's place in an event's order (rendezvous hashing)."""
    return hashlib.blake2b(f"{ident}\0{consumer}".encode(), digest_size=8).digest()
