"""The member table (sans-IO): states, learning, listing and expiry, time passed in."""

from __future__ import annotations

import pytest

from pydds.net.membership import TRANSITIONS, Member, MemberChange, Membership, MemberState


def states(table: Membership) -> dict[str, str]:
    return {m.name: m.state for m in table.members()}


def test_a_new_table_lists_only_this_node() -> None:
    table = Membership("a", "mem://a")
    assert table.members() == [Member("a", "mem://a", "node", "self")]
    assert table.listing() == (("a", "mem://a"),)


def test_learning_returns_only_new_members_to_dial() -> None:
    table = Membership("a", "mem://a")
    assert table.learn((("a", "mem://a"), ("b", "mem://b")), 0.0) == [("b", "mem://b")]
    assert table.learn((("b", "mem://b"), ("c", "mem://c")), 0.0) == [("c", "mem://c")]
    assert states(table) == {"a": "self", "b": "joining", "c": "joining"}


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([("linked", 0.0)], "alive"),
        ([("linked", 0.0), ("unlinked", 1.0)], "suspect"),
        ([("linked", 0.0), ("unlinked", 1.0), ("linked", 2.0)], "alive"),
        ([("linked", 0.0), ("unlinked", 1.0), ("expire", 30.9)], "suspect"),
        ([("linked", 0.0), ("unlinked", 1.0), ("expire", 31.0)], None),
        ([("linked", 0.0), ("unlinked", 1.0), ("linked", 20.0), ("expire", 40.0)], "alive"),
    ],
)
def test_member_states(events: list[tuple[str, float]], expected: str | None) -> None:
    table = Membership("a", "mem://a", dead_after=30.0)
    for event, now in events:
        if event == "linked":
            table.linked("b", "mem://b")
        elif event == "unlinked":
            table.unlinked("b", now)
        else:
            table.expire(now)
    member = table.get("b")
    assert (member.state if member else None) == expected


def test_expire_returns_who_left() -> None:
    table = Membership("a", None, dead_after=5.0)
    table.linked("b", "mem://b")
    table.linked("c", "mem://c")
    table.unlinked("b", 0.0)
    table.unlinked("c", 3.0)
    assert table.expire(5.0) == ["b"]
    assert table.expire(8.0) == ["c"]
    assert states(table) == {"a": "self"}
    assert table.listing() == ()  # not listening: this node is not listed


def test_linked_reports_a_new_member_once() -> None:
    table = Membership("a", "mem://a")
    assert table.linked("b", "mem://b") is True
    assert table.linked("b", "mem://b") is False


def test_a_member_learned_and_never_linked_expires() -> None:
    table = Membership("a", "mem://a", dead_after=5.0)
    table.learn((("b", "mem://b"), ("c", "mem://c")), 0.0)
    table.linked("c", "mem://c")
    assert table.expire(4.9) == []
    assert table.expire(5.0) == ["b"]
    assert states(table) == {"a": "self", "c": "alive"}


def test_remove_drops_a_member_at_once() -> None:
    table = Membership("a", "mem://a", dead_after=5.0)
    table.linked("b", "mem://b")
    table.unlinked("b", 0.0)
    assert table.remove("b") == []  # a member, and nobody else moved
    assert table.remove("b") is None  # no member
    assert table.expire(10.0) == []  # no suspicion left behind
    assert states(table) == {"a": "self"}


def test_a_client_keeps_the_members_it_learned() -> None:
    table = Membership("cl", None, dead_after=5.0, dials=False)
    table.learn((("b", "mem://b"),), 0.0)
    assert table.expire(100.0) == []  # gateways to move to, never linked
    assert states(table) == {"cl": "self", "b": "joining"}


def put(table: Membership, state: MemberState | None) -> None:
    """Make ``b`` a member in ``state`` (or no member), at time 0. For ``indirect``,
    node ``c`` (linked here) says it has a link to ``b``."""
    if state is MemberState.JOINING:
        table.learn((("b", "mem://b"),), 0.0)
    elif state is not None:
        table.linked("b", "mem://b")
        if state is MemberState.INDIRECT:
            table.reached("c", ["b"], 0.0)
        if state in (MemberState.SUSPECT, MemberState.INDIRECT):
            table.unlinked("b", 0.0)


def change(table: Membership, what: MemberChange, now: float) -> None:
    if what is MemberChange.LEARNED:
        table.learn((("b", "mem://b"),), now)
    elif what is MemberChange.LINKED:
        table.linked("b", "mem://b")
    elif what is MemberChange.UNLINKED:
        table.unlinked("b", now)
    elif what is MemberChange.TIMED_OUT:
        table.expire(now)
    elif what is MemberChange.REACHED:
        table.reached("c", ["b"], now)
    elif what is MemberChange.UNREACHED:
        table.reached("c", [], now)
    else:
        table.remove("b")


STATES = [None, MemberState.JOINING, MemberState.ALIVE, MemberState.SUSPECT, MemberState.INDIRECT]


@pytest.mark.parametrize("before", STATES)
@pytest.mark.parametrize("what", list(MemberChange))
def test_every_change_of_state_is_a_line_of_the_table(
    before: MemberState | None, what: MemberChange
) -> None:
    """Each (state, change) pair does what its line of TRANSITIONS says (time in plain
    numbers: a time-out is dead_after, 5 s, after the state began); a pair with no
    line changes nothing."""
    table = Membership("a", "mem://a", dead_after=5.0)
    put(table, before)
    change(table, what, 5.0)
    member = table.get("b")
    after = member.state if member is not None else None
    assert after == TRANSITIONS.get((before, what), before)


def test_a_member_linked_again_is_timed_from_its_new_suspicion() -> None:
    table = Membership("a", "mem://a", dead_after=5.0)
    table.linked("b", "mem://b")
    table.unlinked("b", 0.0)
    table.linked("b", "mem://b2")  # its new address
    table.unlinked("b", 4.0)
    assert table.expire(8.9) == []
    assert table.expire(9.0) == ["b"]


def test_a_member_another_node_reaches_is_indirect_and_never_times_out() -> None:
    table = Membership("a", "mem://a", dead_after=5.0)
    for name in ("b", "c"):
        table.linked(name, f"mem://{name}")
    table.reached("c", ["a", "b"], 0.0)
    assert table.unlinked("b", 1.0) == [("b", MemberState.INDIRECT)]  # c still reaches b
    assert table.expire(100.0) == []  # never suspect: dead_after does not run
    assert table.reached("c", ["a"], 100.0) == [("b", MemberState.SUSPECT)]  # c lost b
    assert table.expire(104.0) == []
    assert table.expire(105.0) == ["b"]  # suspect for dead_after, from then
    assert states(table) == {"a": "self", "c": "alive"}


def b_through_c() -> Membership:
    """a, linked to b and c, its link to b closed at time 0: b is indirect (c has a
    link to it)."""
    table = Membership("a", "mem://a", dead_after=5.0)
    for name in ("b", "c"):
        table.linked(name, f"mem://{name}")
    table.reached("c", ["b"], 0.0)
    table.unlinked("b", 0.0)
    assert states(table)["b"] == "indirect"
    return table


def test_what_a_node_reached_counts_no_more_once_its_link_closes() -> None:
    table = b_through_c()
    moved = table.unlinked("c", 1.0)  # c's report goes with its link
    assert sorted(moved) == [("b", MemberState.SUSPECT), ("c", MemberState.SUSPECT)]
    table.linked("b", "mem://b")
    assert states(table)["b"] == "alive"


def test_a_member_only_a_departed_node_reached_is_suspect_and_timed() -> None:
    table = b_through_c()
    assert table.remove("c", 10.0) == [("b", MemberState.SUSPECT)]  # c left: no one reaches b
    assert table.expire(14.0) == []
    assert table.expire(15.0) == ["b"]


def test_a_joining_member_takes_the_address_a_peer_knows_better() -> None:
    table = Membership("a", "mem://a", dead_after=5.0)
    assert table.learn((("b", "mem://b-old"),), 0.0) == [("b", "mem://b-old")]  # remembered
    assert table.learn((("b", "mem://b-old"),), 1.0) == []  # nothing new
    assert table.learn((("b", "mem://b-new"),), 2.0) == [("b", "mem://b-new")]  # dial that
    member = table.get("b")
    assert member is not None
    assert (member.state, member.address) == ("joining", "mem://b-new")
    assert table.listing() == (("a", "mem://a"),)  # never linked: not passed on
    table.linked("b", "mem://b-new")
    assert table.listing() == (("a", "mem://a"), ("b", "mem://b-new"))
