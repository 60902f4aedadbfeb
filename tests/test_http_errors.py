"""Bad input to the HTTP API answered with 4xx JSON errors, never a 500 or a stall:
in process (aiohttp's test client) for plain requests and answers, and against real
``pydds serve`` processes (stopped by their process groups) for connections that
never finish a request, requests aiohttp cannot parse, tokens scoped to one
database, and IPv6."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

import pydds
from pydds.server import make_app

from .helpers import Served, pydds_cmd, stop_process

Serve = Callable[..., Awaitable[Served]]

SECRET = "a-cluster-secret-of-16-bytes-or-more"
TOKEN = "web:web-secret-0123456789:cache:read+write"
ADMIN = {"Authorization": f"Bearer {SECRET}"}
WEB = {"Authorization": "Bearer web.web-secret-0123456789"}
#: Seconds within which the server must have closed a connection (generous: the
#: limits under test are a fraction of a second).
BOUND = 20


def key_url(db: str, key: str) -> str:
    return f"/v1/databases/{quote(db, safe='')}/keys/{quote(key, safe='')}"


@pytest.fixture
async def api() -> AsyncIterator[TestClient[Any, Any]]:
    node = pydds.Node("h1", limits=pydds.Limits(max_value_bytes=4096))
    client: TestClient[Any, Any] = TestClient(TestServer(make_app(node)))
    await client.start_server()
    yield client
    await client.close()


async def error_of(response: aiohttp.ClientResponse) -> tuple[int, str]:
    assert response.headers["Content-Type"].startswith("application/json")
    body = await response.json()
    assert isinstance(body["message"], str)
    assert body["message"]
    return response.status, body["error"]


def port_of(node: Served) -> int:
    return int(node.node.rsplit(":", 1)[1])


async def until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (bounded)."""
    async with asyncio.timeout(BOUND):
        return await reader.read()


async def exchange(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` on a new connection; the status, headers and body of the answer,
    read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        answer = await until_closed(reader)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


# -- bodies and numbers ---------------------------------------------------------------
async def test_bodies_too_deep_or_out_of_range_are_400s(api: TestClient[Any, Any]) -> None:
    url = key_url("cache", "k")
    for deep in (b"[" * 5000 + b"]" * 5000, b'{"a":' * 5000 + b"1" + b"}" * 5000):
        assert await error_of(await api.put(url, data=deep)) == (400, "invalid_value")
        assert await error_of(await api.post("/v1/events/e", data=deep)) == (400, "invalid_value")
    huge_float, huge_int = b"1e400", b"1" + b"0" * 400
    for number in (huge_float, huge_int):
        assert await error_of(await api.put(url, data=number)) == (400, "invalid_value")
        body = b'{"a": ' + number + b"}"
        assert await error_of(await api.patch(url, data=body)) == (400, "invalid_value")
        body = b'{"stale_after": ' + number + b"}"
        response = await api.put("/v1/databases/cache", data=body)
        assert await error_of(response) == (400, "invalid_value")
    assert (await api.put(url, data=b"1e300")).status == 201  # large, and a float
    assert await (await api.get(url)).json() == 1e300
    assert await (await api.get("/v1/databases/cache")).json() == {
        "name": "cache",
        "stale_after": None,
        "expire": None,
        "ttl": None,
        "keys": 1,
        "held": 1,
        "stale": 0,
        "tombstones": 0,
        "pins": [],
    }


async def test_a_body_that_is_not_its_content_encoding(api: TestClient[Any, Any]) -> None:
    url = key_url("cache", "k")
    gzip_header = {"Content-Encoding": "gzip"}
    response = await api.put(url, data=b"not gzip at all", headers=gzip_header)
    assert await error_of(response) == (400, "bad_json")
    response = await api.put(url, data=gzip.compress(b'{"z": 1}'), headers=gzip_header)
    assert response.status == 201  # a body that is gzip is read
    assert await (await api.get(url)).json() == {"z": 1}


@pytest.mark.parametrize(
    "number",
    ["\N{SUPERSCRIPT TWO}", "\N{ARABIC-INDIC DIGIT THREE}", "1" * 5000, "1_0", " 1", "0x1"],
)
async def test_numbers_in_the_query_are_ascii_digits(
    api: TestClient[Any, Any], number: str
) -> None:
    url = key_url("cache", "n")
    for ack in (number, f"durable+{number}"):
        response = await api.put(url, json=1, params={"ack": ack})
        assert await error_of(response) == (400, "invalid_value")
    response = await api.post(url + "/incr", params={"amount": number})
    assert await error_of(response) == (400, "invalid_value")
    assert await error_of(await api.get(url)) == (404, "not_found")  # nothing written
    assert await (await api.post(url + "/incr", params={"amount": "-3"})).json() == {"value": -3}


async def test_keys_with_escapes_that_are_not_utf8_are_refused(
    api: TestClient[Any, Any],
) -> None:
    literal = key_url("db", "%FF%FE")  # the key of those six characters: %25FF%25FE
    assert (await api.put(literal, json="literal")).status == 201
    for raw in ("%FF%FE", "%ED%A0%80", "%C0%AF"):  # not UTF-8
        url = f"/v1/databases/db/keys/{raw}"
        for method in ("GET", "PUT", "PATCH", "DELETE"):
            response = await api.request(method, url, json={"a": 1})
            assert await error_of(response) == (400, "invalid_name"), (method, raw)
    assert await (await api.get("/v1/databases/db/keys")).json() == ["%FF%FE"]
    assert await (await api.get(literal)).json() == "literal"  # not aliased, not changed
    response = await api.get("/v1/databases/db/keys?prefix=%FF")
    assert await error_of(response) == (400, "invalid_name")


async def test_every_route_checks_its_names(api: TestClient[Any, Any]) -> None:
    long_key = key_url("db", "k" * 1025)
    await api.put(key_url("db", "k"), json=1)
    for method in ("GET", "PUT", "PATCH", "DELETE"):
        response = await api.request(method, long_key, json={"a": 1})
        assert await error_of(response) == (400, "invalid_name"), method
    response = await api.post(long_key + "/incr")
    assert await error_of(response) == (400, "invalid_name")
    for path in ("/v1/databases/a%20b", "/v1/databases/a%20b/keys", key_url("a b", "k")):
        assert await error_of(await api.get(path)) == (400, "invalid_name"), path
    for query in ("database=a%20b", "database=", "names=ok,a%20b", "database=%FF"):
        response = await api.get(f"/v1/events?{query}")
        assert response.headers["Content-Type"].startswith("application/json"), query
        assert await error_of(response) == (400, "invalid_name"), query
    response = await api.head("/v1/events")  # a stream has no end: no HEAD
    assert response.status == 405


#: Every route with a database name or a key in its path: the method and the path
#: for a database and a key, each percent-encoded.
ROUTES: list[tuple[str, Callable[[str, str], str]]] = [
    ("GET", lambda db, key: key_url(db, key)),
    ("PUT", lambda db, key: key_url(db, key)),
    ("PATCH", lambda db, key: key_url(db, key)),
    ("DELETE", lambda db, key: key_url(db, key)),
    ("POST", lambda db, key: key_url(db, key) + "/incr"),
    ("GET", lambda db, key: key_url(db, key) + "/info"),
    ("GET", lambda db, key: f"/v1/databases/{quote(db, safe='')}"),
    ("PUT", lambda db, key: f"/v1/databases/{quote(db, safe='')}"),
    ("GET", lambda db, key: f"/v1/databases/{quote(db, safe='')}/keys"),
    ("GET", lambda db, key: f"/v1/events?database={quote(db, safe='')}"),
]


@pytest.mark.parametrize(
    "db",
    ["bad name", "", ".x", "-x", "d" * 129, "a/b", "é"],
    ids=["space", "empty", "dot", "dash", "too long", "slash", "non-ASCII"],
)
async def test_a_bad_database_name_gets_one_answer_everywhere(
    api: TestClient[Any, Any], db: str
) -> None:
    for method, url in ROUTES:
        response = await api.request(method, url(db, "k"), json={"stale_after": None})
        assert await error_of(response) == (400, "invalid_name"), (method, url(db, "k"))


@pytest.mark.parametrize("key", ["", "k" * 1025], ids=["empty", "too long"])
async def test_a_bad_key_gets_one_answer_whether_its_database_exists(
    api: TestClient[Any, Any], key: str
) -> None:
    assert (await api.put(key_url("db", "k"), json=1)).status == 201
    for db in ("db", "nodb"):  # the second one this node does not know
        for method, url in ROUTES[:6]:
            response = await api.request(method, url(db, key), json={"a": 1})
            assert await error_of(response) == (400, "invalid_name"), (method, db)
    only = {"name": "db", "stale_after": None, "expire": None, "ttl": None, "keys": 1}
    only |= {"held": 1, "stale": 0, "tombstones": 0, "pins": []}
    assert await (await api.get("/v1/databases")).json() == {"databases": [only]}


async def test_a_key_with_a_newline_is_addressable(api: TestClient[Any, Any]) -> None:
    url = key_url("db", "line 1\nline 2")
    assert (await api.put(url, json="two lines")).status == 201
    assert await (await api.get(url)).json() == "two lines"
    assert (await api.patch(url, json={"a": 1})).status == 409  # found: not a dict
    assert (await api.post(key_url("db", "n\n") + "/incr")).status == 200
    assert (await api.delete(url)).status == 200
    assert await (await api.get("/v1/databases/db/keys")).json() == ["n\n"]


async def test_event_kinds_are_checked(api: TestClient[Any, Any]) -> None:
    for query in ("kinds=", "kinds=,", "kinds=changed,nonsense"):
        response = await api.get(f"/v1/events?{query}")
        assert await error_of(response) == (400, "invalid_value"), query


async def test_escapes_that_are_not_escapes_are_refused(served: Serve) -> None:
    # Over a raw socket: a client library would encode these "%"s as "%25".
    s = await served("--port", "0")
    for raw in ("%zz", "a%F", "%"):
        status, _, body = await exchange(
            port_of(s),
            f"GET /v1/databases/db/keys/{raw} HTTP/1.1\r\nHost: pydds\r\n"
            "Connection: close\r\n\r\n".encode(),
        )
        assert (status, json.loads(body)["error"]) == (400, "invalid_name"), raw
    status, _, body = await exchange(
        port_of(s),
        b"GET /v1/events?database=%zz HTTP/1.1\r\nHost: pydds\r\nConnection: close\r\n\r\n",
    )
    assert (status, json.loads(body)["error"]) == (400, "invalid_name")


async def test_the_longest_key_of_emoji_is_addressable(served: Serve) -> None:
    s = await served("--port", "0")
    url = s.http + key_url("db", "\N{GRINNING FACE}" * 1024)  # 12 KiB percent-encoded
    async with aiohttp.ClientSession() as session:
        async with session.put(url, json="smile") as response:
            assert response.status == 201, await response.text()
        async with session.get(url) as response:
            assert await response.json() == "smile"
        async with session.delete(url + "%F0%9F%98%80") as response:  # 1025: too long
            assert await error_of(response) == (400, "invalid_name")


async def test_a_link_request_without_upgrade_is_a_bad_request(served: Serve) -> None:
    s = await served("--port", "0")
    async with aiohttp.ClientSession() as session, session.get(s.http + "/v1/link") as response:
        assert await error_of(response) == (400, "bad_request")


# -- connections that never finish a request --------------------------------------------


async def test_connections_sending_half_a_header_are_closed(served: Serve) -> None:
    # Idle connections have a minute: what closes these is the header timeout.
    s = await served("--port", "0", "--http-header-timeout", "0.5", "--http-idle-timeout", "60")
    connections = [await asyncio.open_connection("127.0.0.1", port_of(s)) for _ in range(100)]
    try:
        for _, writer in connections:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: pydds\r\nX-Slow: ")
            await writer.drain()
        for reader, _ in connections:
            assert await until_closed(reader) == b""  # closed, nothing answered
    finally:
        for _, writer in connections:
            writer.close()
    async with aiohttp.ClientSession() as session, session.get(s.http + "/healthz") as response:
        assert response.status == 200  # and the node serves on


async def test_idle_connections_are_closed(served: Serve) -> None:
    s = await served("--port", "0", "--http-idle-timeout", "0.5", "--http-header-timeout", "60")
    silent_reader, silent = await asyncio.open_connection("127.0.0.1", port_of(s))
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(s))
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: pydds\r\n\r\n")  # keep-alive
        await writer.drain()
        answer = await until_closed(reader)  # answered, then closed once idle
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert b'"status": "ok"' in answer
        assert await until_closed(silent_reader) == b""  # never sent a byte
    finally:
        writer.close()
        silent.close()


async def test_a_slow_body_is_not_cut_by_the_header_timeout(served: Serve) -> None:
    s = await served("--port", "0", "--http-header-timeout", "0.3")
    body = b'{"value": "sent slowly"}'
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(s))
    try:
        writer.write(
            b"PUT /v1/databases/db/keys/k HTTP/1.1\r\nHost: pydds\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        for i in range(0, len(body), 6):  # over a second: longer than a head may take
            writer.write(body[i : i + 6])
            await writer.drain()
            await asyncio.sleep(0.3)  # the point: the client is slow
        answer = await until_closed(reader)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 201 "), answer


# -- what aiohttp cannot parse ------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"NOT AN HTTP REQUEST\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: pydds\r\nA Bad Header\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: pydds\r\nX-Long: " + b"x" * 10_000 + b"\r\n\r\n",
        b"GET /" + b"x" * 20_000 + b" HTTP/1.1\r\nHost: pydds\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: pydds\r\nContent-Length: many\r\n\r\n",
    ],
    ids=["request line", "header", "long header", "long request line", "content length"],
)
async def test_requests_aiohttp_cannot_parse_get_json_errors(
    served: Serve, request_bytes: bytes
) -> None:
    s = await served("--port", "0")
    status, headers, body = await exchange(port_of(s), request_bytes)
    assert status == 400
    assert headers["Content-Type"].startswith("application/json")
    answer = json.loads(body)
    assert answer["error"] == "bad_request"
    assert isinstance(answer["message"], str)
    assert answer["message"]


async def test_a_body_that_is_not_its_content_encoding_is_a_400(served: Serve) -> None:
    s = await served("--port", "0")
    for encoding in (b"gzip", b"deflate", b"br"):
        request = (
            b"PUT /v1/databases/db/keys/k HTTP/1.1\r\nHost: pydds\r\n"
            b"Content-Encoding: " + encoding + b"\r\nContent-Length: 8\r\n\r\nnot gzip"
        )
        status, headers, body = await exchange(port_of(s), request)
        assert status == 400, (encoding, body)
        assert headers["Content-Type"].startswith("application/json")
        assert json.loads(body)["error"] in ("bad_json", "bad_request")
    async with (
        aiohttp.ClientSession() as session,
        session.get(s.http + "/v1/databases/db/keys/k") as response,
    ):
        assert response.status == 404  # nothing was written


# -- scopes -------------------------------------------------------------------------------


async def test_health_and_metrics_show_nothing_beyond_a_token_s_scope(served: Serve) -> None:
    s = await served("--port", "0", "--secret", SECRET, "--token", TOKEN)
    async with aiohttp.ClientSession() as session:
        for db in ("cache", "billing"):
            url = f"{s.http}/v1/databases/{db}/keys/k"
            async with session.put(url, json=1, headers=ADMIN) as response:
                assert response.status == 201
        async with session.get(s.http + "/healthz") as response:
            health = await response.json()
        assert set(health) == {"status", "node", "version"}
        assert "billing" not in json.dumps(health)
        async with session.get(s.http + "/metrics", headers=WEB) as response:
            assert response.status == 200
            scoped = await response.text()
        async with session.get(s.http + "/metrics", headers=ADMIN) as response:
            everything = await response.text()
        async with session.get(s.http + "/v1/stats", headers=WEB) as response:
            assert await response.json() == {"events": {}, "modules": {}}
        async with session.get(s.http + "/v1/stats", headers=ADMIN) as response:
            assert (await response.json())["events"]["created"] == 2
    assert 'pydds_keys{database="cache"} 1.0' in scoped
    assert "billing" not in scoped
    assert "pydds_events_total" not in scoped  # the node's figures count every database
    assert "pydds_members" not in scoped
    assert 'pydds_keys{database="billing"} 1.0' in everything
    assert 'pydds_events_total{kind="created"} 2.0' in everything


# -- IPv6 -----------------------------------------------------------------------------------


def _ipv6_loopback() -> bool:
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        return False
    return True


def _free_ipv6_port() -> int:
    with socket.create_server(("::1", 0), family=socket.AF_INET6) as sock:
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def served6() -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """Starts ``pydds serve`` processes on [::1]; each gives the http address it
    printed, and is stopped by its process group at the end."""
    procs: list[asyncio.subprocess.Process] = []

    async def start(*args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pydds",
            "serve",
            "--memory",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        procs.append(proc)
        assert proc.stdout is not None
        try:
            line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            raise
        match = re.search(r"serving on (http://\[::1\]:\d+) ", line)
        assert match, line
        return match.group(1)

    yield start
    for proc in procs:
        await stop_process(proc)


@pytest.mark.skipif(not _ipv6_loopback(), reason="this machine has no IPv6 loopback")
async def test_a_cluster_of_two_processes_on_ipv6(
    served6: Callable[..., Awaitable[str]],
) -> None:
    a = await served6("--host", "::1", "--port", "0", "--name", "a")
    port = _free_ipv6_port()
    b = await served6(
        "--host", "[::1]", "--port", str(port), "--name", "b",
        "--join", a.removeprefix("http://"), "--advertise", f"[::1]:{port}",
    )  # fmt: skip
    assert b == f"http://[::1]:{port}"
    async with aiohttp.ClientSession() as session:
        async with asyncio.timeout(20):
            while True:  # another process: poll its member list
                async with session.get(a + "/v1/cluster") as response:
                    cluster: dict[str, Any] = await response.json()
                members = {m["name"]: m for m in cluster["members"]}
                if members.get("b", {}).get("state") == "alive":
                    break
                await asyncio.sleep(0.05)
        assert cluster["node"]["address"] == a.replace("http://", "ws://")
        assert members["b"]["address"] == f"ws://[::1]:{port}"
        # ack=all: b's acknowledgement comes over the link between the processes.
        async with session.put(a + "/v1/databases/db/keys/k?ack=all", json="v6") as response:
            assert response.status == 201, await response.text()
    code, out, err = await pydds_cmd("get", "db", "k", node=b.removeprefix("http://"))
    assert (code, out.strip()) == (0, '"v6"'), err


async def test_an_ipv6_address_without_brackets_is_a_usage_error() -> None:
    code, _, err = await pydds_cmd("serve", "--memory", "--port", "0", "--join", "::1:7400")
    assert code == 2
    assert "[::1]:7400" in err  # the message says how to write it
    code, _, err = await pydds_cmd("get", "db", "k", node="::1:7400")
    assert code == 2
    assert "--node" in err
    assert "[::1]:7400" in err
