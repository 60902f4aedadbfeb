"""The member table of one node (sans-IO): which nodes exist and how they are doing.

Theory of operation
-------------------
Members are nodes (clients never appear). A member is ``alive`` while a link to it is
open. When its link closes (silence past the session timeout, or an error) the node
keeps dialing it with backoff, and asks the others, as SWIM's indirect probes do:
each node tells its node peers which nodes it has a link to (``Reach``, sent when
that changes), and a member that a node linked here reaches is ``indirect``, alive
though not linked here. Only a member that no node linked here reaches is
``suspect``; one suspect (or learned and never linked) for longer than
``dead_after`` is removed: it has left. So a link that fails between two nodes
while both reach a third makes neither call the other down.

Suspicion stays with the node that has it: it is never sent, so there is nothing
for the suspected node to refute, and no incarnation numbers are needed. A node
that closes says so (``Leave``) and is removed at once, as one an operator removes.
Every change of state is one line of ``TRANSITIONS``. Member lists travel in
``Members`` messages at link open; a member learned that way is dialed. The full mesh
is one policy over this table; a partial view (HyParView) would choose fewer links
to keep.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["TRANSITIONS", "Member", "MemberChange", "MemberState", "Membership"]


class MemberState(StrEnum):
    """How this node sees a member (a str: it compares and prints as its value).
    How it changes is ``TRANSITIONS``."""

    SELF = "self"  # this node
    ALIVE = "alive"  # a link to it is open
    SUSPECT = "suspect"  # no link here, and no node linked here reaches it; dialed again
    INDIRECT = "indirect"  # no link here, but a node linked here has one; dialed again
    JOINING = "joining"  # known from a peer's list, never linked yet

    def __repr__(self) -> str:
        return repr(self.value)


class MemberChange(StrEnum):
    """What happens to a member, as the table sees it."""

    LEARNED = "learned"  # a peer listed it (``Members``)
    LINKED = "linked"  # a link to it opened
    UNLINKED = "unlinked"  # its link closed
    TIMED_OUT = "timed_out"  # suspect or joining for ``dead_after``
    REACHED = "reached"  # a node linked here says it has a link to it (``Reach``)
    UNREACHED = "unreached"  # no node linked here says so any more
    LEFT = "left"  # it said it leaves (``Leave``), or an operator removed it


_S, _C = MemberState, MemberChange
#: Every transition of a member: (its state, or None when not a member; the change)
#: -> its new state, or None when it is no longer a member. A pair not listed
#: changes nothing.
TRANSITIONS: dict[tuple[MemberState | None, MemberChange], MemberState | None] = {
    (None, _C.LEARNED): _S.JOINING,
    (_S.JOINING, _C.LEARNED): _S.JOINING,  # a peer knows its address better: dial that
    (None, _C.LINKED): _S.ALIVE,
    (_S.JOINING, _C.LINKED): _S.ALIVE,
    (_S.SUSPECT, _C.LINKED): _S.ALIVE,
    (_S.ALIVE, _C.LINKED): _S.ALIVE,  # a new link replaced the old (its address may change)
    (_S.ALIVE, _C.UNLINKED): _S.SUSPECT,
    (_S.JOINING, _C.UNLINKED): _S.SUSPECT,  # a link that closed before it counted
    (_S.JOINING, _C.TIMED_OUT): None,
    (_S.SUSPECT, _C.TIMED_OUT): None,
    (_S.SUSPECT, _C.REACHED): _S.INDIRECT,
    (_S.INDIRECT, _C.UNREACHED): _S.SUSPECT,
    (_S.INDIRECT, _C.LINKED): _S.ALIVE,
    (_S.JOINING, _C.LEFT): None,
    (_S.ALIVE, _C.LEFT): None,
    (_S.SUSPECT, _C.LEFT): None,
    (_S.INDIRECT, _C.LEFT): None,
}
#: States timed by ``dead_after``: how long a member may stay in them.
_TIMED = frozenset({_S.JOINING, _S.SUSPECT})


@dataclass(frozen=True, slots=True)
class Member:
    """A node of the cluster as this node sees it."""

    name: str  # the node's name
    address: str | None  # where it accepts links
    role: str  # "node" (clients are never members)
    state: MemberState


class Membership:
    """The member table: sans-IO, time passed in."""

    def __init__(
        self, name: str, address: str | None, *, dead_after: float = 600.0, dials: bool = True
    ) -> None:
        self.name = name  # this node's name
        self.address = address  # this node's address (None: not listening)
        self.dead_after = dead_after  # seconds suspect before a member is removed
        #: Whether this node dials the members it learns (a client does not: those it
        #: learns are gateways to move to, never linked, and never expire).
        self.dials = dials
        self._members: dict[str, Member] = {}
        self._suspect_since: dict[str, float] = {}
        #: What each node linked here reaches (its last ``Reach``), by its name.
        self._reports: dict[str, frozenset[str]] = {}

    def members(self) -> list[Member]:
        """Every member, this node first, then by name."""
        me = Member(self.name, self.address, "node", MemberState.SELF)
        return [me, *sorted(self._members.values(), key=lambda m: m.name)]

    def get(self, name: str) -> Member | None:
        return self._members.get(name)

    def count_in(self, states: frozenset[MemberState]) -> tuple[int, int]:
        """How many members are in ``states``, this node counted as one (it is
        ``SELF``), and how many members there are (no list made: a write that
        creates a key asks)."""
        others = self._members.values()
        mine = 1 if MemberState.SELF in states else 0
        return mine + sum(1 for m in others if m.state in states), 1 + len(others)

    def _move(
        self,
        name: str,
        change: MemberChange,
        now: float,
        address: str | None = None,
        *,
        readdress: bool = False,
    ) -> bool:
        """Apply ``change`` to member ``name`` by ``TRANSITIONS``; return whether
        anything changed. With ``readdress``, ``address`` is the member's now (else
        it stays as it was)."""
        member = self._members.get(name)
        before = member.state if member is not None else None
        key = (before, change)
        if key not in TRANSITIONS:
            return False
        after = TRANSITIONS[key]
        if after is None:
            del self._members[name]
            self._suspect_since.pop(name, None)
            return True
        if not readdress and member is not None:
            address = member.address
        self._members[name] = Member(name, address, "node", after)
        if after in _TIMED and (after is not _S.JOINING or self.dials):
            if before is not after:
                self._suspect_since[name] = now
        else:
            self._suspect_since.pop(name, None)
        return True

    def linked(self, name: str, address: str | None) -> bool:
        """A link to node ``name`` opened; return whether it is a new member."""
        new = name not in self._members
        self._move(name, MemberChange.LINKED, 0.0, address, readdress=True)
        return new

    def unlinked(self, name: str, now: float) -> list[tuple[str, MemberState]]:
        """The link to ``name`` closed: it is suspect, or indirect if a node linked
        here reaches it; what it reported reaching counts no more. Return the members
        whose state changed by that, and their states now (``name`` first)."""
        self._move(name, MemberChange.UNLINKED, now)
        self._reports.pop(name, None)
        moved = self._settle(now)
        member = self._members.get(name)
        if member is not None and all(n != name for n, _ in moved):
            moved.insert(0, (name, member.state))
        return moved

    def reached(
        self, reporter: str, linked: Iterable[str], now: float
    ) -> list[tuple[str, MemberState]]:
        """Node ``reporter``, linked here, has links to ``linked`` now (``Reach``).
        Return the members whose state changed by that, and their states now."""
        self._reports[reporter] = frozenset(linked)
        return self._settle(now)

    def _reached(self, name: str) -> bool:
        return any(name in linked for linked in self._reports.values())

    def _settle(self, now: float) -> list[tuple[str, MemberState]]:
        """Suspect and indirect members as the reports say: REACHED, UNREACHED."""
        moved = []
        for name, member in list(self._members.items()):
            if member.state is MemberState.SUSPECT and self._reached(name):
                change = MemberChange.REACHED
            elif member.state is MemberState.INDIRECT and not self._reached(name):
                change = MemberChange.UNREACHED
            else:
                continue
            self._move(name, change, now)
            moved.append((name, self._members[name].state))
        return moved

    def learn(self, pairs: tuple[tuple[str, str], ...], now: float) -> list[tuple[str, str]]:
        """Members a peer listed; return the new ones, to dial. One never linked
        within ``dead_after`` is removed as a suspect would be (when ``dials``)."""
        out = []
        for name, address in pairs:
            known = self._members.get(name)
            if known is not None and known.address == address:
                continue  # nothing new
            if name != self.name and self._move(
                name, MemberChange.LEARNED, now, address, readdress=True
            ):
                out.append((name, address))
        return out

    def listing(self) -> tuple[tuple[str, str], ...]:
        """This node and the members it knows an address of, for a ``Members`` message:
        those it has linked to (a member it only heard of, or remembered from its last
        run, is not passed on: one removed meanwhile would come back everywhere)."""
        pairs = [
            (m.name, m.address)
            for m in self._members.values()
            if m.address is not None and m.state is not MemberState.JOINING
        ]
        if self.address is not None:
            pairs.append((self.name, self.address))
        return tuple(sorted(pairs))

    def remove(self, name: str, now: float = 0.0) -> list[tuple[str, MemberState]] | None:
        """Drop member ``name`` (it left, or an operator removed it): None if it was
        no member, else the members whose state changed by it (what it reached
        counts no more), and their states now."""
        self._reports.pop(name, None)
        if not self._move(name, MemberChange.LEFT, now):
            return None
        return self._settle(now)

    def next_expiry(self) -> float | None:
        """When the next member would be removed by ``expire`` (None: none would)."""
        if not self._suspect_since:
            return None
        return min(self._suspect_since.values()) + self.dead_after

    def expire(self, now: float) -> list[str]:
        """Remove members suspect for longer than ``dead_after``; return their names."""
        gone = [n for n, since in self._suspect_since.items() if now - since >= self.dead_after]
        for name in gone:
            self._move(name, MemberChange.TIMED_OUT, now)
        return gone
