"""Credentials as an operator meets them: ``pydds serve`` processes on 127.0.0.1 with
secrets, tokens and TLS from their options (stopped by their process groups)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

import pydds
from pydds.net.auth import ClientToken, Credentials
from pydds.net.ws import WebSocketTransport

from .helpers import Served, until_events, until_member

Serve = Callable[..., Awaitable[Served]]

SECRET = "a-cluster-secret-of-16-bytes-or-more"
TOKEN = "svc:svc-secret-0123456789:cache:read+write"
BEARER = {"Authorization": f"Bearer {SECRET}"}


async def test_nodes_with_a_secret_form_a_cluster_and_serve_a_client_with_a_token(
    served: Serve,
) -> None:
    a = await served("--port", "0", "--name", "a", "--secret", SECRET, "--token", TOKEN)
    b = await served(
        "--port", "0", "--name", "b", "--secret", SECRET, "--token", TOKEN, "--join", a.node
    )
    await until_member(a, "b", headers=BEARER)
    await until_member(b, "a", headers=BEARER)
    async with aiohttp.ClientSession(headers=BEARER) as session:
        # ack=all needs b's acknowledgement: the link between the processes carries it.
        url = a.http + "/v1/databases/cache/keys/k?ack=all"
        async with session.put(url, json={"v": 1}) as response:
            assert response.status == 201, await response.text()
        async with session.get(b.http + "/v1/databases/cache/keys/k") as response:
            assert await response.json() == {"v": 1}
    token = ClientToken.parse(TOKEN)
    async with pydds.Client(join=[b.node], credentials=Credentials(token=token)) as client:
        await until_events(lambda: "k" in client.database("cache"), client)
        assert await client.database("cache").get("k") == {"v": 1}
        await client.database("cache").set("from-client", 2, ack="all")
    async with (
        aiohttp.ClientSession(headers=BEARER) as session,
        session.get(a.http + "/v1/databases/cache/keys/from-client") as response,
    ):
        assert await response.json() == 2
    # Removing a member changes the whole cluster: a token scoped to databases may not.
    scoped = {"Authorization": "Bearer svc.svc-secret-0123456789"}
    async with (
        aiohttp.ClientSession(headers=scoped) as session,
        session.delete(a.http + "/v1/cluster/members/b") as response,
    ):
        assert response.status == 403
        assert (await response.json())["error"] == "forbidden"
    await until_member(a, "b", headers=BEARER)  # still a member


async def test_an_open_node_joining_a_secured_one_is_told_authentication_failed(
    served: Serve,
) -> None:
    a = await served("--port", "0", "--name", "a", "--secret", SECRET)
    open_node = await served("--port", "0", "--name", "c", "--join", a.node)
    assert open_node.proc.stderr is not None
    async with asyncio.timeout(20):
        line = (await open_node.proc.stderr.readline()).decode()
    assert "cannot join" in line
    assert "authentication failed" in line
    assert "401" not in line
    # In process too: the join fails at once, and says why.
    async with pydds.Node("d") as d:
        with pytest.raises(pydds.LinkClosed, match="authentication failed"):
            await d.join(a.node)
    async with (
        aiohttp.ClientSession(headers=BEARER) as session,
        session.get(a.http + "/v1/cluster") as response,
    ):
        names = [m["name"] for m in (await response.json())["members"]]
    assert names == ["a"]


async def test_a_secured_cluster_over_tls(served: Serve, tmp_path: Path) -> None:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    cert.private_key_and_cert_chain_pem.write_to_path(tmp_path / "node.pem")
    tls = ["--tls-cert", str(tmp_path / "node.pem"), "--tls-key", str(tmp_path / "node.pem")]
    tls += ["--tls-ca", str(tmp_path / "ca.pem")]
    secured = ["--secret", SECRET, "--token", TOKEN, *tls]
    a = await served("--port", "0", "--name", "a", *secured)
    assert a.http.startswith("https://")
    b = await served("--port", "0", "--name", "b", *secured, "--join", a.node)
    trusting = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    await until_member(a, "b", ssl_context=trusting, headers=BEARER)
    transport = WebSocketTransport(client_ssl=trusting)
    token = Credentials(token=ClientToken.parse(TOKEN))
    async with pydds.Client(join=[b.node], transport=transport, credentials=token) as client:
        await client.database("cache").set("k", "over tls", ack="all")
    connector = aiohttp.TCPConnector(ssl=trusting)
    async with (
        aiohttp.ClientSession(connector=connector, headers=BEARER) as session,
        session.get(a.http + "/v1/databases/cache/keys/k") as response,
    ):
        assert await response.json() == "over tls"
