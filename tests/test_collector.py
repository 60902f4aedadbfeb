"""pydds.tune_gc: the collector set up for a long-running node process."""

import gc

import pytest

import pydds


def test_tune_gc_freezes_the_heap_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    gc.unfreeze()
    kept = [[n] for n in range(1000)]  # alive now: frozen by the call
    try:
        pydds.tune_gc(12_345)
        assert gc.get_freeze_count() >= len(kept)
        assert gc.get_threshold() == (12_345, before[1], before[2])
        gc.collect()
        assert kept[999] == [999]  # frozen objects stay usable
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


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

    before = gc.get_threshold()
    try:
        pydds.run(stream(), loop="asyncio")
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
    return counts


def test_a_write_stream_runs_no_collection_once_tuned() -> None:
    assert collections_during_a_stream(tuned=False)  # the defaults collect
    assert collections_during_a_stream(tuned=True) == []


def test_the_threshold_is_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        pydds.tune_gc(0)
