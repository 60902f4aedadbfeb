"""Pure helpers of the Yjs sync protocol (no IO).

A state vector (sync step 1) is a varint count followed by ``(client, clock)``
varint pairs, in no particular order; two replicas hold the same operations exactly
when their decoded state vectors are equal.
"""

from __future__ import annotations

import hashlib

from pycrdt import get_state, get_update

from ..errors import InvalidUpdate

__all__ = ["decode_state_vector", "update_state_vector", "value_hash", "writes_only_as"]

#: The greatest clock of a Yjs writer (Yrs keeps clocks as 32-bit numbers).
_MAX_CLOCK = 2**32 - 1


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise InvalidUpdate("state vector ends inside a number")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise InvalidUpdate("state vector number is too long")


def _encode(clocks: list[tuple[int, int]]) -> bytes:
    """A state vector of ``(client, clock)`` pairs, in their order."""
    out = bytearray()
    for number in (len(clocks), *(n for pair in clocks for n in pair)):
        while number >= 0x80:
            out.append((number & 0x7F) | 0x80)
            number >>= 7
        out.append(number)
    return bytes(out)


def decode_state_vector(data: bytes) -> dict[int, int]:
    """Decode a state vector into ``{client id: clock}``.

    Raises:
        InvalidUpdate: the bytes are not a state vector.
    """
    count, pos = _varint(data, 0)
    if count > len(data):
        raise InvalidUpdate("state vector count is larger than its data")
    out: dict[int, int] = {}
    for _ in range(count):
        client, pos = _varint(data, pos)
        clock, pos = _varint(data, pos)
        out[client] = clock
    if pos != len(data):
        raise InvalidUpdate("state vector has trailing bytes")
    return out


def update_state_vector(update: bytes) -> bytes:
    """The state vector of what ``update`` writes; Yrs decodes the whole update to
    find it, so this is also the check that the bytes are an update.

    Raises:
        InvalidUpdate: the update does not decode.
    """
    try:
        return bytes(get_state(update))
    except BaseException as exc:  # pycrdt's own errors, and pyo3 panics, on bad bytes
        if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        raise InvalidUpdate("an update does not decode") from None


def writes_only_as(update: bytes, writer: int) -> bool:
    """Whether every operation ``update`` carries is ``writer``'s (deletions of
    others' items are not operations of theirs). Taken from the update itself, not
    its state vector, which leaves out a writer whose operations in it start past
    clock 0 or depend on items the update does not carry: what is left of it once
    all of ``writer``'s operations are taken out must be empty.

    Raises:
        InvalidUpdate: the update does not decode.
    """
    update_state_vector(update)
    try:
        rest = bytes(get_update(update, _encode([(writer, _MAX_CLOCK)])))
    except BaseException as exc:  # as ``update_state_vector``
        if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        raise InvalidUpdate("an update does not decode") from None
    return rest[:1] == b"\x00"  # no writer has structs left in it


def value_hash(key: str, gen: int, state_vector: bytes) -> int:
    """A 64-bit hash of one held value's version: its key, generation and state
    vector, the entries of a state vector of several writers in a canonical order
    (Yrs encodes them in no fixed order), writers at clock 0 left out (two replicas
    holding the same operations hash alike). Anti-entropy digests XOR these.

    Raises:
        InvalidUpdate: the state vector does not decode.
    """
    if state_vector[:1] != b"\x01" or state_vector[-1:] == b"\x00":
        # Several writers (or none, or one at clock 0: Yrs lists a writer it knows
        # only from an update still waiting): those with operations, in order, encoded
        # as Yrs encodes one writer's (so that both forms of one state hash alike).
        clocks = sorted((c, n) for c, n in decode_state_vector(state_vector).items() if n)
        state_vector = _encode(clocks)
    raw = key.encode()
    data = len(raw).to_bytes(4, "big") + raw + gen.to_bytes(8, "big") + state_vector
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")
