"""State vectors decode exactly, and garbage is refused."""

import pytest

from pydds.crdt.sync import decode_state_vector
from pydds.crdt.ydoc import YDoc
from pydds.errors import InvalidUpdate


def test_decodes_what_yrs_encodes() -> None:
    doc = YDoc(2**40 + 3, "r")
    for i in range(300):
        txn = doc.begin(1)
        doc.root.insert(txn, "k", float(i))
        doc.end(txn)
    assert decode_state_vector(doc.state_vector()) == {2**40 + 3: 300}
    assert decode_state_vector(b"\x00") == {}


@pytest.mark.parametrize("garbage", [b"", b"\x01", b"\x01\x05", b"\x00\x00", b"\xff" * 12, b"\x7f"])
def test_garbage_is_refused(garbage: bytes) -> None:
    with pytest.raises(InvalidUpdate):
        decode_state_vector(garbage)
