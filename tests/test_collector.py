"""pydds.tune_gc: the collector set up for a long-running node process."""

import gc
import weakref
from collections.abc import Iterator

import pytest

import pydds
from pydds import collector
from pydds.crdt.directory import encode_update


@pytest.fixture(autouse=True)
def restore_collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test leaves the collector as it found it (not tuned, nothing frozen)."""
    thresholds = gc.get_threshold()
    monkeypatch.setattr(collector, "_tuned", False)
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    assert gc.isenabled()


def test_tune_gc_freezes_the_heap_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    kept = [[n] for n in range(1000)]  # alive now: frozen by the call
    pydds.tune_gc(12_345)
    assert gc.get_freeze_count() >= len(kept)
    assert gc.get_threshold() == (12_345, before[1], before[2])
    gc.collect()
    assert kept[999] == [999]  # frozen objects stay usable


def collections_during_a_stream(tuned: bool) -> list[int]:
    """The collections run while 10,000 writes are made and their events wait for a
    consumer (the objects that outlive a write set collections off)."""
    counts: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            counts.append(info["generation"])

    async def stream() -> None:
        async with pydds.Node() as node:
            db = node.database("db")
            for n in range(100):
                await db.set(f"k{n}", {"n": n})
            events = node.events(maxsize=20_000)
            if tuned:
                pydds.tune_gc()
            gc.callbacks.append(count)
            try:
                for n in range(10_000):
                    await db.set(f"k{n % 100}", {"n": n})
            finally:
                gc.callbacks.remove(count)
            assert len(events) == 10_000

    pydds.run(stream(), loop="asyncio")
    return counts


def test_a_write_stream_runs_no_collection_once_tuned() -> None:
    assert collections_during_a_stream(tuned=False)  # the defaults collect
    assert collections_during_a_stream(tuned=True) == []


def test_bulk_loads_pause_the_collector_and_are_frozen_once_tuned() -> None:
    with collector.bulk_load():
        assert not gc.isenabled()
        loaded = [[n] for n in range(1000)]
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0  # not tuned: nothing frozen
    pydds.tune_gc()
    frozen = gc.get_freeze_count()
    more: list[list[int]] = []

    def failing_load() -> None:
        with collector.bulk_load():
            more.extend([n] for n in range(1000))
            raise RuntimeError("a load that fails")

    with pytest.raises(RuntimeError):
        failing_load()
    assert gc.isenabled()  # resumed after the error
    assert gc.get_freeze_count() >= frozen + len(more) == frozen + 1000
    assert loaded[0] == [0]


def test_a_joined_directory_is_frozen_in_a_tuned_process() -> None:
    async def join() -> int:
        async with pydds.Node("s") as source, pydds.Node("t") as target:
            for i in range(6000):
                await source.database("db").set(f"key:{i}", i)
            directory = source.database("db")._keyspace.directory
            update = encode_update(directory.entries().items())
            pydds.tune_gc()
            frozen = gc.get_freeze_count()
            target.database("db")._keyspace.apply_directory(update, "s")
            assert len(target.database("db")) == 6000
            return gc.get_freeze_count() - frozen

    assert pydds.run(join(), loop="asyncio") >= 6000  # a KeyDoc per key at least


def test_the_threshold_is_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        pydds.tune_gc(0)


def test_garbage_in_cycles_is_reclaimed_not_frozen() -> None:
    class Node:
        other: object = None

    def pair() -> Node:
        """Two objects that refer to each other: garbage only the collector reclaims
        once dropped (a weak reference tells whether it did)."""
        a, b = Node(), Node()
        a.other, b.other = b, a
        return a

    before = [weakref.ref(pair()) for _ in range(100)]
    pydds.tune_gc()  # collects first: the cycles are reclaimed, not frozen
    assert all(ref() is None for ref in before)
    old = [pair() for _ in range(100)]
    gc.collect()  # they survive into the old generation...
    refs = [weakref.ref(a) for a in old]
    del old  # ...and are garbage there now
    refs += [weakref.ref(pair()) for _ in range(100)]  # and young garbage
    frozen = gc.get_freeze_count()
    with collector.bulk_load():  # tuned: the garbage is collected, the rest frozen
        loaded = [[n] for n in range(1000)]
    assert gc.get_freeze_count() >= frozen + len(loaded)
    assert all(ref() is None for ref in refs)
