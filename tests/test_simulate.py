"""The simulation (``python -m pydds.testing.simulate``), small: ten nodes in memory
with a fake clock join through one seed, a write reaches all, a fifth crash, the
halves are cut apart and healed."""

from __future__ import annotations

import pytest

from pydds.testing.simulate import main, simulate


async def test_ten_nodes_form_carry_a_write_survive_a_crash_and_heal() -> None:
    got = await simulate(10)
    assert got["formed_s"] is not None
    assert got["links"] == 45  # a full mesh
    assert got["write_turns"] is not None
    assert 0 < got["messages_per_write"] < 3 * 10
    assert got["killed"] == 2
    assert got["survivors_see_each_other"] is True
    assert got["write_after_kill_s"] is not None
    assert got["healed_s"] is not None


def test_it_prints_one_json_object_per_size(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--nodes", "3", "4"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in lines] == ['{"nodes": 3', '{"nodes": 4']
