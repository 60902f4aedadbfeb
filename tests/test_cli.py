"""``pydds serve`` as a real process on 127.0.0.1 (stopped by its process group), and
the client commands against it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import pydds
from pydds.cli import main

from .helpers import Served, pydds_cmd, stop_process, until_member

Serve = Callable[..., Awaitable[str]]


async def stop(served: Served) -> int:
    """Stop a served process (SIGTERM, then SIGKILL, to its process group)."""
    return await stop_process(served.proc)


async def test_serve_takes_the_former_expire_option_and_says_it_is_deprecated(
    served: Callable[..., Awaitable[Served]],
) -> None:
    s = await served("--port", "0", "--expire", "cache=300")
    assert s.proc.stderr is not None
    warning = (await asyncio.wait_for(s.proc.stderr.readline(), 20)).decode()
    assert warning.startswith("warning: expire is deprecated: it is now called stale_after")
    async with (
        aiohttp.ClientSession() as session,
        session.get(s.http + "/v1/databases/cache") as response,
    ):
        assert (await response.json())["stale_after"] == 300


async def test_the_readme_run_command_serves_and_stops_cleanly_on_sigterm(
    served: Callable[..., Awaitable[Served]], tmp_path: Path
) -> None:
    # `pydds serve` exactly as the README has it; only the port comes from the
    # environment, so that the test never collides with a node on 7400.
    env = {
        "PYDDS_PORT": "0",
        "PYDDS_NAME": "t1",
        "PYDDS_MEMORY": "",
        "PYDDS_DATA_DIR": str(tmp_path),
        "PYDDS_STALE_AFTER": "cache=300",
    }
    s = await served(env=env)
    assert s.line.startswith("pydds node t1 serving on http://127.0.0.1:"), s.line
    assert f"data in {tmp_path}" in s.line  # persistence is the default
    assert "loop: uvloop" in s.line  # installed with pydds: the default loop
    assert (tmp_path / "pydds.sqlite3").exists()
    async with (
        aiohttp.ClientSession() as session,
        session.get(s.http + "/healthz") as response,
    ):
        assert response.status == 200
        body = await response.json()
    assert body["status"] == "ok"
    assert body["node"] == "t1"
    assert body["version"] == pydds.__version__
    async with aiohttp.ClientSession() as session:
        await session.put(s.http + "/v1/databases/cache/keys/k", json={"v": 1})
    assert await stop(s) == 0
    s = await served(env=env)  # again, on the same data: restored, expiry as configured
    async with aiohttp.ClientSession() as session:
        async with session.get(s.http + "/v1/databases/cache/keys/k") as response:
            assert await response.json() == {"v": 1}
        async with session.get(s.http + "/v1/databases/cache") as response:
            got = await response.json()
            assert got == {
                "name": "cache",
                "stale_after": 300,
                "expire": 300,
                "ttl": None,
                "keys": 1,
                "held": 1,
                "stale": 0,
                "tombstones": 0,
                "pins": [],
            }
    assert await stop(s) == 0


async def test_a_config_file_and_the_environment(
    served: Callable[..., Awaitable[Served]], tmp_path: Path
) -> None:
    config = tmp_path / "node.toml"
    config.write_text('name = "from-file"\nport = 0\nlog_level = "info"\n')
    s = await served(
        "--config", str(config), env={"PYDDS_LOG_FORMAT": "json", "PYDDS_LOOP": "asyncio"}
    )
    assert "pydds node from-file serving on" in s.line
    assert "loop: asyncio" in s.line
    assert await stop(s) == 0
    assert s.proc.stderr is not None
    lines = (await s.proc.stderr.read()).decode().splitlines()
    logged = [json.loads(line) for line in lines]  # every line is one JSON object
    assert any(e["message"] == "node from-file stopped" for e in logged)


async def test_bad_settings_exit_2_with_a_message(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text("prot = 7400\n")
    code, _, err = await pydds_cmd("serve", "--config", str(config))
    assert code == 2
    assert "unknown setting 'prot'" in err
    code, _, err = await pydds_cmd("serve", "--port", "http")
    assert code == 2


async def test_two_processes_and_the_client_commands(
    served: Callable[..., Awaitable[Served]],
) -> None:
    first = await served("--port", "0", "--name", "p1")
    second = await served("--port", "0", "--name", "p2", "--join", first.node)
    # Wait (bounded: the stream's timeout) for the event that says the key reached
    # p2's directory.
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(20)) as session,
        session.get(second.http + "/v1/events", params={"kinds": "created"}) as stream,
    ):
        await stream.content.readline()
        code, out, _ = await pydds_cmd("set", "db", "user/1", '{"name": "Ada"}', node=first.node)
        assert (code, out) == (0, "OK\n")
        while b"user/1" not in await stream.content.readline():
            pass
    code, out, _ = await pydds_cmd("get", "db", "user/1", node=second.node)  # pulled from p1
    assert (code, json.loads(out)) == (0, {"name": "Ada"})
    assert (await pydds_cmd("update", "db", "user/1", '{"age": 36}', node=second.node))[0] == 0
    code, out, _ = await pydds_cmd("keys", "db", "--prefix", "user", node=second.node)
    assert (code, out) == (0, "user/1\n")
    code, out, _ = await pydds_cmd("status", "--json", node=second.node)
    status = json.loads(out)
    assert sorted(m["name"] for m in status["members"]) == ["p1", "p2"]
    db = {"name": "db", "stale_after": None, "expire": None, "ttl": None, "keys": 1}
    assert status["databases"] == [{**db, "held": 1, "stale": 0, "tombstones": 0, "pins": []}]
    code, out, _ = await pydds_cmd("status", node=second.node)
    assert code == 0
    assert "MEMBER" in out
    assert "p1" in out
    code, out, _ = await pydds_cmd("get", "db", "user/1", node=first.node)
    assert json.loads(out) == {"name": "Ada", "age": 36}
    assert (await pydds_cmd("delete", "db", "user/1", "--ack", "all", node=first.node))[0] == 0

    # Exit codes: 1 not found, 2 bad usage, 3 node failed or unreachable.
    code, _, err = await pydds_cmd("get", "db", "user/1", node=first.node)
    assert code == 1
    assert "not_found" in err
    assert (await pydds_cmd("delete", "db", "nothing", node=first.node))[0] == 1
    code, _, err = await pydds_cmd("set", "db", "k", "not json", node=first.node)
    assert code == 2
    assert "not JSON" in err
    assert (await pydds_cmd("set", "bad/db", "k", "1", node=first.node))[0] == 2
    assert (await pydds_cmd("update", "db", "k", "[1]", node=first.node))[0] == 2
    assert (await pydds_cmd("get", "db", node=first.node))[0] == 2
    await pydds_cmd("set", "db", "list", "[1]", node=first.node)
    code, _, err = await pydds_cmd("update", "db", "list", '{"a": 1}', node=first.node)
    assert code == 3
    assert "wrong_type" in err


async def test_options_go_before_or_after_the_command_and_incr_counts(
    served: Callable[..., Awaitable[Served]],
) -> None:
    s = await served("--port", "0", "--name", "o1")
    unreachable = f"127.0.0.1:{free_port()}"  # PYDDS_NODE: overridden by --node
    after = ("--node", s.node)
    assert await pydds_cmd("incr", "db", "c", *after, node=unreachable) == (0, "1\n", "")
    assert await pydds_cmd("--node", s.node, "incr", "db", "c", "5") == (0, "6\n", "")
    code, out, _ = await pydds_cmd("incr", "db", "c", "-2", "--json", *after)
    assert (code, json.loads(out)) == (0, {"value": 4})
    code, out, _ = await pydds_cmd("incr", "db", "c", "--ack", "majority", *after)
    assert (code, out) == (0, "5\n")
    code, out, _ = await pydds_cmd("set", "db", "k", '"v"', "--json", *after)
    assert (code, json.loads(out)) == (0, {"ok": True, "created": True})
    assert await pydds_cmd("keys", "db", "--json", *after) == (0, '["c", "k"]\n', "")
    assert await pydds_cmd("--json", "keys", "db", *after) == (0, '["c", "k"]\n', "")
    code, out, _ = await pydds_cmd("status", *after, "--json")
    assert json.loads(out)["node"]["name"] == "o1"
    # A given option after the command wins over the one before it.
    code, out, _ = await pydds_cmd("--node", unreachable, "get", "db", "k", *after)
    assert (code, out) == (0, '"v"\n')
    code, _, err = await pydds_cmd("incr", "db", "k", *after)
    assert code == 3
    assert "wrong_type" in err
    code, _, err = await pydds_cmd("incr", "db", "c", "x", *after)
    assert code == 2
    assert "'x' is not a valid integer" in err
    assert (await pydds_cmd("get", "db", "c", "--token", "a.b", *after))[0] == 0  # no credentials


def test_ack_help_lists_every_level(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["set", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for level in ("local", "majority", "all", "durable", "durable+majority", "durable+N"):
        assert level in text


async def test_watch_streams_events_as_json_lines(
    served: Callable[..., Awaitable[Served]],
) -> None:
    s = await served("--port", "0", "--name", "w1")
    env = {**os.environ, "PYDDS_NODE": s.node}
    watch = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "pydds", "watch", "db", "--values", "--count", "3"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert watch.stderr is not None
        opened = await asyncio.wait_for(watch.stderr.readline(), 20)
        assert b"watching events" in opened
        await pydds_cmd("set", "db", "k", '"v1"', node=s.node)
        await pydds_cmd("set", "other", "k", '"ignored"', node=s.node)
        await pydds_cmd("emit", "ping", '{"n": 1}', node=s.node)  # no database: filtered
        await pydds_cmd("set", "db", "k", '"v2"', node=s.node)
        await pydds_cmd("delete", "db", "k", node=s.node)
        out, _ = await asyncio.wait_for(watch.communicate(), 20)
    finally:
        if watch.returncode is None:
            watch.kill()
            await watch.wait()
    assert watch.returncode == 0
    events = [json.loads(line) for line in out.decode().splitlines()]
    assert [(e["kind"], e.get("value")) for e in events] == [
        ("created", "v1"),
        ("changed", "v2"),
        ("deleted", None),
    ]


async def test_emit_reaches_a_watcher_of_custom_events(
    served: Callable[..., Awaitable[Served]],
) -> None:
    s = await served("--port", "0")
    async with (
        aiohttp.ClientSession() as session,
        session.get(s.http + "/v1/events", params={"names": "deploy"}) as stream,
    ):
        await stream.content.readline()
        assert (await pydds_cmd("emit", "deploy", '{"v": 3}', node=s.node))[0] == 0
        while not (line := await asyncio.wait_for(stream.content.readline(), 20)).startswith(
            b"data:"
        ):
            pass
    event = json.loads(line[5:])
    assert (event["kind"], event["name"], event["payload"]) == ("custom", "deploy", {"v": 3})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_an_unreachable_node_is_a_clear_error() -> None:
    code, _, err = await pydds_cmd("get", "db", "k", node=f"127.0.0.1:{free_port()}")
    assert code == 3
    assert "cannot reach the node at http://127.0.0.1:" in err
    assert "PYDDS_NODE" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert pydds.__version__ in capsys.readouterr().out


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


@pytest.mark.parametrize(
    "command",
    ["serve", "get", "set", "update", "incr", "delete", "keys", "watch", "emit", "status"],
)
def test_help_everywhere(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert f"Usage: pydds {command}" in capsys.readouterr().out


async def test_modules_by_spec(served: Callable[..., Awaitable[Served]]) -> None:
    s = await served("--port", "0", "--module", "tests.modules_for_tests:Marker?x=1")
    assert "modules: marker" in s.line
    code, out, _ = await pydds_cmd("get", "marks", "started", node=s.node)
    assert (code, json.loads(out)) == (0, {"x": "1"})
    code, _, err = await pydds_cmd(
        "serve", "--port", "0", "--memory", "--module", "tests.nothing:X"
    )
    assert code == 2
    assert "cannot import 'tests.nothing'" in err
    code, _, err = await pydds_cmd(
        "serve", "--port", "0", "--memory", "--module", "tests.modules_for_tests:Broken"
    )
    assert code == 1
    assert "module 'broken' could not start" in err


async def test_a_restarted_nodes_custom_events_are_not_taken_for_duplicates(
    served: Callable[..., Awaitable[Served]],
) -> None:
    a = await served("--port", "0", "--name", "a")
    b = await served("--port", "0", "--name", "b", "--join", a.node)
    await until_member(a, "b")
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(20)) as session,
        session.get(a.http + "/v1/events", params={"kinds": "custom"}) as stream,
    ):
        await stream.content.readline()  # the stream is open

        async def emitted(n: int) -> None:
            async with session.post(b.http + "/v1/events/deploy", json=n) as response:
                assert response.status == 202, await response.text()
            while not (line := await stream.content.readline()).startswith(b"data:"):
                pass
            event = json.loads(line.removeprefix(b"data:"))
            assert (event["origin"], event["payload"]) == ("b", n)

        await emitted(1)
        await emitted(2)
        await stop(b)  # a real restart: the same name, a new process
        b = await served("--port", "0", "--name", "b", "--join", a.node)
        await until_member(a, "b", address="ws://" + b.node)
        await emitted(3)  # its counter starts again; its ids do not repeat
        await emitted(4)


async def test_custom_events_emitted_while_a_node_was_down_reach_it_once_restarted(
    served: Callable[..., Awaitable[Served]], tmp_path: Path
) -> None:
    a = await served("--port", "0", "--name", "a")
    args = ("--port", "0", "--name", "b", "--join", a.node, "--data-dir", str(tmp_path))
    persisted = {"PYDDS_MEMORY": ""}
    b = await served(*args, env=persisted)
    await until_member(a, "b")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(20)) as session:

        async def emit(n: object) -> None:
            async with session.post(a.http + "/v1/events/tick", json=n) as response:
                assert response.status == 202, await response.text()

        ends: list[str] = []

        async def logged_at_b(*wanted: object) -> list[object]:
            """The custom events b's log holds, from the first, once it has ``wanted``
            and then a last one emitted after them (nothing more is on its way)."""
            out: list[object] = []
            end = f"end{len(ends)}"
            params = {"kinds": "custom", "since": "0"}
            async with session.get(b.http + "/v1/events", params=params) as stream:
                async with asyncio.timeout(20):
                    while not out or out[-1] != end:
                        if all(n in out for n in wanted) and end not in ends:
                            ends.append(end)
                            await emit(end)
                        line = await stream.content.readline()
                        if line.startswith(b"data:"):
                            out.append(json.loads(line.removeprefix(b"data:"))["payload"])
            return out[:-1]

        await emit(1)
        await emit(2)
        assert await logged_at_b(1, 2) == [1, 2]
        await stop(b)  # SIGTERM: its log is on disk
        for n in (3, 4, 5):
            await emit(n)  # b hears none of them
        b = await served(*args, env=persisted)  # a real restart, the same store
        await until_member(a, "b", address="ws://" + b.node)
        await emit("back")
        got = await logged_at_b(3, 4, 5, "back")
    # The three missed come again once b's link is back (what a emitted since may
    # come first); nothing b had comes twice.
    assert got[:3] == [1, 2, "end0"]
    assert sorted(map(str, got[3:])) == ["3", "4", "5", "back"]


async def test_status_shows_statistics(served: Callable[..., Awaitable[Served]]) -> None:
    s = await served("--port", "0", "--module", "stats?top=3", "--module", "keep-fresh?pin=cfg")
    assert "modules: stats, keep-fresh" in s.line
    await pydds_cmd("set", "db", "hot", "1", node=s.node)
    await pydds_cmd("get", "db", "hot", node=s.node)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(20)) as session:
        for _ in range(100):  # bounded: until the module has counted the write
            async with session.get(s.http + "/v1/stats") as response:
                body = await response.json()
            if body["modules"]["stats"]["hot_writes"]:
                break
    code, out, _ = await pydds_cmd("status", node=s.node)
    assert code == 0
    assert "HOT KEYS BY WRITES" in out
    assert "HOT KEYS BY READS" in out
    assert "replication: 0 bytes in" in out


async def test_serve_tunes_the_collector_once_started(monkeypatch: pytest.MonkeyPatch) -> None:
    # In process: the node's startup objects and restored keys go out of the
    # collector's way once it serves (the process would hold them to its end).
    import gc

    from pydds.cli.process import serve
    from pydds.serve_config import ServeConfig

    serving = asyncio.Event()

    class Out:
        def write(self, text: str) -> int:
            if "serving on" in text:
                serving.set()
            return len(text)

        def flush(self) -> None:
            pass

    monkeypatch.setattr(sys, "stdout", Out())
    monkeypatch.setattr(pydds.collector, "_tuned", False)  # as it was, afterwards
    stop = asyncio.Event()
    gc.unfreeze()
    thresholds = gc.get_threshold()
    try:
        task = asyncio.ensure_future(serve(ServeConfig(name="frozen", port=0), stop=stop))
        await asyncio.wait_for(serving.wait(), 10)  # its start-up line: it serves
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == pydds.collector.GC_THRESHOLD
        stop.set()
        await asyncio.wait_for(task, 10)
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_serve_on_a_port_in_use_says_so_in_one_line_and_makes_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data = tmp_path / "data"
        done = subprocess.run(
            [sys.executable, "-m", "pydds", "serve", "--port", str(port), "--data-dir", str(data)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 3
    assert done.stderr.strip() == (
        f"error: port {port} is in use (127.0.0.1:{port}): stop what uses it, or choose --port"
    )
    assert not data.exists()


def test_serve_with_a_missing_certificate_says_so_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pydds",
            "serve",
            "--port",
            "0",
            "--memory",
            "--tls-cert",
            str(tmp_path / "none.pem"),
            "--tls-key",
            str(tmp_path / "none.key"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("error: ")


async def test_members_remove_drops_a_killed_node_for_majority_writes(
    served: Callable[..., Awaitable[Served]],
) -> None:
    first = await served("--port", "0", "--name", "m1")
    second = await served("--port", "0", "--name", "m2", "--join", first.node)
    await until_member(first, "m2")
    os.killpg(second.proc.pid, signal.SIGKILL)  # crashed: no Leave
    await second.proc.wait()
    code, out, _ = await pydds_cmd("members", "list", "--json", node=first.node)
    assert code == 0
    assert {m["name"]: m["state"] for m in json.loads(out)}["m2"] != "self"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(20)) as session:
        put = f"{first.http}/v1/databases/db/keys/k"
        async with session.put(put, params={"ack": "majority"}, json=1) as response:
            assert response.status == 504  # m2 still counts: no majority of two
        code, out, _ = await pydds_cmd("members", "remove", "m2", node=first.node)
        assert (code, out) == (0, "OK\n")
        async with session.put(put, params={"ack": "majority"}, json=2) as response:
            assert response.status == 200  # m1 alone is the cluster now
        members = f"{first.http}/v1/cluster/members"
        async with session.delete(f"{members}/m2") as response:
            assert response.status == 404
            assert (await response.json())["error"] == "not_found"
        async with session.delete(f"{members}/m1") as response:
            assert response.status == 400
            assert (await response.json())["error"] == "invalid_value"
    code, _, err = await pydds_cmd("members", "remove", "m2", node=first.node)
    assert code == 1
    assert "not_found" in err


async def test_a_ttl_set_from_the_command_line_survives_a_restart(
    served: Callable[..., Awaitable[Served]], tmp_path: Path
) -> None:
    args = ("--port", "0", "--name", "t1", "--data-dir", str(tmp_path))
    persisted = {"PYDDS_MEMORY": ""}
    s = await served(*args, env=persisted)
    node = ("--node", s.node)
    assert (await pydds_cmd("set", "cache", "long", '{"a": 1}', "--ttl", "300", *node))[0] == 0
    assert (await pydds_cmd("incr", "cache", "short", "--ttl", "0.5", *node))[0] == 0
    short_deadline = time.time() + 0.5
    assert (await pydds_cmd("set", "cache", "kept", "1", *node))[0] == 0
    code, out, _ = await pydds_cmd("ttl", "cache", "long", *node)
    assert code == 0
    assert 290 < float(out) <= 300
    assert await pydds_cmd("ttl", "cache", "kept", *node) == (0, "none\n", "")
    assert await stop(s) == 0

    s = await served(*args, env=persisted)  # the same data: the deadlines came back
    node = ("--node", s.node)
    code, out, _ = await pydds_cmd("ttl", "cache", "long", "--json", *node)
    assert code == 0
    assert 250 < json.loads(out)["ttl"] <= 300
    await asyncio.sleep(max(0.0, short_deadline - time.time()))  # the deadline is a time
    code, _, err = await pydds_cmd("get", "cache", "short", *node)
    assert code == 1
    assert "not_found" in err
    assert (await pydds_cmd("ttl", "cache", "short", *node))[0] == 1
    assert await pydds_cmd("expire", "cache", "kept", "60", *node) == (0, "OK\n", "")
    code, out, _ = await pydds_cmd("ttl", "cache", "kept", *node)
    assert 55 < float(out) <= 60
    assert await pydds_cmd("persist", "cache", "kept", *node) == (0, "OK\n", "")
    assert await pydds_cmd("ttl", "cache", "kept", *node) == (0, "none\n", "")
    assert (await pydds_cmd("expire", "cache", "absent", "5", *node))[0] == 1
    assert (await pydds_cmd("expire", "cache", "kept", "0", *node))[0] == 2
    assert (await pydds_cmd("set", "cache", "kept", "1", "--ttl", "-1", *node))[0] == 2


async def test_batch_commands(served: Callable[..., Awaitable[Served]]) -> None:
    s = await served("--port", "0", "--name", "b1")
    node = ("--node", s.node)
    items = '{"user:1": {"name": "Ada"}, "user:2": 2, "other": 3}'
    assert await pydds_cmd("set-many", "db", items, "--ack", "majority", *node) == (0, "OK\n", "")
    code, out, _ = await pydds_cmd("get-many", "db", "user:2", "nope", "user:1", *node)
    assert (code, json.loads(out)) == (0, {"user:2": 2, "user:1": {"name": "Ada"}})
    assert await pydds_cmd("keys", "db", "--pattern", "user:*", *node) == (
        0,
        "user:1\nuser:2\n",
        "",
    )
    assert await pydds_cmd("delete-many", "db", "user:1", "other", "x", *node) == (0, "2\n", "")
    assert (await pydds_cmd("set-many", "db", "[1]", *node))[0] == 2
    assert (await pydds_cmd("get-many", "db", *node))[0] == 2  # no keys


async def test_a_node_with_a_memory_limit_evicts_to_disk_and_reads_everything_back(
    served: Callable[..., Awaitable[Served]], tmp_path: Path
) -> None:
    args = ("--port", "0", "--name", "m1", "--data-dir", str(tmp_path), "--max-memory", "256KiB")
    persisted = {"PYDDS_MEMORY": ""}
    values = {
        f"user:{i}": {"name": f"u{i}", "age": i, "tags": ["a", "b"], "x": 1.5, "ok": True}
        for i in range(2000)
    }
    s = await served(*args, env=persisted)
    async with aiohttp.ClientSession() as session:
        for start in range(0, 2000, 500):
            batch = dict(list(values.items())[start : start + 500])
            url = f"{s.http}/v1/databases/users/set-many"
            async with session.post(url, json=batch) as response:
                assert response.status == 200
        async with session.get(f"{s.http}/v1/stats") as response:
            memory = (await response.json())["memory"]
        assert memory["limit"] == 256 << 10
        assert memory["used"] <= 256 << 10
        assert memory["evicted"]["disk"] > 1000
        async with session.get(f"{s.http}/metrics") as response:
            text = await response.text()
        assert 'pydds_evictions_total{to="disk"}' in text
        assert "pydds_memory_limit_bytes 262144.0" in text
    code, out, _ = await pydds_cmd("status", "--node", s.node)
    assert code == 0
    assert "limit 262144 bytes, lru" in out
    assert await stop(s) == 0

    s = await served(*args, env=persisted)  # a real restart: every value comes back
    async with aiohttp.ClientSession() as session:
        url = f"{s.http}/v1/databases/users/get-many"
        async with session.post(url, json=list(values)) as response:
            assert response.status == 200
            assert (await response.json())["values"] == values
        async with session.get(f"{s.http}/v1/stats") as response:
            memory = (await response.json())["memory"]
        assert memory["used"] <= 256 << 10
        assert memory["reloaded"]["disk"] > 0


async def test_an_sse_consumer_cut_off_and_a_node_killed_misses_no_event(
    served: Callable[..., Awaitable[Served]], tmp_path: Path
) -> None:
    """A 20,000-event stream read over a connection cut every 300 events, each
    reconnect naming the last event's id, and the node SIGKILLed and restarted
    halfway: every event arrives once, in order."""
    args = ("--port", "0", "--name", "e1", "--data-dir", str(tmp_path))
    persisted = {"PYDDS_MEMORY": ""}
    s = await served(*args, env=persisted)
    keys = [f"k{i:05d}" for i in range(20_000)]
    got: list[str] = []
    last: str | None = None

    async def consume(http: str, until: int) -> None:
        nonlocal last
        async with aiohttp.ClientSession() as session:
            while len(got) < until:
                headers = {"Last-Event-ID": last} if last else {}
                url = f"{http}/v1/events"
                params = {"since": "0", "database": "users", "kinds": "created"}
                async with session.get(url, params=params, headers=headers) as response:
                    assert response.status == 200
                    read = 0
                    async with asyncio.timeout(30):
                        while read < 300 and len(got) < until:
                            line = (await response.content.readline()).decode().rstrip("\n")
                            if line.startswith("id: "):
                                last = line[4:]
                            elif line.startswith("data: "):
                                event = json.loads(line[6:])
                                assert event["kind"] == "created", event  # no gap
                                got.append(event["key"])
                                read += 1
                # leaving the block cuts the connection

    async with aiohttp.ClientSession() as session:
        for start in range(0, 20_000, 1000):
            batch = {key: 1 for key in keys[start : start + 1000]}
            url = f"{s.http}/v1/databases/users/set-many"
            async with session.post(url, json=batch, params={"ack": "durable"}) as response:
                assert response.status == 200  # its events are on disk with it
    await consume(s.http, 10_000)
    os.killpg(s.proc.pid, signal.SIGKILL)
    await s.proc.wait()
    s = await served(*args, env=persisted)
    await consume(s.http, 20_000)
    assert got == keys


async def test_a_deleted_key_is_pruned_after_the_tombstone_horizon_and_stays_gone(
    served: Callable[..., Awaitable[Served]], tmp_path: Path
) -> None:
    # pydds serve --tombstone-horizon 1, with persistence: a deleted key's tombstone
    # goes within the horizon and a quarter, from memory and from the store.
    args = ("--port", "0", "--name", "t1", "--data-dir", str(tmp_path))
    persisted = {"PYDDS_MEMORY": "", "PYDDS_TOMBSTONE_HORIZON": "1"}
    s = await served(*args, env=persisted)
    db = f"{s.http}/v1/databases/sessions"

    async def listing(session: aiohttp.ClientSession) -> dict[str, Any]:
        async with session.get(db) as response:
            assert response.status == 200
            found: dict[str, Any] = await response.json()
            return found

    async with aiohttp.ClientSession() as session:
        for key in ("gone", "kept"):
            async with session.put(f"{db}/keys/{key}", json={"user": key}) as response:
                assert response.status == 201
        async with session.delete(f"{db}/keys/gone") as response:
            assert response.status in (200, 204)
        assert (await listing(session))["tombstones"] == 1
        async with asyncio.timeout(20):
            while True:
                found = await listing(session)
                if not found["tombstones"]:
                    break
                await asyncio.sleep(0.1)  # another process: nothing to await here
        assert found["keys"] == 1
    assert await stop(s) == 0

    s = await served(*args, env=persisted)  # a real restart: the store forgot it too
    db = f"{s.http}/v1/databases/sessions"
    async with aiohttp.ClientSession() as session:
        found = await listing(session)
        assert (found["keys"], found["tombstones"]) == (1, 0)
        async with session.get(f"{db}/keys/gone") as response:
            assert response.status == 404
        async with session.get(f"{db}/keys/kept") as response:
            assert await response.json() == {"user": "kept"}
    assert await stop(s) == 0
