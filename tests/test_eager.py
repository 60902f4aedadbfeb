"""A coroutine run eagerly: finished in its first step, or carried on in a task."""

from __future__ import annotations

import asyncio

import pytest

from pydds import eager


async def test_a_coroutine_that_does_not_wait_finishes_at_once() -> None:
    done: list[int] = []

    async def quick() -> None:
        done.append(1)

    assert eager.start(quick()) is None
    assert done == [1]  # before any turn of the loop


async def test_one_that_waits_goes_on_in_a_task_after_its_first_step() -> None:
    steps: list[str] = []
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def slow() -> int:
        steps.append("first")
        value = await gate
        await asyncio.sleep(0)  # a bare turn too
        steps.append("rest")
        return value + 1

    rest = eager.start(slow())
    assert steps == ["first"]
    assert rest is not None
    assert not rest.done()
    gate.set_result(41)
    assert await asyncio.wait_for(rest, 1) == 42
    assert steps == ["first", "rest"]


async def test_errors_reach_the_coroutine_or_the_caller() -> None:
    async def fails_at_once() -> None:
        raise ConnectionError("at once")

    with pytest.raises(ConnectionError, match="at once"):
        eager.start(fails_at_once())

    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    caught: list[str] = []

    async def handles() -> str:
        try:
            await gate
        except ValueError as exc:
            caught.append(str(exc))
        return "handled"

    rest = eager.start(handles())
    assert rest is not None
    gate.set_exception(ValueError("later"))
    assert await asyncio.wait_for(rest, 1) == "handled"
    assert caught == ["later"]


async def test_cancelling_the_task_cancels_the_coroutine() -> None:
    cleaned: list[bool] = []

    async def waits_forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append(True)

    rest = eager.start(waits_forever())
    assert rest is not None
    await asyncio.sleep(0)
    rest.cancel()
    with pytest.raises(asyncio.CancelledError):
        await rest
    assert cleaned == [True]
