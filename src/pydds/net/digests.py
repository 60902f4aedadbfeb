"""Digests of held values, so that anti-entropy costs what differs (pure).

Theory of operation
-------------------
The periodic repair of held values compares, between two linked nodes, every value
both hold: its generation and state vector. Listing them all (``Holding``) costs
bytes and work on both ends for every held value, every period, whether anything
differs or not. Instead each end hashes them into buckets of keys (``bucket``) and
sends one 8-byte digest per bucket (``HoldingDigest``); the other end computes the
same over what it holds and asks only for the buckets that differ (``HoldingAsk``),
whose values are then listed (``HoldingBuckets``) and repaired as ``Holding`` would.

Each end digests the values it holds *and knows the other to hold* (its holder
table), so that two ends holding different values still agree when nothing needs
repair; an answer for a bucket also sets the asker's table to exactly the values
listed, so that a table out of date is put right by the next exchange.

A bucket's digest is the XOR of a hash of each of its values (``sync.value_hash``
of its key, generation and state vector, cached with the value until it changes):
order-free, so neither end sorts, and not linear like a CRC (two keys of one bucket
whose state vectors moved alike would cancel out under a CRC).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

__all__ = ["MIN_DIGESTED", "bucket", "bucket_count", "differing", "digests"]

#: Fewer held values than this are listed whole (``Holding``): a digest saves nothing.
MIN_DIGESTED = 256
#: Values a bucket holds on average (a differing bucket lists about this many).
PER_BUCKET = 32
#: Buckets at least and at most (a power of two; the codec's bound is the same).
MIN_BUCKETS, MAX_BUCKETS = 16, 65_536
_DIGEST = 8  # bytes per bucket


def bucket_count(values: int) -> int:
    """The number of buckets for ``values`` held values: a power of two."""
    wanted = max(MIN_BUCKETS, -(-values // PER_BUCKET))
    return min(MAX_BUCKETS, 1 << (wanted - 1).bit_length())


def bucket(key: str, buckets: int) -> int:
    """The bucket of ``key`` among ``buckets`` (a power of two)."""
    return zlib.crc32(key.encode()) & (buckets - 1)


def digests(values: Iterable[tuple[str, int]], buckets: int) -> bytes:
    """The digest of each bucket of ``values``: (key, ``sync.value_hash`` of it)."""
    out = [0] * buckets
    mask = buckets - 1
    crc32 = zlib.crc32
    for key, hashed in values:
        out[crc32(key.encode()) & mask] ^= hashed
    return b"".join(d.to_bytes(_DIGEST, "big") for d in out)


def differing(ours: bytes, theirs: bytes) -> list[int]:
    """The buckets whose digests differ (both of the same number of buckets)."""
    return [
        i
        for i in range(len(ours) // _DIGEST)
        if ours[i * _DIGEST : (i + 1) * _DIGEST] != theirs[i * _DIGEST : (i + 1) * _DIGEST]
    ]
