"""Python's cyclic garbage collector in a long-running pydds process.

CPython collects its youngest generation every 700 container objects allocated and
not yet freed, and walks every live object (a full collection) whenever the objects
that survived into the old generation have grown by a quarter. A node makes and drops
a few container objects per write (a message, an event) and holds a few per key. With
the defaults, the receiving node of the cluster benchmark spent about 12% of its CPU
in collections (full ones of 20-25 ms every ~20,000 writes), and a full collection of a
node holding 300,000 keys takes about 80 ms, a pause for every link and request.

``tune_gc()`` sets the collector up for a node process; ``pydds serve`` calls it once
started (its modules loaded, its keys restored)::

    async with pydds.Node(listen="127.0.0.1:7400") as node:
        await load_everything(node)
        pydds.tune_gc()

It does three things:

* ``gc.collect()`` then ``gc.freeze()``: what is alive now (code, modules, keys
  loaded so far) moves to a generation no collection walks (the collection first, a
  one-time cost, so that no garbage is frozen). Objects frozen are still freed as
  usual when their last reference goes; only cycles among them that become garbage
  later are never reclaimed. Call it again after loading many more keys by other
  means to move those out too.
* what pydds loads in bulk from then on (a whole directory when the node joins, a
  restore) is frozen as well once loaded, after a collection of what is not frozen
  yet (``bulk_load``);
* the youngest generation's threshold goes to ``threshold`` (50,000 by default):
  the objects of one write are freed by their reference counts long before that
  many pile up, so a write stream runs no collection at all, and fewer objects
  survive into the old generation to set off full collections. Objects in reference
  cycles wait longer to be reclaimed: at most ``threshold`` young objects more.

Embedded programs that make many short-lived objects of their own can call it too;
it changes process-wide settings, so pydds never calls it on its own (except in
``pydds serve``, which owns its process).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["GC_THRESHOLD", "bulk_load", "tune_gc"]

GC_THRESHOLD = 50_000  # container objects allocated between young collections
_tuned = False  # tune_gc was called: bulk loads are frozen once loaded


def tune_gc(threshold: int = GC_THRESHOLD) -> None:
    """Freeze what is alive now and raise the young generation's threshold (see the
    module's documentation).

    Raises:
        ValueError: ``threshold`` is below 1.
    """
    if threshold < 1:
        raise ValueError("the collector's threshold is at least 1")
    global _tuned
    gc.collect()  # garbage in cycles now would never be reclaimed once frozen
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(threshold, middle, old)
    _tuned = True


@contextlib.contextmanager
def bulk_load() -> Iterator[None]:
    """The collector paused while pydds loads many objects that live on (a joining
    node's whole directory, a restore): every collection during the load would walk
    them all again (a third of a 100,000-key join went to that). In a process set up
    by ``tune_gc``, what was loaded is frozen at the end (the freeze moves lists,
    whatever their length), after a collection first: it walks only what is not
    frozen yet (what came since the last freeze, not the loaded objects), and no
    garbage in cycles is frozen for good. The collector runs again afterwards, also
    on an error."""
    if not gc.isenabled():
        yield
        return
    if _tuned:
        gc.collect()  # garbage in cycles, before the freeze would keep it for good
    gc.disable()
    try:
        yield
    finally:
        if _tuned:
            gc.freeze()
        gc.enable()
