"""Holders: which peers hold which values, as shared immutable sets."""

from __future__ import annotations

import pytest

from pydds.net import holders as h
from pydds.net.holders import Holders


def test_add_discard_drop() -> None:
    holders = Holders()
    v = ("db", "k", 1)
    assert holders[v] == frozenset()
    assert v not in holders
    holders.add(v, "a")
    holders.add(v, "b")
    holders.add(v, "a")  # once
    assert holders[v] == {"a", "b"}
    holders.discard(v, "a")
    holders.discard(v, "x")  # not a holder: nothing
    assert holders[v] == {"b"}
    holders.discard(v, "b")
    assert v not in holders  # nobody holds it: no entry left
    holders.add(v, "c")
    holders.drop(v)
    assert len(holders) == 0


def test_values_held_by_the_same_peers_share_one_set() -> None:
    holders = Holders()
    for i in range(10_000):
        holders.add(("db", f"k{i}", 1), "a")
        holders.add(("db", f"k{i}", 1), "b")
    sets = {id(peers) for _, peers in holders.items()}
    assert len(sets) == 1  # one frozenset({"a", "b"}) for all 10,000


def test_a_closed_link_leaves_every_value_it_held() -> None:
    holders = Holders()
    for i in range(100):
        holders.add(("db", f"k{i}", 1), "a")
        if i % 2:
            holders.add(("db", f"k{i}", 1), "b")
    holders.drop_peer("a")
    assert len(holders) == 50  # values only "a" held are gone
    assert all(peers == {"b"} for _, peers in holders.items())
    holders.drop_peer("b")
    assert len(holders) == 0


def test_the_shared_table_is_bounded_and_sharing_never_decides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(h, "MAX_SHARED", 8)
    holders = Holders()
    for i in range(100):  # 100 distinct sets, a table of at most 8
        holders.add(("db", "k", i), f"peer{i}")
        assert len(holders._shared) <= 8
    assert all(holders[("db", "k", i)] == {f"peer{i}"} for i in range(100))
