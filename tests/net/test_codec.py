"""Frames round-trip exactly; every malformed frame raises MalformedFrame."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pydds
from pydds.net import messages as m
from pydds.net.codec import decode_frame, encode_frame, encode_frames

ONE_OF_EACH: list[m.Message] = [
    m.Hello("n1", "node", "ws://127.0.0.1:7400", 1),
    m.Hello("c1", "client", None, 1),
    m.DirectoryStep1("cache", 16, bytes(128)),
    m.DirectoryStep2("cache", b"\x80", (0, 15)),
    m.Write("cache", "user:1", 1, "created", b"\x01\x02", b"\x03", "n1"),
    m.Write("cache", "ключ/../x", 2**63 - 1, "changed", None, None, "n2"),
    m.Write("cache", "k", 3, "", b"\x01", None, "n2"),
    m.Write("cache", "k", 3, "changed", None, b"\x01", "n2", 77),
    m.Ack(77),
    m.AckFrom(78, "node-b"),
    m.Holding("cache", (("k", 1, b"\x00"), ("ключ", 2**40, b"\x01\x05\x01"))),
    m.Holding("cache", ()),
    m.ValuePull("cache", "user:1", 1, b"\x00"),
    m.ValueDiff("cache", "k", 3, b"\x00\x00"),
    m.ValueMissing("cache", "k", 3),
    m.Release("cache", "k", 3),
    m.Members((("n1", "ws://127.0.0.1:7400"), ("n2", "mem://n2"))),
    m.Members(()),
    m.Leave("n1"),
    m.Relay(("n2", "n3"), "cache", "k", 3, b"\x00\x00", "n1"),
    m.Relay((), "cache", "k", 1, b"", "n1"),
    m.Custom("n1-1", "deploy", b"\x81\xa1v\x03", "n1"),
    m.EventsSeen((("n1", "n1:ab12:7"), ("n2", "n2:cd34:0"))),
    m.EventsSeen(()),
    m.Consumers((("job", "billing", "n1/1", 30.0),)),
    m.Consumers(()),
    m.GroupAck("billing", "n1:ab12:7"),
    m.Ping(0),
    m.Pong(2**63 - 1),
    m.Close("going away"),
]


def test_every_message_kind_round_trips_in_one_frame() -> None:
    assert decode_frame(encode_frame(ONE_OF_EACH)) == ONE_OF_EACH
    assert decode_frame(encode_frame([])) == []


@settings(max_examples=200)
@given(
    st.lists(
        st.builds(
            m.ValueDiff,
            st.from_regex(r"[a-z][a-z0-9_.:-]{0,20}", fullmatch=True),
            st.text(min_size=1, max_size=50),
            st.integers(1, 2**63 - 1),
            st.binary(max_size=64),
        ),
        max_size=20,
    )
)
def test_value_updates_round_trip(batch: list[m.Message]) -> None:
    assert decode_frame(encode_frame(batch)) == batch


def raw(*messages: object) -> bytes:
    return msgpack.packb(list(messages), use_bin_type=True)


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\xc1",  # never used in msgpack
        b"\x91",  # an array that ends early
        msgpack.packb({"not": "a list"}),
        msgpack.packb("text"),
        raw(5),  # a message that is not an array
        raw([]),
        raw(["1", "n"]),  # a code that is not an int
        raw([99, "x"]),  # unknown code
        raw([9]),  # too few fields
        raw([9, 1, 2]),  # too many fields
        raw([9, -1]),
        raw([9, 2**64 - 1]),
        raw([9, True]),
        raw([9, 1.0]),
        raw([1, "n1", "admin", None, 1]),  # unknown role
        raw([1, "", "node", None, 1]),
        raw([2, "../etc", b"\x00"]),  # a database name with path tricks
        raw([2, "cache", "not bytes"]),
        raw([5, "cache", "", 1, b"\x00"]),  # empty key
        raw([5, "cache", "k" * 1025, 1, b"\x00"]),
        raw([5, "cache", "k", 0, b"\x00"]),  # generation 0
        raw([15, "cache", "k", 1, "renamed", None, None, "n1", 0]),  # unknown kind
        raw([15, "cache", "k", 1, "changed", "text", None, "n1", 0]),
        raw([15, "cache", "k", 1, "changed", None, None, "n1"]),  # no ack field
        # A Write's fields one by one (its checks are inlined: each must still refuse)
        raw([15, 7, "k", 1, "changed", None, b"\x00", "n1", 0]),
        raw([15, "../x", "k", 1, "changed", None, b"\x00", "n1", 0]),
        raw([15, "cache", "k" * 1025, 1, "changed", None, b"\x00", "n1", 0]),
        raw([15, "cache", "k", True, "changed", None, b"\x00", "n1", 0]),
        raw([15, "cache", "k", 2**63, "changed", None, b"\x00", "n1", 0]),
        raw([15, "cache", "k", 1, ["changed"], None, b"\x00", "n1", 0]),
        raw([15, "cache", "k", 1, "changed", None, "text", "n1", 0]),
        raw([15, "cache", "k", 1, "changed", None, b"\x00", "", 0]),
        raw([15, "cache", "k", 1, "changed", None, b"\x00", "n1", -1]),
        raw([15, "cache", "k", 1, "changed", None, b"\x00", "n1", False]),
        raw([11, b"bytes"]),
        raw([14, [["n1"]]]),  # a member without an address
        raw([14, "n1"]),
        raw([13, "cache", "k"]),
        raw([18, "cache", [["k", 0, b"\x00"]]]),  # generation 0
        raw([18, "cache", [["k", 1]]]),
        raw([18, "cache", [["", 1, b"\x00"]]]),
        raw([9, 1]) + b"\x00",  # trailing bytes
        msgpack.packb([[9, {"a": 1}]]),  # maps are never valid
    ],
)
def test_malformed_frames_are_refused(frame: bytes) -> None:
    with pytest.raises(pydds.MalformedFrame):
        decode_frame(frame)


def test_limits() -> None:
    frame = encode_frame([m.Ping(i) for i in range(100)])
    with pytest.raises(pydds.MalformedFrame):
        decode_frame(frame, max_bytes=len(frame) - 1)
    with pytest.raises(pydds.MalformedFrame):
        decode_frame(frame, max_messages=99)
    assert len(decode_frame(frame, max_bytes=len(frame), max_messages=100)) == 100


def test_deep_nesting_is_refused_without_recursing() -> None:
    frame = b"\x91" * 100_000 + b"\x90"
    with pytest.raises(pydds.MalformedFrame):
        decode_frame(frame)


def test_malformed_frame_is_a_protocol_error_and_a_value_error() -> None:
    assert issubclass(pydds.MalformedFrame, pydds.ProtocolError)
    assert issubclass(pydds.MalformedFrame, ValueError)


def test_a_large_batch_is_cut_into_frames_a_peer_accepts() -> None:
    pings = [m.Ping(i) for i in range(70_000)]  # more than a peer takes in one frame
    frames = encode_frames(pings, max_bytes=1 << 20)
    assert len(frames) > 1
    assert [msg for frame in frames for msg in decode_frame(frame)] == pings
    big = [m.Custom(f"n1:i:{i}", "e", b"x" * 40_000, "n1") for i in range(10)]
    frames = encode_frames(big, max_bytes=100_000)
    assert all(len(frame) <= 100_000 for frame in frames)
    assert [msg for frame in frames for msg in decode_frame(frame)] == big
    alone = encode_frames(big[:1], max_bytes=1000)  # one message larger: its own frame
    assert decode_frame(alone[0]) == big[:1]
