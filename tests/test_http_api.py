"""The JSON HTTP API, in process: every route and every error code."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

import pydds
from pydds.clock import FakeClock
from pydds.net.memory import MemoryNetwork
from pydds.server import make_app

FAST = pydds.ClusterSettings(pull_timeout=0.2, ack_timeout=0.2, join_timeout=2.0)


def key_url(db: str, key: str) -> str:
    return f"/v1/databases/{quote(db, safe='')}/keys/{quote(key, safe='')}"


async def serve(node: pydds.Node) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = TestClient(TestServer(make_app(node)))
    await client.start_server()
    return client


@pytest.fixture
async def api() -> AsyncIterator[TestClient[Any, Any]]:
    client = await serve(pydds.Node("h1", limits=pydds.Limits(max_value_bytes=4096)))
    yield client
    await client.close()


async def error_of(response: aiohttp.ClientResponse) -> tuple[int, str]:
    body = await response.json()
    assert isinstance(body["message"], str)
    assert body["message"]
    return response.status, body["error"]


async def test_health_cluster_and_databases(api: TestClient[Any, Any]) -> None:
    response = await api.get("/healthz")
    assert response.status == 200
    assert (await response.json())["status"] == "ok"
    await api.put(key_url("cache", "k"), json=1)
    cluster = await (await api.get("/v1/cluster")).json()
    assert cluster["node"] == {"name": "h1", "address": None, "role": "node"}
    assert [m["name"] for m in cluster["members"]] == ["h1"]
    listing = await (await api.get("/v1/databases")).json()
    cache = {"name": "cache", "stale_after": None, "expire": None, "ttl": None, "keys": 1}
    assert listing == {"databases": [{**cache, "held": 1, "stale": 0, "tombstones": 0, "pins": []}]}


async def test_a_database_s_staleness_time(api: TestClient[Any, Any]) -> None:
    assert await error_of(await api.get("/v1/databases/sessions")) == (404, "not_found")
    response = await api.put("/v1/databases/sessions", json={"stale_after": 60})
    assert response.status == 200
    assert "Deprecation" not in response.headers
    sessions = {"name": "sessions", "stale_after": 60, "expire": 60, "ttl": None, "keys": 0}
    sessions |= {"held": 0, "stale": 0, "tombstones": 0, "pins": []}
    assert await response.json() == sessions
    await api.put(key_url("sessions", "s1"), json=1)
    got = await (await api.get("/v1/databases/sessions")).json()
    assert got == {**sessions, "keys": 1, "held": 1}
    response = await api.put("/v1/databases/sessions", json={"stale_after": None})
    assert (await response.json())["stale_after"] is None
    bad_bodies: list[object] = [{"stale_after": -1}, {"stale_after": "soon"}, {"ttl": 0}, [60]]
    bad_bodies += [{"stale_after": True}, {"stale_after": 5, "expire": 5}, {}, {"ttl": "1"}]
    bad_bodies += [{"stale": 5}]
    for bad in bad_bodies:
        response = await api.put("/v1/databases/sessions", json=bad)
        assert await error_of(response) == (400, "invalid_value"), bad
    response = await api.put("/v1/databases/bad%20name", json={"stale_after": 5})
    assert await error_of(response) == (400, "invalid_name")
    assert (await (await api.get("/v1/databases/sessions")).json())["stale_after"] is None


async def test_expire_is_the_former_name_of_stale_after(api: TestClient[Any, Any]) -> None:
    """Older callers' body still works; the answer says it is deprecated."""
    response = await api.put("/v1/databases/sessions", json={"expire": 30})
    assert response.status == 200
    assert response.headers["Deprecation"] == "true"
    assert (await response.json())["stale_after"] == 30
    response = await api.put("/v1/databases/sessions", json={"expire": -1})
    assert await error_of(response) == (400, "invalid_value")


async def test_put_get_patch_delete_and_keys(api: TestClient[Any, Any]) -> None:
    url = key_url("cache", "user:1")
    response = await api.put(url, json={"name": "Ada", "tags": ["x"]})
    assert response.status == 201
    assert (await response.json())["created"] is True
    response = await api.put(url, json={"name": "Ada", "langs": ["en"]})
    assert response.status == 200
    assert (await api.patch(url, json={"age": 36})).status == 200
    assert await (await api.get(url)).json() == {"name": "Ada", "langs": ["en"], "age": 36}
    await api.put(key_url("cache", "user:2"), data=b"null")
    await api.put(key_url("cache", "other"), json=[1.5, True, "s"])
    keys = await (await api.get("/v1/databases/cache/keys", params={"prefix": "user:"})).json()
    assert keys == ["user:1", "user:2"]
    assert await (await api.get(key_url("cache", "user:2"))).json() is None
    assert (await api.delete(url)).status == 200
    assert await error_of(await api.get(url)) == (404, "not_found")
    assert await error_of(await api.delete(url)) == (404, "not_found")


async def test_keys_may_hold_any_character(api: TestClient[Any, Any]) -> None:
    keys = ["a/b", "../../etc/passwd", "x?y=1&z#frag", "100%", "sp ace", "ünï/cödé", "a//b/"]
    for i, key in enumerate(keys):
        assert (await api.put(key_url("db", key), json=i)).status == 201
    for i, key in enumerate(keys):
        assert await (await api.get(key_url("db", key))).json() == i
    assert await (await api.get("/v1/databases/db/keys")).json() == sorted(keys)


async def test_ack_levels(api: TestClient[Any, Any]) -> None:
    url = key_url("cache", "k")
    for ack in ("local", "majority", "all", "1"):
        assert (await api.put(url, json=ack, params={"ack": ack})).status in (200, 201)
    assert await error_of(await api.put(url, json=1, params={"ack": "most"})) == (
        400,
        "invalid_value",
    )
    assert await error_of(await api.put(url, json=1, params={"ack": "0"})) == (
        400,
        "invalid_value",
    )


async def test_client_errors(api: TestClient[Any, Any]) -> None:
    url = key_url("cache", "k")
    bad_json = await api.put(url, data=b"{not json", headers={"Content-Type": "application/json"})
    assert await error_of(bad_json) == (400, "bad_json")
    assert await error_of(await api.put(url, data=b"NaN")) == (400, "bad_json")
    assert await error_of(await api.put(url, data=b"\xff\xfe")) == (400, "bad_json")
    deep: Any = 1
    for _ in range(100):
        deep = [deep]
    assert await error_of(await api.put(url, json=deep)) == (400, "invalid_value")
    # Larger than max_value_bytes once packed, but within the body limit.
    assert await error_of(await api.put(url, json="x" * 5000)) == (400, "invalid_value")
    # Larger than the body limit: refused before it is read.
    too_large = await api.put(url, data=b'"' + b"x" * 100_000 + b'"')
    assert await error_of(too_large) == (413, "too_large")
    assert await error_of(await api.put(key_url("bad/name", "k"), json=1)) == (
        400,
        "invalid_name",
    )
    assert await error_of(await api.patch(url, json=[1, 2])) == (400, "invalid_value")
    await api.put(url, json=[1, 2])
    assert await error_of(await api.patch(url, json={"a": 1})) == (409, "wrong_type")
    assert await error_of(await api.get(key_url("nodb", "k"))) == (404, "not_found")
    assert await error_of(await api.get("/v1/databases/nodb/keys")) == (404, "not_found")
    assert await error_of(await api.post("/v1/databases")) == (405, "method_not_allowed")
    assert await error_of(await api.get("/v2/anything")) == (404, "not_found")
    assert await error_of(await api.post("/v1/events/bad name", json=1)) == (
        400,
        "invalid_name",
    )
    # Nothing of the above changed anything, and the node still serves.
    assert await (await api.get(url)).json() == [1, 2]
    assert await (await api.get("/v1/databases/cache/keys")).json() == ["k"]


async def read_events(response: aiohttp.ClientResponse, n: int) -> list[dict[str, Any]]:
    """The next ``n`` events of a Server-Sent Events stream."""
    events: list[dict[str, Any]] = []
    kind = None
    async with asyncio.timeout(5):
        while len(events) < n:
            line = (await response.content.readline()).decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                event = json.loads(line[6:])
                assert event["kind"] == kind
                events.append(event)
    return events


async def test_event_stream_filters_and_values(api: TestClient[Any, Any]) -> None:
    params = {"database": "cache", "prefix": "user:", "kinds": "created,changed", "values": "1"}
    response = await api.get("/v1/events", params=params)
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    assert (await response.content.readline()).startswith(b":")  # the stream is open
    await api.put(key_url("cache", "other"), json=0)  # another prefix
    await api.put(key_url("elsewhere", "user:1"), json=0)  # another database
    await api.put(key_url("cache", "user:1"), json={"a": 1})
    await api.patch(key_url("cache", "user:1"), json={"b": 2})
    await api.delete(key_url("cache", "user:1"))  # a kind not asked for
    await api.put(key_url("cache", "user:2"), json="last")
    events = await read_events(response, 3)
    assert [(e["kind"], e["key"]) for e in events] == [
        ("created", "user:1"),
        ("changed", "user:1"),
        ("created", "user:2"),
    ]
    assert events[0]["origin"] == "h1"
    assert events[2]["value"] == "last"
    response.close()


async def test_custom_events_over_http(api: TestClient[Any, Any]) -> None:
    response = await api.get("/v1/events", params={"kinds": "custom", "names": "ping"})
    await response.content.readline()
    assert (await api.post("/v1/events/pong", json=1)).status == 202
    assert (await api.post("/v1/events/ping", json={"n": 1})).status == 202
    assert (await api.post("/v1/events/ping")).status == 202  # no body: null payload
    events = await read_events(response, 2)
    assert [(e["name"], e["payload"]) for e in events] == [("ping", {"n": 1}), ("ping", None)]
    response.close()


async def read_ids(response: aiohttp.ClientResponse, n: int) -> list[tuple[int, dict[str, Any]]]:
    """The next ``n`` events of a stream with their ``id:`` lines."""
    out: list[tuple[int, dict[str, Any]]] = []
    ident = 0
    async with asyncio.timeout(5):
        while len(out) < n:
            line = (await response.content.readline()).decode().rstrip("\n")
            if line.startswith("id: "):
                ident = int(line[4:])
            elif line.startswith("data: "):
                out.append((ident, json.loads(line[6:])))
    return out


async def test_a_stream_resumes_after_its_last_event_id(api: TestClient[Any, Any]) -> None:
    for i in range(5):
        await api.put(key_url("cache", f"k{i}"), json=i)
    response = await api.get("/v1/events", params={"since": "0", "database": "cache"})
    events = await read_ids(response, 5)
    assert [e["key"] for _, e in events] == [f"k{i}" for i in range(5)]
    assert all(ident == e["offset"] for ident, e in events)
    response.close()
    # A reconnect names the last event it had: the stream resumes right after it,
    # the live events following the replayed ones.
    last = events[2][0]
    response = await api.get(
        "/v1/events", params={"since": "0"}, headers={"Last-Event-ID": str(last)}
    )
    await api.put(key_url("cache", "k5"), json=5)
    assert [e["key"] for _, e in await read_ids(response, 3)] == ["k3", "k4", "k5"]
    response.close()
    for bad in ("-1", "1.5", "x", "9" * 19, "\u0661"):  # the last: an Arabic-Indic one
        assert await error_of(await api.get("/v1/events", params={"since": bad})) == (
            400,
            "invalid_value",
        )
    bad_header = await api.get("/v1/events", headers={"Last-Event-ID": "nope"})
    assert await error_of(bad_header) == (400, "invalid_value")


async def test_event_stream_rejects_unknown_kinds(api: TestClient[Any, Any]) -> None:
    response = await api.get("/v1/events", params={"kinds": "created,exploded"})
    assert await error_of(response) == (400, "invalid_value")


async def test_metrics(api: TestClient[Any, Any]) -> None:
    await api.put(key_url("cache", "a"), json=1)
    await api.put(key_url("cache", "a"), json=2)
    response = await api.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await response.text()
    assert 'pydds_keys{database="cache"} 1.0' in text
    assert 'pydds_held_keys{database="cache"} 1.0' in text
    assert 'pydds_stale_keys{database="cache"} 0.0' in text
    assert 'pydds_events_total{kind="created"} 1.0' in text
    assert 'pydds_events_total{kind="changed"} 1.0' in text
    assert 'pydds_members{state="self"} 1.0' in text
    assert "pydds_links 0.0" in text


@pytest.fixture
async def pair() -> AsyncIterator[tuple[MemoryNetwork, pydds.Node, pydds.Node]]:
    network = MemoryNetwork()
    a = pydds.Node("a", listen="mem://a", transport=network.transport(), cluster=FAST)
    b = pydds.Node(
        "b", listen="mem://b", join=["mem://a"], transport=network.transport(), cluster=FAST
    )
    await a.start()
    await b.start()
    yield network, a, b
    await b.close()
    await a.close()


async def test_unavailable_and_ack_timeout(
    pair: tuple[MemoryNetwork, pydds.Node, pydds.Node],
) -> None:
    network, a, b = pair
    api = await serve(b)
    try:
        seen = b.events(database="db")
        await a.database("db").set("k", "v")
        await seen.get(timeout=5)  # b knows the key, and does not hold its value
        assert await (await api.get("/v1/databases/db/keys")).json() == ["k"]
        await network.partition(["mem://a"], ["mem://b"])
        assert await error_of(await api.get(key_url("db", "k"))) == (503, "unavailable")
        url = key_url("db", "mine")
        response = await api.put(url, json=1, params={"ack": "all"})
        assert await error_of(response) == (504, "ack_timeout")
        assert await (await api.get(url)).json() == 1  # the write stands
    finally:
        await api.close()


async def test_metrics_of_links(pair: tuple[MemoryNetwork, pydds.Node, pydds.Node]) -> None:
    _, a, b = pair
    api = await serve(b)
    try:
        seen = b.events(database="db")
        await a.database("db").set("k", "v")
        await seen.get(timeout=5)
        assert await b.database("db").get("k") == "v"  # a pull
        text = await (await api.get("/metrics")).text()
        assert "pydds_links 1.0" in text
        assert 'pydds_members{state="alive"} 1.0' in text
        for direction in ("in", "out"):
            line = next(
                s
                for s in text.splitlines()
                if s.startswith(f'pydds_link_bytes_total{{direction="{direction}",peer="a"}}')
                or s.startswith(f'pydds_link_bytes_total{{peer="a",direction="{direction}"}}')
            )
            assert float(line.split()[-1]) > 0
        assert 'pydds_pulls_total{result="asked"} 1.0' in text
    finally:
        await api.close()


async def test_a_closed_node_answers_503() -> None:
    node = pydds.Node("gone")
    api = await serve(node)
    try:
        await node.close()
        response = await api.get("/healthz")
        assert response.status == 503
        assert await error_of(await api.put(key_url("db", "k"), json=1)) == (503, "closed")
    finally:
        await api.close()


async def test_durable_writes_over_http(tmp_path: Path) -> None:
    from pydds.modules.persist import Persistence

    node = pydds.Node("d", modules=[Persistence(path=str(tmp_path), max_page_count=12)])
    api = await serve(node)
    try:
        url = key_url("db", "k")
        for ack in ("durable", "durable majority", "durable+all", "durable+1"):
            response = await api.put(url, json=ack, params={"ack": ack})
            assert response.status in (200, 201), await response.text()
        bad = await api.put(url, json=1, params={"ack": "durable+most"})
        assert await error_of(bad) == (400, "invalid_value")
        status = 0
        for i in range(200):  # bounded: the size cap is reached long before
            response = await api.put(
                key_url("db", f"big{i}"), json="y" * 2000, params={"ack": "durable"}
            )
            if response.status != 201:
                status = response.status
                assert await error_of(response) == (503, "storage_error")
                break
        assert status == 503
        assert await (await api.get(url)).json() == "durable+1"  # the node serves on
    finally:
        await api.close()
    await node.close()


async def test_counters(api: TestClient[Any, Any]) -> None:
    url = key_url("cache", "hits") + "/incr"
    assert await (await api.post(url)).json() == {"value": 1}
    assert await (await api.post(url, params={"amount": "41", "ack": "all"})).json() == {
        "value": 42
    }
    assert await error_of(await api.post(url, params={"amount": "x"})) == (400, "invalid_value")
    await api.put(key_url("cache", "text"), json="t")
    assert await error_of(await api.post(key_url("cache", "text") + "/incr")) == (
        409,
        "wrong_type",
    )


async def test_time_to_live_over_http() -> None:
    clock = FakeClock()
    node = pydds.Node("h1", clock=clock)
    api = await serve(node)
    try:
        url = key_url("cache", "a/b")  # a "/" in the key: the TTL route is not the key's
        assert (await api.put(url, json={"v": 1}, params={"ttl": "2.5"})).status == 201
        assert await (await api.get(url + "/ttl")).json() == {"key": "a/b", "ttl": 2.5}
        response = await api.patch(url, json={"w": 2})  # keeps the TTL
        assert response.status == 200
        assert (await (await api.get(url + "/ttl")).json())["ttl"] == 2.5
        response = await api.post(url + "/persist")
        assert await response.json() == {"key": "a/b", "persisted": True}
        assert (await (await api.get(url + "/ttl")).json())["ttl"] is None
        response = await api.post(url + "/persist")
        assert await response.json() == {"key": "a/b", "persisted": False}
        response = await api.post(url + "/expire", params={"seconds": "4", "ack": "all"})
        assert await response.json() == {"key": "a/b", "ttl": 4}
        counter = key_url("cache", "hits")
        response = await api.post(counter + "/incr", params={"ttl": "1"})
        assert await response.json() == {"value": 1}
        await clock.advance(1.1)
        assert await error_of(await api.get(counter)) == (404, "not_found")
        assert await error_of(await api.get(counter + "/ttl")) == (404, "not_found")
        assert await (await api.get("/v1/databases/cache/keys")).json() == ["a/b"]
        await clock.advance(3)
        for route in ("/ttl", "/expire?seconds=1", "/persist"):
            method = api.get if route == "/ttl" else api.post
            assert await error_of(await method(url + route)) == (404, "not_found"), route
        response = await api.put("/v1/databases/cache", json={"ttl": 60})
        assert (await response.json())["ttl"] == 60
        await api.put(url, json=1)
        assert (await (await api.get(url + "/ttl")).json())["ttl"] == 60
        for bad in ("0", "-1", "1e3", "x", "٣", "1.", "nan"):
            response = await api.put(url, json=1, params={"ttl": bad})
            assert await error_of(response) == (400, "invalid_value"), bad
            response = await api.post(url + "/expire", params={"seconds": bad})
            assert await error_of(response) == (400, "invalid_value"), bad
        response = await api.post(url + "/expire")
        assert await error_of(response) == (400, "invalid_value")
    finally:
        await api.close()
        await node.close()


async def test_batches_over_http(api: TestClient[Any, Any]) -> None:
    response = await api.post(
        "/v1/databases/cache/set-many",
        json={"a/1": 1, "a/2": {"x": 2}, "b": 3},
        params={"ttl": "60"},
    )
    assert await response.json() == {"ok": True, "written": 3}
    response = await api.post("/v1/databases/cache/get-many", json=["b", "a/1", "nope"])
    assert await response.json() == {"values": {"b": 3, "a/1": 1}}
    assert (await (await api.get(key_url("cache", "b") + "/ttl")).json())["ttl"] <= 60
    keys = await (await api.get("/v1/databases/cache/keys", params={"pattern": "a/?"})).json()
    assert keys == ["a/1", "a/2"]
    response = await api.post("/v1/databases/cache/delete-many", json=["a/1", "b", "nope"])
    assert await response.json() == {"deleted": 2}
    response = await api.post("/v1/databases/unknown/get-many", json=["a"])
    assert await response.json() == {"values": {}}
    response = await api.post("/v1/databases/unknown/delete-many", json=["a"])
    assert await response.json() == {"deleted": 0}
    bad = [
        ("get-many", {"a": 1}),
        ("get-many", ["a", 5]),
        ("delete-many", "a"),
        ("set-many", ["a"]),
        ("set-many", {"a": 1, "": 2}),
    ]
    for route, body in bad:
        response = await api.post(f"/v1/databases/cache/{route}", json=body)
        status, code = await error_of(response)
        assert status == 400, (route, body)
        assert code in ("invalid_value", "invalid_name"), (route, body)
    assert await (await api.get("/v1/databases/cache/keys")).json() == ["a/2"]


async def test_keys_are_paged_by_after_and_limit(api: TestClient[Any, Any]) -> None:
    await api.post("/v1/databases/db/set-many", json={f"k{i:02}": i for i in range(25)})
    url = "/v1/databases/db/keys"
    pages, after = [], None
    for _ in range(5):  # 25 keys, 10 a page: three pages, the last short
        query = {"prefix": "k", "limit": "10"} | ({"after": after} if after else {})
        page = await (await api.get(url, params=query)).json()
        if not page:
            break
        pages.append(page)
        after = page[-1]
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [k for page in pages for k in page] == [f"k{i:02}" for i in range(25)]
    got = await (await api.get(url, params={"pattern": "k?5", "after": "k05"})).json()
    assert got == ["k15"]  # and k25 does not exist
    for bad in ("0", "-1", "1.5", "x", "10001", "\u0661"):  # the last: an Arabic-Indic 1
        response = await api.get(url, params={"limit": bad})
        assert await error_of(response) == (400, "invalid_value"), bad
    assert await error_of(await api.get(url + "?after=%FF")) == (400, "invalid_name")


async def test_a_token_says_what_it_may_do(api: TestClient[Any, Any]) -> None:
    got = await (await api.get("/v1/token")).json()
    assert got == {
        "token": None,
        "rights": ["emit", "read", "write"],
        "databases": None,
        "credentials": False,
    }
    reader = pydds.ClientToken("reader", "reader-secret-012345", rights={"read"}, databases={"a"})
    node = pydds.Node("sec", credentials=pydds.Credentials(secrets=["s" * 20], tokens=[reader]))
    secured = await serve(node)
    try:
        assert (await secured.get("/v1/token")).status == 401
        bearer = {"Authorization": "Bearer reader.reader-secret-012345"}
        got = await (await secured.get("/v1/token", headers=bearer)).json()
        assert got == {
            "token": "reader",
            "rights": ["read"],
            "databases": ["a"],
            "credentials": True,
        }
        wrong = {"Authorization": "Bearer reader.not-its-secret-0000"}
        assert await error_of(await secured.get("/v1/token", headers=wrong)) == (
            401,
            "unauthorized",
        )
    finally:
        await secured.close()


async def test_the_cluster_lists_links_and_clients_and_a_key_its_holders(
    pair: tuple[MemoryNetwork, pydds.Node, pydds.Node],
) -> None:
    network, a, b = pair
    client = pydds.Client("cl", join=["mem://a"], transport=network.transport(), cluster=FAST)
    await client.start()
    api = await serve(a)
    try:
        seen = a.events(database="db")
        await b.database("db").set("k", {"v": 1})
        await seen.get(timeout=5)
        info = await (await api.get(key_url("db", "k") + "/info")).json()
        assert info == {
            "key": "k",
            "generation": info["generation"],
            "held": False,  # lazy: a knows the key, b holds the value
            "stale": False,
            "pinned": False,
            "holders": ["b"],
            "ttl": None,
        }
        assert await a.database("db").get("k") == {"v": 1}  # a pull: now a holds it too
        info = await (await api.get(key_url("db", "k") + "/info")).json()
        assert (info["held"], info["holders"]) == (True, ["b"])
        assert await error_of(await api.get(key_url("db", "nope") + "/info")) == (
            404,
            "not_found",
        )
        cluster = await (await api.get("/v1/cluster")).json()
        members = {m["name"]: m for m in cluster["members"]}
        assert members["a"]["link"] is None  # itself
        assert members["b"]["state"] == "alive"
        assert members["b"]["link"]["bytes_in"] > 0
        assert members["b"]["link"]["messages_out"] > 0
        assert [c["name"] for c in cluster["clients"]] == ["cl"]
        assert cluster["clients"][0]["link"]["bytes_out"] > 0
        stats = await (await api.get("/v1/stats")).json()
        assert stats["traffic"]["bytes_in"] >= members["b"]["link"]["bytes_in"]
        listing = await (await api.get("/v1/databases/db")).json()
        assert (listing["keys"], listing["held"], listing["stale"]) == (1, 1, 0)
    finally:
        await api.close()
        await client.close()
