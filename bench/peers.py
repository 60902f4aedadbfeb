"""What pydds users would pick instead, measured on this machine: Redis through
redis-py (a real ``redis-server`` started here on a free loopback port, no
persistence) and pycrdt-websocket over aiohttp (a small channel adapter).

Used by ``bench/run.py``; each role that needs a process of its own runs this file
again (``--role redis-sub`` or ``--role ycrdt-server``). Servers are started in
their own process group and stopped by it; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from cluster import PACE, now_ns, percentile, run, spawn, stop

VALUE = "x" * 100
LATENCY_SAMPLES = 2000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- Redis -------------------------------------------------------------------------------


@contextlib.contextmanager
def redis_server() -> Iterator[int]:
    """A ``redis-server`` on a free 127.0.0.1 port, no persistence; yields the port."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        import redis

        client = redis.Redis(port=port)
        for _ in range(200):  # bounded: up to 10 s for it to answer
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    break
            time.sleep(0.05)
        else:
            raise RuntimeError("redis-server did not start")
        client.close()
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def redis_version() -> str:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=True)
    return out.stdout.split()[2].removeprefix("v=")


def redis_commands(port: int, pipelined: int) -> dict[str, float]:
    """GET and SET round trips (p50, p99) and pipelined SET throughput via redis-py."""
    import redis

    client = redis.Redis(port=port)
    client.set("k", VALUE)
    figures: dict[str, float] = {}
    for name, call in (("set", lambda: client.set("k", VALUE)), ("get", lambda: client.get("k"))):
        samples = []
        for _ in range(LATENCY_SAMPLES):
            start = time.perf_counter_ns()
            call()
            samples.append((time.perf_counter_ns() - start) / 1000)
        figures[f"{name}_p50_us"] = percentile(samples, 0.5)
        figures[f"{name}_p99_us"] = percentile(samples, 0.99)
    get = client.get
    start = time.perf_counter()
    for _ in range(LATENCY_SAMPLES):
        get("k")
    figures["get_per_s"] = round(LATENCY_SAMPLES / (time.perf_counter() - start))
    start = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    for i in range(pipelined):
        pipe.set(f"k{i % 1000}", VALUE)
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    figures["pipelined_set_per_s"] = round(pipelined / (time.perf_counter() - start))
    client.close()
    return figures


def redis_subscriber(port: int) -> None:
    """The subscribing process: a receive time per message; at "done", print them."""
    import redis

    client = redis.Redis(port=port)
    pubsub = client.pubsub()
    pubsub.subscribe("bench")
    confirmed = pubsub.get_message(timeout=10)  # the server has the subscription
    assert confirmed is not None, "no subscribe confirmation"
    assert confirmed["type"] == "subscribe", confirmed
    print(json.dumps({"ready": True}), flush=True)
    times: list[int] = []
    for message in pubsub.listen():
        if message["type"] != "message":
            continue
        if message["data"] == b"done":
            print(json.dumps(times), flush=True)
            times = []
        else:
            times.append(now_ns())


async def redis_pubsub(port: int, messages: int) -> dict[str, float]:
    """PUBLISH -> subscriber: one-way latency (p50, p99), and pipelined throughput."""
    import redis

    proc, _ = await spawn_peer("--role", "redis-sub", "--port", str(port))
    assert proc.stdout is not None
    client = redis.Redis(port=port)
    try:
        sent = []
        for i in range(LATENCY_SAMPLES):
            sent.append(now_ns())
            client.publish("bench", VALUE + str(i))
            await asyncio.sleep(PACE)
        client.publish("bench", "done")
        received = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
        latencies = [(r - s) / 1000 for s, r in zip(sent, received, strict=False)]
        start = now_ns()
        pipe = client.pipeline(transaction=False)
        for i in range(messages):
            pipe.publish("bench", VALUE)
            if i % 1000 == 999:
                pipe.execute()
        pipe.publish("bench", "done")
        pipe.execute()
        received = json.loads(await asyncio.wait_for(proc.stdout.readline(), 120))
        rate = len(received) / ((received[-1] - start) / 1e9)
        return {
            "publish_p50_us": percentile(latencies, 0.5),
            "publish_p99_us": percentile(latencies, 0.99),
            "pipelined_publish_per_s": round(rate),
        }
    finally:
        client.close()
        stop(proc)
        await proc.wait()


# -- pycrdt-websocket over aiohttp ------------------------------------------------------


class AiohttpChannel:
    """A pycrdt ``Channel`` over an aiohttp WebSocket (either end)."""

    def __init__(self, ws: Any, path: str) -> None:
        self._ws = ws
        self._path = path

    @property
    def path(self) -> str:
        return self._path

    def __aiter__(self) -> AiohttpChannel:
        return self

    async def __anext__(self) -> bytes:
        from aiohttp import WSMsgType

        message = await self._ws.receive()
        if message.type is not WSMsgType.BINARY:
            raise StopAsyncIteration
        data: bytes = message.data
        return data

    async def send(self, message: bytes) -> None:
        await self._ws.send_bytes(message)

    async def recv(self) -> bytes:
        return await self.__anext__()


async def ycrdt_server(port: int) -> None:
    """The serving process: a pycrdt-websocket room; a receive time per update of its
    document; ``GET /results`` returns them (and starts again)."""
    from aiohttp import web
    from pycrdt.websocket import WebsocketServer

    times: list[int] = []
    async with WebsocketServer(auto_clean_rooms=False) as server:
        room = await server.get_room("/bench")
        room.ydoc.observe(lambda event: times.append(now_ns()))

        async def websocket(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse(max_msg_size=0)
            await ws.prepare(request)
            await server.serve(AiohttpChannel(ws, "/bench"))
            return ws

        async def results(request: web.Request) -> web.Response:
            out = list(times)
            times.clear()
            return web.json_response(out)

        app = web.Application()
        app.router.add_get("/bench", websocket)
        app.router.add_get("/results", results)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print(json.dumps({"address": f"http://127.0.0.1:{port}"}), flush=True)
        await asyncio.Event().wait()


async def _results(session: Any, base: str, expect: int) -> list[int]:
    """The server's receive times once ``expect`` updates arrived (bounded: 120 s)."""
    got: list[int] = []
    async with asyncio.timeout(120):
        while len(got) < expect:
            async with session.get(f"{base}/results") as response:
                got += await response.json()
            if len(got) < expect:
                await asyncio.sleep(0.05)
    return got


async def ycrdt_path(writes: int) -> dict[str, float]:
    """One document, the client writing: update latency one way, streamed updates."""
    import aiohttp
    from pycrdt import Doc, Map, Provider

    proc, info = await spawn_peer("--role", "ycrdt-server", "--port", str(free_port()))
    base = info["address"]
    try:
        doc = Doc()
        root = doc.get("bench", type=Map)
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"{base.replace('http', 'ws', 1)}/bench") as ws,
            Provider(doc, AiohttpChannel(ws, "/bench")),
        ):
            root["warm"] = 1
            await _results(session, base, 1)
            sent = []
            for i in range(LATENCY_SAMPLES):
                sent.append(now_ns())
                root[f"k{i % 100}"] = Map({"payload": "x" * 80, "n": i})
                await asyncio.sleep(PACE)
            received = await _results(session, base, LATENCY_SAMPLES)
            latencies = [(r - s) / 1000 for s, r in zip(sent, received, strict=False)]
            start = now_ns()
            for i in range(writes):
                root[f"k{i % 100}"] = Map({"payload": "x" * 80, "n": i})
                if i % 100 == 99:
                    await asyncio.sleep(0)  # let the provider send
            received = await _results(session, base, writes)
            rate = len(received) / ((received[-1] - start) / 1e9)
        return {
            "update_p50_us": percentile(latencies, 0.5),
            "update_p99_us": percentile(latencies, 0.99),
            "updates_per_s": round(rate),
        }
    finally:
        stop(proc)
        await proc.wait()


async def spawn_peer(*args: str) -> tuple[asyncio.subprocess.Process, dict[str, Any]]:
    """This file as a process of its own (in its own process group)."""
    return await spawn(*args, script=__file__)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", choices=["redis-sub", "ycrdt-server"], required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if args.role == "redis-sub":
        redis_subscriber(args.port)
    else:
        run(ycrdt_server(args.port))


if __name__ == "__main__":
    sys.exit(main())
