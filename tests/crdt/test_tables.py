"""Dicts given back their memory once most of their entries are gone."""

from __future__ import annotations

import sys

from pydds.crdt.tables import shrunk


def test_a_table_that_lost_most_of_its_entries_is_copied_to_its_size() -> None:
    table = {f"key:{i}": i for i in range(100_000)}
    assert shrunk(table) is table  # full: kept
    for i in range(99_000):
        del table[f"key:{i}"]
    assert sys.getsizeof(table) > 1 << 20  # Python kept the table of 100,000
    small = shrunk(table)
    assert small == table
    assert sys.getsizeof(small) < sys.getsizeof(table) // 50
    assert shrunk(small) is small
    few = {"a": 1}
    assert shrunk(few) is few  # small tables are left alone
