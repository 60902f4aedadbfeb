"""A thin typed layer over pycrdt's compiled binding: one Yrs document.

Theory of operation
-------------------
pycrdt's Python wrapper opens a nested transaction and builds a wrapper object for
every entry it touches, which costs two to three times the work of the document
itself on pydds's hot path (a five-field dict set: about 10 us through the wrapper,
about 4.5 us through the binding). pydds therefore drives the binding
(``pycrdt._pycrdt``) directly, and only from this module and from ``values.py``:

* one transaction per operation (``begin`` ... ``end``), always with an origin;
* the exact delta of that transaction is captured by an update observer into a
  one-slot sink, so a write returns its own delta at no extra cost (never
  ``get_update(state)``, which costs O(document size));
* the observer's callback holds the sink, never the document, so no reference cycle
  passes through Rust and a dropped document is freed; ``close`` drops it anyway;
* a long write runs in steps (``renew``): Yrs finds an array index by walking the
  blocks before it, and merges adjacent blocks only when a transaction commits, so
  an array filled item by item in one transaction costs O(n^2) (20,000 ints: 20 s)
  and in steps of a few dozen items O(n) (100,000: 0.08 s). ``end`` then returns
  the delta of every step as one.

The binding's surface used here is small and checked by ``tests/crdt/test_ydoc.py``;
the dependency range on pycrdt is tight for that reason.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

from pycrdt import _pycrdt, merge_updates

from ..errors import InvalidUpdate

__all__ = ["EMPTY_STATE_VECTOR", "YArray", "YDoc", "YMap", "YTxn"]

#: The state vector of an empty document: ``diff(EMPTY_STATE_VECTOR)`` is the whole state.
EMPTY_STATE_VECTOR = b"\x00"


class YTxn(Protocol):
    """A read-write transaction of the binding."""

    def commit(self) -> None: ...
    def drop(self) -> None: ...


class YMap(Protocol):
    """A Yrs map as the binding exposes it."""

    def len(self, txn: YTxn) -> int: ...
    def keys(self, txn: YTxn) -> list[str]: ...
    def get(self, txn: YTxn, key: str) -> Any: ...
    def has(self, txn: YTxn, key: str) -> bool: ...
    def insert(self, txn: YTxn, key: str, value: Any) -> None: ...
    def insert_map_prelim(self, txn: YTxn, key: str) -> YMap: ...
    def insert_array_prelim(self, txn: YTxn, key: str) -> YArray: ...
    def remove(self, txn: YTxn, key: str) -> None: ...
    def observe(self, callback: Any) -> Any: ...


class YArray(Protocol):
    """A Yrs array as the binding exposes it."""

    def len(self, txn: YTxn) -> int: ...
    def get(self, txn: YTxn, index: int) -> Any: ...
    def insert(self, txn: YTxn, index: int, value: Any) -> None: ...
    def insert_map_prelim(self, txn: YTxn, index: int) -> YMap: ...
    def insert_array_prelim(self, txn: YTxn, index: int) -> YArray: ...
    def remove_range(self, txn: YTxn, index: int, length: int) -> None: ...


#: The binding's classes, for ``type(x) is`` checks when decoding.
MAP_TYPE: Any = _pycrdt.Map
ARRAY_TYPE: Any = _pycrdt.Array
TEXT_TYPE: Any = _pycrdt.Text


class YDoc:
    """One Yrs document with one root map, written by one client id.

    Example::

        doc = YDoc(client_id=7, root="value")
        txn = doc.begin(origin=1)
        try:
            doc.root.insert(txn, "v", "hello")
        finally:
            delta = doc.end(txn)        # the exact update of that transaction
    """

    __slots__ = ("_doc", "_origin", "_roots", "_sink", "_steps", "_sub", "root")

    def __init__(self, client_id: int, root: str, state: bytes | None = None) -> None:
        self._doc: Any = _pycrdt.Doc(client_id, False, None)
        txn = self._doc.create_transaction()
        try:
            self.root: YMap = cast(YMap, self._doc.get_or_insert_map(txn, root))
            if state is not None:
                self._doc.apply_update(txn, state)
        except BaseException as exc:
            txn.commit()
            txn.drop()
            if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
                raise
            raise InvalidUpdate(f"cannot load state: {exc}") from None
        txn.commit()
        txn.drop()
        # Observed only now: loading the state encodes no delta.
        self._roots: dict[tuple[str, bool], Any] = {}  # root types got: (name, is a map)
        self._origin = 0  # the origin of the write under way (``renew`` keeps it)
        #: A write in steps: its first step's delta, the state vector after that step,
        #: and the transaction of the step under way; None for a write of one step.
        self._steps: tuple[bytes | None, bytes, YTxn] | None = None
        sink: list[bytes] = []
        self._sink = sink  # the delta of the transaction being committed, at most one
        self._sub: Any = self._doc.observe(lambda event: sink.append(event.update))

    @property
    def client_id(self) -> int:
        """The Yjs client id that this document's own writes carry."""
        return int(self._doc.client_id())

    def begin(self, origin: int) -> YTxn:
        """Open a read-write transaction; pair it with :meth:`end` in a ``finally``."""
        self._origin = origin
        return cast(YTxn, self._doc.create_transaction_with_origin(origin))

    def renew(self, txn: YTxn) -> YTxn:
        """Commit ``txn`` and open the next step of the same write (same origin);
        shared types got in ``txn`` stay usable in the new one."""
        try:
            txn.commit()
        finally:
            txn.drop()
        sink = self._sink
        if self._steps is None:  # the first step: its delta, and where the rest starts
            first, since = (sink[-1] if sink else None), self.state_vector()
        else:
            first, since, _ = self._steps
        sink.clear()
        txn = cast(YTxn, self._doc.create_transaction_with_origin(self._origin))
        self._steps = (first, since, txn)
        return txn

    def end(self, txn: YTxn) -> bytes | None:
        """Commit ``txn`` (the step under way, for a write in steps) and return the
        write's delta (None when it changed nothing)."""
        steps = self._steps
        if steps is not None:
            txn = steps[2]
        try:
            txn.commit()
        finally:
            txn.drop()
        sink = self._sink
        if steps is not None:
            self._steps = None
            sink.clear()
            first, since, _ = steps
            rest = self.diff(since)  # what every later step wrote
            return merge_updates(first, rest) if first is not None else rest
        if not sink:
            return None
        delta = sink[-1]
        sink.clear()
        return delta

    def apply(self, update: bytes, origin: int) -> bytes | None:
        """Apply a remote update; return the delta it made here (None if nothing new).

        Raises:
            InvalidUpdate: the bytes do not decode as a Yjs update.
        """
        txn = self._doc.create_transaction_with_origin(origin)  # begin(), inline
        try:
            self._doc.apply_update(txn, update)
        except ValueError as exc:
            self.end(txn)
            raise InvalidUpdate(f"cannot apply update: {exc}") from exc
        except BaseException as exc:  # a panic in Rust surfaces as a BaseException
            if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
                raise
            self.end(txn)
            raise InvalidUpdate(f"cannot apply update: {exc}") from None
        return self.end(txn)

    def state_vector(self) -> bytes:
        """The state vector (Yjs sync step 1)."""
        txn = self._doc.create_transaction()
        try:
            return bytes(self._doc.get_state(txn))
        finally:
            txn.drop()

    def diff(self, state_vector: bytes = EMPTY_STATE_VECTOR) -> bytes:
        """The update that brings a peer at ``state_vector`` up to date (sync step 2).

        Raises:
            InvalidUpdate: ``state_vector`` does not decode.
        """
        txn = self._doc.create_transaction()
        try:
            return bytes(self._doc.get_update(txn, state_vector))
        except ValueError as exc:
            raise InvalidUpdate(f"bad state vector: {exc}") from exc
        finally:
            txn.drop()

    def root_map(self, txn: YTxn, name: str) -> YMap:
        """The root map ``name`` (made on first use; concurrent makers share it). The
        binding's object is kept: it stays usable in later transactions."""
        found = self._roots.get((name, True))
        if found is None:
            found = self._roots[(name, True)] = self._doc.get_or_insert_map(txn, name)
        return cast(YMap, found)

    def root_array(self, txn: YTxn, name: str) -> YArray:
        """The root array ``name`` (made on first use; concurrent makers share it)."""
        found = self._roots.get((name, False))
        if found is None:
            found = self._roots[(name, False)] = self._doc.get_or_insert_array(txn, name)
        return cast(YArray, found)

    def read(self) -> YTxn:
        """Open a transaction for reading; ``drop`` it when done (nothing is committed)."""
        return cast(YTxn, self._doc.create_transaction())

    def close(self) -> None:
        """Stop observing; the document is freed when no longer referenced."""
        if self._sub is not None:
            self._sub.drop()
            self._sub = None
