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
may each deliver an event: duplicates. An event is given up (counted in
``given_up``) after ``max_attempts`` tries, and the oldest when more than
``max_pending`` wait: nothing else is lost.
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
#: Tries of one event at most; then it is given up (a dead letter, counted).
MAX_ATTEMPTS = 10


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

    def __init__(
        self, node: str, *, max_pending: int = MAX_PENDING, max_attempts: int = MAX_ATTEMPTS
    ) -> None:
        self.node = node
        self.max_pending = max_pending
        self.max_attempts = max_attempts
        self.local: dict[str, ConsumerInfo] = {}  # this node's, by id
        self.remote: dict[str, tuple[ConsumerInfo, ...]] = {}  # each node peer's
        self.pending: OrderedDict[tuple[str, str], _Pending] = OrderedDict()
        self.acked: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.given_up = 0  # events dropped: past ``max_pending`` or ``max_attempts``
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
        old = self.local.get(consumer.id)
        if old is not None:
            self._delete(old)
        self.local[consumer.id] = consumer
        self._insert(consumer)
        return self._reassign(now, set(), {(consumer.name, consumer.group)})

    def remove(self, consumer_id: str, now: float) -> list[Delivery]:
        """A consumer of this node's closed: its pending events go to the next."""
        consumer = self.local.pop(consumer_id, None)
        if consumer is None:
            return []
        self._delete(consumer)
        return self._reassign(now, {consumer_id}, set())

    def peer(self, node: str, consumers: Iterable[ConsumerInfo], now: float) -> list[Delivery]:
        """A node peer's consumers now (none: it went): those of its own only (their
        ids start with its name), each once."""
        mine = f"{node}/"
        table = tuple({c.id: c for c in consumers if c.id.startswith(mine)}.values())
        old = self.remote.pop(node, ())
        if not old and not table:
            return []
        for consumer in old:
            self._delete(consumer)
        if table:
            self.remote[node] = table
        for consumer in table:
            self._insert(consumer)
        gone = {c.id for c in old} - {c.id for c in table}
        return self._reassign(now, gone, {(c.name, c.group) for c in table})

    def _insert(self, consumer: ConsumerInfo) -> None:
        self._by_name.setdefault(consumer.name, {}).setdefault(consumer.group, []).append(consumer)
        self.names = frozenset(self._by_name)

    def _delete(self, consumer: ConsumerInfo) -> None:
        groups = self._by_name[consumer.name]
        consumers = groups[consumer.group]
        consumers.remove(consumer)
        if not consumers:
            del groups[consumer.group]
            if not groups:
                del self._by_name[consumer.name]
                self.names = frozenset(self._by_name)

    def _reassign(self, now: float, gone: set[str], joined: set[tuple[str, str]]) -> list[Delivery]:
        """Pending events whose consumer is ``gone`` go to their next attempt; those
        that waited for a consumer of a group that ``joined`` go to it."""
        out = []
        for pending in list(self.pending.values()):
            if pending.owner is None:
                if (pending.event.name, pending.group) not in joined:
                    continue
            elif pending.owner in gone:
                pending.attempt += 1
            else:
                continue
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
                self._gave_up(lost_group, lost_id, f"{self.max_pending} unacknowledged")
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
        if pending.attempt >= self.max_attempts:  # a dead letter: not started again
            self.acked_by(pending.group, ident)
            self._gave_up(pending.group, ident, f"after {pending.attempt} attempts")
            return None
        if pending.attempt:
            owner = sorted(live, key=lambda c: _rank(ident, c.id))[pending.attempt % len(live)]
        else:  # the first: one pass, no sort
            owner = min(live, key=lambda c: _rank(ident, c.id))
        pending.owner = owner.id
        pending.deadline = now + max(owner.ack_timeout, m.MIN_ACK_TIMEOUT)
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

    def _gave_up(self, group: str, ident: str, why: str) -> None:
        self.given_up += 1
        if self.given_up % 1000 == 1:  # the first, and one in a thousand after
            log.warning(
                "%s: gave up event %s of group %s (%s; %d given up in all)",
                self.node,
                ident,
                group,
                why,
                self.given_up,
            )

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
        (None: it was not pending here, nothing to say and nothing recorded, so
        that an id acknowledged before it is emitted loses nothing)."""
        if (group, ident) not in self.pending:
            return None
        self.acked_by(group, ident)
        return m.GroupAck(group, ident)

    def acked_by(self, group: str, ident: str) -> None:
        """A peer says ``group`` has handled event ``ident``: no consumer gets it
        again, should it come (again) later."""
        key = (group, ident)
        self.pending.pop(key, None)
        self.acked[key] = None
        if len(self.acked) > ACKED_KEPT:
            self.acked.popitem(last=False)


def _rank(ident: str, consumer: str) -> bytes:
    """A consumer's place in an event's order (rendezvous hashing)."""
    return hashlib.blake2b(f"{ident}\0{consumer}".encode(), digest_size=8).digest()
