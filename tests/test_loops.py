"""``pydds.run``: a coroutine on uvloop where installed, else on asyncio's loop."""

from __future__ import annotations

import asyncio

import pytest

import pydds
from pydds.loops import resolve_loop

from .helpers import tls_contexts, until_events


async def _loop_module() -> str:
    async with pydds.Node(listen="127.0.0.1:0") as a, pydds.Node(listen="127.0.0.1:0") as b:
        await b.join(a.address or "")
        await a.database("d").set("k", {"v": 1})
        await until_events(lambda: "k" in b.database("d"), b)
        assert await b.database("d").get("k") == {"v": 1}  # pulled over a real link
    return type(asyncio.get_running_loop()).__module__


def test_auto_runs_on_uvloop_when_installed() -> None:
    assert resolve_loop("auto") == "uvloop"  # a dependency of pydds on this platform
    assert pydds.run(_loop_module()).startswith("uvloop")


def test_asyncio_runs_on_asyncio_s_own_loop() -> None:
    assert pydds.run(_loop_module(), loop="asyncio").startswith("asyncio")


def test_an_unknown_loop_is_refused_and_the_coroutine_not_run() -> None:
    ran = []

    async def main() -> None:
        ran.append(True)

    with pytest.raises(ValueError, match="loop must be one of"):
        pydds.run(main(), loop="trio")
    assert ran == []


def test_links_over_tls_on_uvloop() -> None:
    from pydds.net.ws import WebSocketTransport

    server, client = tls_contexts()

    async def over_tls() -> tuple[str, object]:
        def transport() -> WebSocketTransport:
            return WebSocketTransport(server_ssl=server, client_ssl=client)

        async with (
            pydds.Node("a", listen="127.0.0.1:0", transport=transport()) as a,
            pydds.Node("b", listen="127.0.0.1:0", transport=transport()) as b,
        ):
            assert a.address is not None
            await b.join(a.address)
            await a.database("d").set("k", "over tls")
            await until_events(lambda: "k" in b.database("d"), b)
            return a.address, await b.database("d").get("k")

    address, value = pydds.run(over_tls(), loop="uvloop")
    assert address.startswith("wss://127.0.0.1:")
    assert value == "over tls"


def test_without_uvloop_auto_is_asyncio_and_uvloop_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvloop" else real(name, *a)
    )
    assert resolve_loop("auto") == "asyncio"  # as on Windows, where uvloop is not installed
    with pytest.raises(ValueError, match="uvloop is not installed"):
        resolve_loop("uvloop")
