"""Frames <-> messages: msgpack on the wire, strictly validated on the way in.

A frame is a msgpack array of messages; a message is an array ``[code, field...]``
with the fields of its dataclass in order. Decoding checks everything before it
returns anything: the frame's size, msgpack's own container limits (no maps, no
nesting beyond messages), the code, the arity and each field's type and range. Any
fault raises ``MalformedFrame`` with the reason, and the link closes with it.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Callable, Sequence
from typing import Any

import msgpack

from ..config import check_name
from ..errors import InvalidName, MalformedFrame
from . import messages as m

__all__ = [
    "FRAME_MESSAGES",
    "MAX_FRAME_BYTES",
    "MAX_MESSAGES",
    "PROTOCOL",
    "decode_frame",
    "encode_frame",
    "encode_frames",
]

#: 2: Hello carries a nonce, a token id and a client id; Proof.
#: 3: whole values set packed (``crdt/keydoc.py``); anti-entropy by digests.
#: 4: directories of entries synced by bucket digests (codes 27, 28), a period's
#: step 1 one digest of the whole.
#: 5: ``EventsSeen`` (code 29): custom events missed while a link was down are sent
#: again; consumer groups (``Consumers``, ``GroupAck``: 30, 31).
PROTOCOL = 5
MAX_FRAME_BYTES = 32 * 1024 * 1024  # default bound of one frame
MAX_MESSAGES = 65_536  # default bound of the messages in one frame
#: Messages a sender puts in one frame at most (well under a peer's ``MAX_MESSAGES``).
FRAME_MESSAGES = 8192
_MAX_KEY = 1024
_INT64 = 2**63 - 1


def _str(v: Any) -> str:
    if type(v) is not str:
        raise MalformedFrame(f"expected a str, got {type(v).__name__}")
    return v


def _short(v: Any) -> str:
    if type(v) is not str or not 0 < len(v) <= 256:
        raise MalformedFrame("expected a str of 1 to 256 characters")
    return v


def _name(v: Any) -> str:
    if type(v) is str and v in _GOOD_NAMES:  # names repeat: skip the pattern
        return v
    try:
        name = check_name("database", v)
    except InvalidName as exc:
        raise MalformedFrame(str(exc)) from None
    if len(_GOOD_NAMES) < 4096:
        _GOOD_NAMES.add(name)
    return name


_GOOD_NAMES: set[str] = set()  # database names seen valid (bounded)


def _key(v: Any) -> str:
    if type(v) is not str or not 0 < len(v) <= _MAX_KEY:
        raise MalformedFrame(f"a key is a str of 1 to {_MAX_KEY} characters")
    return v


def _bytes(v: Any) -> bytes:
    if type(v) is not bytes:
        raise MalformedFrame(f"expected bytes, got {type(v).__name__}")
    return v


def _maybe_bytes(v: Any) -> bytes | None:
    return None if v is None else _bytes(v)


def _kind(v: Any) -> str:
    if v not in ("created", "changed", "deleted", ""):
        raise MalformedFrame("a write's kind is created, changed, deleted or empty")
    return str(v)


def _gen(v: Any) -> int:
    if type(v) is not int or not 1 <= v <= _INT64:
        raise MalformedFrame("a generation is an int from 1 to 2**63-1")
    return v


def _seconds(v: Any) -> float:
    if type(v) is not float or math.isnan(v):
        raise MalformedFrame("a time is a float (seconds, -inf for never)")
    return v


def _uint(v: Any) -> int:
    if type(v) is not int or not 0 <= v <= _INT64:
        raise MalformedFrame("expected an int from 0 to 2**63-1")
    return v


def _role(v: Any) -> str:
    if v not in ("node", "client"):
        raise MalformedFrame("a role is 'node' or 'client'")
    return str(v)


def _nonce(v: Any) -> bytes:
    if type(v) is not bytes or len(v) > 64:
        raise MalformedFrame("a nonce is at most 64 bytes")
    return v


def _mac(v: Any) -> bytes:
    if type(v) is not bytes or len(v) > 64:
        raise MalformedFrame("a proof is at most 64 bytes")
    return v


def _token(v: Any) -> str | None:
    return None if v is None else _short(v)


def _address(v: Any) -> str | None:
    return None if v is None else _short(v)


def _pairs(v: Any, what: str) -> tuple[tuple[str, str], ...]:
    if type(v) is not list or len(v) > 4096:
        raise MalformedFrame(f"a list of at most 4096 {what} pairs is expected")
    out = []
    for pair in v:
        if type(pair) is not list or len(pair) != 2:
            raise MalformedFrame(f"expected a {what} pair")
        out.append((_short(pair[0]), _short(pair[1])))
    return tuple(out)


def _members(v: Any) -> tuple[tuple[str, str], ...]:
    return _pairs(v, "[name, address]")


def _last_seen(v: Any) -> tuple[tuple[str, str], ...]:
    return _pairs(v, "[node, event id]")


def _consumers(v: Any) -> tuple[tuple[str, str, str, float], ...]:
    if type(v) is not list or len(v) > m.MAX_CONSUMERS:
        raise MalformedFrame(f"consumers is a list of at most {m.MAX_CONSUMERS}")
    out = []
    for entry in v:
        if type(entry) is not list or len(entry) != 4:
            raise MalformedFrame("a consumer is [event name, group, id, ack timeout]")
        name, group, ident, timeout = entry
        if type(timeout) is not float or not m.MIN_ACK_TIMEOUT <= timeout <= m.MAX_ACK_TIMEOUT:
            raise MalformedFrame(
                f"an ack timeout is a float of {m.MIN_ACK_TIMEOUT} to {m.MAX_ACK_TIMEOUT:g} seconds"
            )
        out.append((_short(name), _short(group), _short(ident), timeout))
    return tuple(out)


def _names(v: Any) -> tuple[str, ...]:
    if type(v) is not list or len(v) > 4096:
        raise MalformedFrame("names is a list of at most 4096 names")
    return tuple(_short(name) for name in v)


MAX_HOLDING = 10_000  # values in one Holding message


def _holding(v: Any) -> tuple[tuple[str, int, bytes], ...]:
    if type(v) is not list or len(v) > MAX_HOLDING:
        raise MalformedFrame(f"holding is a list of at most {MAX_HOLDING} values")
    return _holding_entries(v)


def _holding_entries(v: list[Any]) -> tuple[tuple[str, int, bytes], ...]:
    out = []
    for entry in v:
        if type(entry) is not list or len(entry) != 3:
            raise MalformedFrame("a held value is a [key, generation, state vector] triple")
        out.append((_key(entry[0]), _gen(entry[1]), _bytes(entry[2])))
    return tuple(out)


#: Buckets of a digest exchange at most; buckets in one ``HoldingBuckets`` answer.
MAX_BUCKETS = 65_536
MAX_BUCKET_VALUES = 65_536


def _buckets(v: Any) -> int:
    if type(v) is not int or not 1 <= v <= MAX_BUCKETS or v & (v - 1):
        raise MalformedFrame(f"buckets is a power of two from 1 to {MAX_BUCKETS}")
    return v


def _buckets_or_none(v: Any) -> int:
    return 0 if v == 0 and type(v) is int else _buckets(v)


def _wanted(v: Any) -> tuple[int, ...]:
    if type(v) is not list or len(v) > MAX_BUCKETS:
        raise MalformedFrame(f"wanted is a list of at most {MAX_BUCKETS} buckets")
    for bucket in v:
        if type(bucket) is not int or not 0 <= bucket < MAX_BUCKETS:
            raise MalformedFrame(f"a bucket is an int from 0 to {MAX_BUCKETS - 1}")
    return tuple(v)


def _bucket_values(v: Any) -> tuple[tuple[str, int, bytes], ...]:
    if type(v) is not list or len(v) > MAX_BUCKET_VALUES:
        raise MalformedFrame(f"bucket values are a list of at most {MAX_BUCKET_VALUES}")
    return _holding_entries(v)


Field = Callable[[Any], Any]

#: code -> (message class, field checkers in dataclass order). Codes are the wire
#: format: never renumber, only add (4, 6 and 7 were retired before any release; 2 and
#: 3, the directory sync of Yjs state vectors, when directories left Yjs).
_SCHEMA: dict[int, tuple[type, tuple[Field, ...]]] = {
    1: (m.Hello, (_short, _role, _address, _uint, _nonce, _token, _uint)),
    5: (m.ValuePull, (_name, _key, _gen, _bytes)),
    8: (m.Custom, (_short, _name, _bytes, _short)),
    9: (m.Ping, (_uint,)),
    10: (m.Pong, (_uint,)),
    11: (m.Close, (_str,)),
    12: (m.ValueDiff, (_name, _key, _gen, _bytes)),
    13: (m.ValueMissing, (_name, _key, _gen)),
    14: (m.Members, (_members,)),
    16: (m.Release, (_name, _key, _gen)),
    15: (m.Write, (_name, _key, _gen, _kind, _maybe_bytes, _maybe_bytes, _short, _uint)),
    17: (m.Ack, (_uint,)),
    18: (m.Holding, (_name, _holding)),
    19: (m.AckFrom, (_uint, _short)),
    20: (m.Proof, (_mac,)),
    21: (m.Leave, (_short,)),
    22: (m.Relay, (_names, _name, _key, _gen, _bytes, _short)),
    23: (m.HoldingDigest, (_name, _buckets, _bytes)),
    24: (m.HoldingAsk, (_name, _buckets, _wanted)),
    25: (m.HoldingBuckets, (_name, _buckets, _wanted, _bucket_values)),
    26: (m.Reach, (_names,)),
    27: (m.DirectoryStep1, (_name, _buckets, _bytes, _seconds)),
    28: (m.DirectoryStep2, (_name, _bytes, _wanted, _buckets_or_none)),
    29: (m.EventsSeen, (_last_seen,)),
    30: (m.Consumers, (_consumers,)),
    31: (m.GroupAck, (_short, _short)),
}
_CODES = {cls: code for code, (cls, _) in _SCHEMA.items()}
for _cls, _checks in _SCHEMA.values():
    assert len(dataclasses.fields(_cls)) == len(_checks), _cls


def _fields_getter(cls: type) -> Callable[[Any], tuple[Any, ...]]:
    """A fast getter of a message's fields, in order, as a tuple."""
    names = [f.name for f in dataclasses.fields(cls)]
    get = operator.attrgetter(*names)
    if len(names) > 1:
        return get  # attrgetter of several names returns a tuple
    return lambda message: (get(message),)


#: class -> (code, the getter of its fields)
_ENCODERS = {cls: (code, _fields_getter(cls)) for cls, code in _CODES.items()}

_pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack


def encode_frame(messages: Sequence[m.Message]) -> bytes:
    """Encode messages into one frame."""
    out = []
    for message in messages:
        code, fields = _ENCODERS[type(message)]
        out.append((code, *fields(message)))
    packed: bytes = _pack(out)
    return packed


def encode_frames(messages: Sequence[m.Message], max_bytes: int) -> list[bytes]:
    """Encode messages, in order, into frames of at most ``max_bytes`` and
    ``FRAME_MESSAGES`` messages each (a single message larger than ``max_bytes`` is a
    frame of its own): what a peer accepts however much was queued at once.

    A frame over the size is cut in halves, encoded again: only the large frames of
    a join or a burst pay for it.
    """
    if len(messages) > FRAME_MESSAGES:
        return [
            frame
            for start in range(0, len(messages), FRAME_MESSAGES)
            for frame in encode_frames(messages[start : start + FRAME_MESSAGES], max_bytes)
        ]
    frame = encode_frame(messages)
    if len(frame) <= max_bytes or len(messages) < 2:
        return [frame]
    half = len(messages) // 2
    return [*encode_frames(messages[:half], max_bytes), *encode_frames(messages[half:], max_bytes)]


def decode_frame(
    frame: bytes, *, max_bytes: int = MAX_FRAME_BYTES, max_messages: int = MAX_MESSAGES
) -> list[m.Message]:
    """Decode and validate one frame.

    Raises:
        MalformedFrame: the frame is too large, is not msgpack, or holds anything
            but valid messages.
    """
    if len(frame) > max_bytes:
        raise MalformedFrame(f"frame of {len(frame)} bytes is over the limit of {max_bytes}")
    try:
        raw = msgpack.unpackb(
            frame, raw=False, max_array_len=max(max_messages, 16), max_map_len=0, max_ext_len=0
        )
    except msgpack.ExtraData:
        raise MalformedFrame("frame has trailing bytes") from None
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        if "incomplete input" in str(exc):
            raise MalformedFrame("frame ends inside a value") from None
        raise MalformedFrame(f"frame is not valid msgpack: {exc}") from None
    if type(raw) is not list:
        raise MalformedFrame("a frame is an array of messages")
    if len(raw) > max_messages:
        raise MalformedFrame(f"frame holds {len(raw)} messages, over the limit of {max_messages}")
    return [_message(item) for item in raw]


def _message(item: Any) -> m.Message:
    if type(item) is not list or not item or type(item[0]) is not int:
        raise MalformedFrame("a message is an array starting with its code")
    decoder = _DECODERS.get(item[0])
    if decoder is None:
        raise MalformedFrame(f"unknown message code {item[0]}")
    cls, size, decode = decoder
    if len(item) != size:
        raise MalformedFrame(f"{cls.__name__} has {size - 1} fields, got {len(item) - 1}")
    try:
        return decode(item)
    except MalformedFrame as exc:
        raise MalformedFrame(f"{cls.__name__}: {exc}") from None


#: Checks written inline in the decoders, as conditions on a field ``{v}`` that hold
#: exactly when the checker would return the field unchanged (the checker itself then
#: runs only for a field that fails them, to raise its error or convert).
_INLINE: dict[Field, str] = {
    _str: "type({v}) is str",
    _short: "type({v}) is str and 0 < len({v}) <= 256",
    _name: "type({v}) is str and {v} in _GOOD_NAMES",
    _key: f"type({{v}}) is str and 0 < len({{v}}) <= {_MAX_KEY}",
    _bytes: "type({v}) is bytes",
    _maybe_bytes: "({v} is None or type({v}) is bytes)",
    _kind: "type({v}) is str and {v} in _WRITE_KINDS",
    _gen: f"type({{v}}) is int and 1 <= {{v}} <= {_INT64}",
    _uint: f"type({{v}}) is int and 0 <= {{v}} <= {_INT64}",
}
_WRITE_KINDS = frozenset({"created", "changed", "deleted", ""})


def _decoder(cls: type, checks: tuple[Field, ...]) -> Callable[[list[Any]], m.Message]:
    """``item -> cls(field0, field1, ...)``, made once per message class: the fields
    whose checks have an inline form (``_INLINE``) are tested in one expression and
    passed as they are; if any fails, every field goes through its checker (which
    raises). Calling a checker per field costs twice as much on the hot path."""
    fields = [f"f{i}" for i in range(len(checks))]
    namespace: dict[str, Any] = {
        "cls": cls,
        "_GOOD_NAMES": _GOOD_NAMES,
        "_WRITE_KINDS": _WRITE_KINDS,
    }
    namespace.update({f"check{i}": check for i, check in enumerate(checks)})
    inline = [
        _INLINE[check].format(v=field)
        for field, check in zip(fields, checks, strict=True)
        if check in _INLINE
    ]
    fast = ", ".join(
        field if check in _INLINE else f"check{i}({field})"
        for i, (field, check) in enumerate(zip(fields, checks, strict=True))
    )
    slow = ", ".join(f"check{i}({field})" for i, field in enumerate(fields))
    source = f"def decode(item):\n    _, {', '.join(fields)}, = item\n"
    if inline:
        source += f"    if {' and '.join(inline)}:\n        return cls({fast})\n"
    source += f"    return cls({slow})\n"
    exec(source, namespace)
    decode: Callable[[list[Any]], m.Message] = namespace["decode"]
    return decode


#: code -> (class, length of its array with the code, decoder)
_DECODERS = {
    code: (cls, len(checks) + 1, _decoder(cls, checks)) for code, (cls, checks) in _SCHEMA.items()
}
