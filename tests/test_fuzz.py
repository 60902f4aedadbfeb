"""Fuzzing in CI: the codec, the session and a node's receive path take anything
and refuse what is wrong with a typed error, never a crash (a few thousand cases;
``fuzz/fuzz.py`` runs 100,000 and more)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
from hypothesis import example, given, settings
from hypothesis import strategies as st

import pydds
from pydds.net import messages as m
from pydds.net.codec import PROTOCOL, decode_frame, encode_frame
from pydds.net.session import Session, State
from pydds.testing.fuzz import run, run_client

msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=20,
)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_are_malformed(frame: bytes) -> None:
    reason = ""
    try:
        messages = decode_frame(frame)
    except pydds.MalformedFrame as exc:
        reason = str(exc)
        messages = []
        assert reason  # always with a reason
    assert all(type(message).__module__ == m.__name__ for message in messages)


@settings(max_examples=1500, deadline=None)
@given(st.lists(msgpack_values, max_size=5))
def test_any_msgpack_decodes_to_valid_messages_or_is_malformed(items: list[Any]) -> None:
    frame = msgpack.packb(items, use_bin_type=True)
    try:
        messages = decode_frame(frame)
    except pydds.MalformedFrame:
        return
    assert decode_frame(encode_frame(messages)) == messages  # what passes is exact


sessions = st.lists(
    st.sampled_from(
        [
            m.Hello("p", "node", None, PROTOCOL, b"n" * 16, None, 1),
            m.Hello("p", "client", None, PROTOCOL, b"n" * 16, "t", 1),
            m.Hello("self", "node", None, PROTOCOL, b"n" * 16, None, 1),
            m.Hello("p", "node", None, PROTOCOL + 5, b"", None, 1),
            m.Proof(b""),
            m.Proof(b"\x00" * 32),
            m.Ping(1),
            m.Pong(1),
            m.Close("bye"),
            m.DirectoryStep1("db", 16, bytes(128)),
            m.Write("db", "k", 1, "changed", None, None, "p"),
        ]
    ),
    max_size=12,
)


@settings(max_examples=1500, deadline=None)
@given(sessions, st.booleans())
def test_a_session_takes_any_sequence(messages: list[m.Message], one_frame: bool) -> None:
    session = Session(m.Hello("self", "node", None, PROTOCOL, b"s" * 16, None, 2), now=0.0)
    frames = [messages] if one_frame else [[message] for message in messages]
    for now, frame in enumerate(frames):
        for_node = session.receive(frame, float(now))
        assert session.state is State.OPEN or not for_node or session.closed
        session.tick(float(now))
    if session.closed:
        assert session.close_reason  # always with a reason
        assert isinstance(session.data_to_send()[-1], m.Close) or session.close_reason.startswith(
            "closed by peer"
        )


@settings(max_examples=5, deadline=None)
@given(st.integers(0, 2**32), st.booleans())
@example(7, True)  # a client's refused write made the database it named
def test_a_node_survives_corrupted_frames(seed: int, client: bool) -> None:
    report = asyncio.run(run(400, seed, client=client))
    assert report.crashes == []
    assert report.state_changes == []
    assert report.malformed > 0
    assert report.accepted > 0
    assert report.refused > 0


@settings(max_examples=3, deadline=None)
@given(st.integers(0, 2**32))
@example(1)  # an empty directory step 2 out of the token's scope made a database
@example(604)  # a Write under another writer's id, its operations from clock 1 on
@example(832)  # the same in a ValueDiff
def test_a_hostile_client_changes_nothing_beyond_its_rights(seed: int) -> None:
    # Every message kind, under its own and another writer's id, in and out of its
    # token's scope, with others' origins and event ids: nothing outside its rights
    # changes on the gateway (another database, others' writes, keys no write could
    # make, events under another's name, acknowledgements counted).
    report = asyncio.run(run_client(1000, seed))
    assert report.crashes == []
    assert report.state_changes == []
    assert report.accepted > 0
    assert report.refused > 0
