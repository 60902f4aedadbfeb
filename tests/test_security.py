"""Security: authenticated links, client tokens and their scopes, writes under a
client's own id only, HTTP bearer tokens, protected mode, TLS."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

import pydds
from pydds.net import messages as m
from pydds.net.auth import ClientToken, Credentials, client_id_for
from pydds.net.codec import PROTOCOL, encode_frame
from pydds.net.session import Session, State
from pydds.server import make_app

from .helpers import pydds_cmd, tls_contexts, until_events
from .memcluster import Cluster, drain, names, until

SECRET = "cluster-secret-0123456789"
OLD = "old-cluster-secret-0123456"
WEB = ClientToken("web", "web-token-secret-0123", databases={"cache"}, rights={"read", "write"})
READER = ClientToken("reader", "reader-secret-012345", rights={"read"})
NODES = Credentials(secrets=[SECRET], tokens=[WEB, READER])


# -- credentials and the handshake, sans-IO ------------------------------------------------


def test_tokens_parse_and_check() -> None:
    token = ClientToken.parse("billing:billing-secret-0123:invoices+payments:read+write")
    assert token.databases == {"invoices", "payments"}
    assert token.rights == {"read", "write"}
    assert ClientToken.parse("all:all-secret-0123456789").databases is None
    for bad in ("nosecret", "a:short", "a:long-enough-secret-0:db:fly", "a.b:long-enough-secret-0"):
        with pytest.raises(ValueError):  # noqa: PT011 (each message differs)
            ClientToken.parse(bad)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Credentials(secrets=["short"])
    assert "web-token-secret" not in repr(WEB)


def handshake(a: Session, b: Session) -> list[bytes]:
    """Run the handshake between two sessions; the frames that crossed, encoded."""
    frames = []
    for _ in range(3):
        to_b, to_a = a.data_to_send(0), b.data_to_send(0)
        frames += [encode_frame(to_b), encode_frame(to_a)] if to_b or to_a else []
        a.receive(to_a, 0)
        b.receive(to_b, 0)
    return frames


TOKENS = {t.id: t for t in (WEB, READER, ClientToken("nobody", "nobody-secret-01234"))}


def hello(name: str, role: str = "node", token: str | None = None) -> m.Hello:
    """A Hello; a client's carries the client id its token gives it."""
    from pydds.net.auth import client_id_for, new_nonce

    client_id = client_id_for(TOKENS[token], name) if token in TOKENS else 7
    return m.Hello(name, role, None, PROTOCOL, new_nonce(), token, client_id)


def test_nodes_with_a_shared_secret_open_and_the_secret_never_crosses() -> None:
    a = Session(hello("a"), now=0, credentials=NODES)
    b = Session(hello("b"), now=0, credentials=Credentials(secrets=[SECRET]))
    frames = handshake(a, b)
    assert a.state is b.state is State.OPEN
    assert a.grant is not None
    assert a.grant.role == "node"
    assert not any(SECRET.encode() in frame for frame in frames)


@pytest.mark.parametrize(
    ("theirs", "reason"),
    [
        (Credentials(secrets=["a-wrong-secret-0123456"]), "authentication failed: wrong proof"),
        (Credentials(), "authentication failed: wrong proof"),  # no secret: an empty proof
    ],
)
def test_a_node_without_the_secret_is_refused(theirs: Credentials, reason: str) -> None:
    a = Session(hello("a"), now=0, credentials=NODES)
    b = Session(hello("b"), now=0, credentials=theirs)
    handshake(a, b)
    assert a.state is State.CLOSED
    assert a.close_reason == reason


def test_secrets_rotate() -> None:
    # Step 1: every node accepts both; step 2: they prove with the new one.
    new_first = Credentials(secrets=[SECRET, OLD])
    old_first = Credentials(secrets=[OLD, SECRET])
    a = Session(hello("a"), now=0, credentials=new_first)
    b = Session(hello("b"), now=0, credentials=old_first)
    handshake(a, b)
    assert a.state is b.state is State.OPEN
    # A node that only knows the old secret refuses one that proves with the new.
    c = Session(hello("c"), now=0, credentials=Credentials(secrets=[OLD]))
    d = Session(hello("d"), now=0, credentials=new_first)
    handshake(c, d)
    assert c.state is State.CLOSED


def test_client_tokens() -> None:
    client = Credentials(token=WEB)
    a = Session(hello("gw"), now=0, credentials=NODES)
    c = Session(hello("cl", "client", "web"), now=0, credentials=client)
    handshake(a, c)
    assert a.state is c.state is State.OPEN
    assert a.grant is not None
    assert (a.grant.role, a.grant.token) == ("client", "web")
    assert a.grant.allows("write", "cache")
    assert not a.grant.allows("write", "billing")
    assert not a.grant.allows("emit")
    # A client token cannot join as a node...
    a = Session(hello("gw"), now=0, credentials=NODES)
    n = Session(hello("fake", "node", "web"), now=0, credentials=client)
    handshake(a, n)
    assert a.state is State.CLOSED
    assert "cannot join as a node" in (a.close_reason or "")
    # ...an unknown token is refused, and so is a gateway that does not know the token.
    a = Session(hello("gw"), now=0, credentials=NODES)
    u = Session(
        hello("cl", "client", "nobody"),
        now=0,
        credentials=Credentials(token=ClientToken("nobody", "nobody-secret-01234")),
    )
    handshake(a, u)
    assert "unknown client token" in (a.close_reason or "")
    impostor = Session(hello("gw"), now=0, credentials=Credentials(secrets=[SECRET]))
    c = Session(hello("cl", "client", "web"), now=0, credentials=client)
    handshake(impostor, c)
    assert c.state is State.CLOSED  # the client checked its gateway too
    # A client cannot claim a writer id of its choosing (another writer's, say).
    a = Session(hello("gw"), now=0, credentials=NODES)
    claimed = hello("cl", "client", "web")
    claimed.client_id += 1
    c = Session(claimed, now=0, credentials=client)
    handshake(a, c)
    assert "a client id its token does not give" in (a.close_reason or "")


def test_a_proof_is_good_for_one_handshake_only() -> None:
    a = Session(hello("a"), now=0, credentials=NODES)
    b = Session(hello("b"), now=0, credentials=Credentials(secrets=[SECRET]))
    a.data_to_send(0)
    a_hello = a.local
    b.receive([a_hello], 0)
    recorded = next(msg for msg in b.data_to_send(0) if isinstance(msg, m.Proof))
    # Replayed to a new session of a (a new nonce), the recorded proof fails.
    a2 = Session(hello("a"), now=0, credentials=NODES)
    a2.receive([b.local, recorded], 0)
    assert a2.state is State.CLOSED
    assert "wrong proof" in (a2.close_reason or "")


# -- a secured cluster on the in-memory network ---------------------------------------------


def secured(
    cluster: Cluster, name: str, credentials: Credentials, join: list[str] | None = None
) -> pydds.Node:
    return cluster.node(name, join, credentials=credentials)


def client(cluster: Cluster, name: str, token: ClientToken, gateway: str) -> pydds.Client:
    made = pydds.Client(
        name,
        join=[gateway],
        transport=cluster.network.transport(),
        clock=cluster.clock,
        credentials=Credentials(token=token),
    )
    cluster.nodes.append(made)
    return made


async def test_a_secured_cluster_refuses_intruders(cluster: Cluster) -> None:
    a = secured(cluster, "a", NODES)
    await a.start()
    b = secured(cluster, "b", Credentials(secrets=[SECRET]), ["mem://a"])
    await b.start()
    await until(lambda: names(a) == ["a", "b"])
    wrong = secured(cluster, "x", Credentials(secrets=["not-the-secret-0123456"]))
    with pytest.raises(pydds.LinkClosed, match="authentication failed"):
        await wrong.join("mem://a")  # each end refuses the other
    await wrong.close()
    # A node with no credentials accepts anyone's proof (open mode), but a refuses it:
    # its join fails, though its own end of the handshake completed.
    open_node = pydds.Node("y", transport=cluster.network.transport(), clock=cluster.clock)
    with pytest.raises(pydds.LinkClosed, match="authentication failed"):
        await open_node.join("mem://a")
    assert names(open_node) == ["y"]
    assert a._peers is not None
    await until(lambda: a._peers is not None and a._peers.stats["error:auth"] == 3)
    await open_node.close()
    assert names(a) == ["a", "b"]
    assert "y" not in [m.name for m in b.members()]


async def test_client_scopes(cluster: Cluster) -> None:
    a = secured(cluster, "a", NODES)
    await a.start()
    await a.database("cache").set("k", 1)
    await a.database("billing").set("invoice", {"total": 10})
    web = client(cluster, "web-1", WEB, "mem://a")
    await web.start()
    await until(lambda: "k" in web.database("cache"))
    assert await web.database("cache").get("k") == 1
    await web.database("cache").set("from-web", 2)
    await until(lambda: "from-web" in a.database("cache"))
    assert "invoice" not in web.database("billing")  # never told of it
    with pytest.raises(pydds.Forbidden, match="no read right on 'billing'"):
        await web.database("billing").get("invoice")
    with pytest.raises(pydds.Forbidden, match="no write right"):
        await web.database("billing").set("x", 1)
    with pytest.raises(pydds.Forbidden, match="no emit right"):
        await web.emit("deploy", 1)
    reader = client(cluster, "reader-1", READER, "mem://a")
    await reader.start()
    await until(lambda: "invoice" in reader.database("billing"))
    assert await reader.database("billing").get("invoice") == {"total": 10}
    with pytest.raises(pydds.Forbidden):
        await reader.database("billing").set("invoice", {})


async def forged_client(
    cluster: Cluster,
    token: ClientToken,
    messages: list[m.Message],
    later: list[m.Message] | None = None,
) -> list[m.Message]:
    """A hand-made client that bypasses the client's own checks; what it received.
    ``messages`` go with its proof, ``later`` in a frame of their own."""
    from pydds.net.auth import client_id_for, new_nonce

    link = await cluster.network.transport().connect("mem://a")
    nonce = new_nonce()
    own_id = client_id_for(token, "forger")
    await link.send(
        encode_frame([m.Hello("forger", "client", None, PROTOCOL, nonce, token.id, own_id)])
    )
    first = await link.receive()
    from pydds.net.codec import decode_frame

    gateway_hello = decode_frame(first)[0]
    assert isinstance(gateway_hello, m.Hello)
    mac = Credentials.mac(token.secret.encode(), "client", "forger", nonce, gateway_hello.nonce)  # type: ignore[union-attr]
    await link.send(encode_frame([m.Proof(mac), *messages]))
    if later:
        await link.send(encode_frame(later))
    return await asyncio.wait_for(drain(link), 5)


async def test_the_gateway_enforces_scopes_and_own_writer_ids(cluster: Cluster) -> None:
    a = secured(cluster, "a", NODES)
    await a.start()
    victim = pydds.Node("victim")
    made: list[pydds.Change] = []
    victim.add_change_listener(made.append)
    await victim.database("billing").set("k", 1)
    await victim.database("cache").set("k", 1)
    forbidden, foreign = made
    for change, refusal in (
        (forbidden, "no write right on 'billing'"),  # a database the token does not reach
        # In scope, but under another writer's Yjs client id (a forgery that would
        # silence that writer).
        (foreign, "own client id"),
    ):
        write = m.Write(
            change.database, "k", 1, "created", change.directory, change.value, "forger"
        )
        out = await forged_client(cluster, WEB, [write])
        assert isinstance(out[-1], m.Close)
        assert refusal in out[-1].reason
    assert "k" not in a.database("cache")
    assert "k" not in a.database("billing")
    await victim.close()


async def test_a_clients_ack_is_a_protocol_violation_and_counts_for_nothing(
    cluster: Cluster,
) -> None:
    a = secured(cluster, "a", NODES)
    b = secured(cluster, "b", NODES, ["mem://a"])
    await a.start()
    await b.start()
    await until(lambda: names(a) == ["a", "b"])
    await cluster.network.partition(["mem://b"], ["mem://a"])
    await until(lambda: names(a) == ["a"])
    writing = asyncio.ensure_future(a.database("cache").set("k", 1, ack="all"))
    await until(lambda: bool(a._peers and a._peers.acks_waiting))
    # Even read-only, a client could send Ack for any id: the link closes instead.
    out = await forged_client(cluster, READER, [m.Ack(i) for i in range(1, 100)])
    assert isinstance(out[-1], m.Close)
    assert "a client acknowledges nothing" in out[-1].reason
    assert not writing.done()
    await cluster.clock.advance(6, step=0.5)
    with pytest.raises(pydds.AckTimeout):
        await asyncio.wait_for(writing, 1)


async def test_a_clients_directory_updates_pass_the_checks_of_its_writes(
    cluster: Cluster,
) -> None:
    from pydds.crdt.directory import Entry, encode_update

    a = cluster.node("a", credentials=NODES, limits=pydds.Limits(max_keys=100))
    await a.start()
    await a.database("cache").set("there", 1)

    def entries(*keys: str) -> bytes:
        return encode_update((key, Entry(1)) for key in keys)

    for update, refusal in (
        (entries(*(f"k{i}" for i in range(101))), "more than 100 keys"),
        (entries("ok", ""), "a malformed directory entry for ''"),
        (entries("x" * 5000), "a key must have 1 to 1024 characters"),
    ):
        out = await forged_client(cluster, WEB, [m.DirectoryStep2("cache", update, (0,))])
        assert isinstance(out[-1], m.Close)
        assert refusal in out[-1].reason
    # A write's directory delta writes its own key's entry only.
    write = m.Write("cache", "mine", 1, "created", entries("mine", "other"), None, "forger")
    out = await forged_client(cluster, WEB, [write])
    assert isinstance(out[-1], m.Close)
    assert "writes the entry of another key" in out[-1].reason
    assert a.database("cache").keys() == ["there"]
    assert list(a.database("cache")._keyspace.directory.entries()) == ["there"]
    # Within the checks, a client's offline writes still sync.
    update = entries("offline")
    out = await forged_client(
        cluster, WEB, [m.DirectoryStep2("cache", update, ())], [m.Close("bye")]
    )
    assert not any(isinstance(x, m.Close) for x in out)
    assert sorted(a.database("cache").keys()) == ["offline", "there"]


async def test_a_client_cannot_park_values_of_keys_its_gateway_lacks(cluster: Cluster) -> None:
    a = secured(cluster, "a", NODES)
    await a.start()
    victim = pydds.Node("victim")
    victim.client_id = client_id_for(WEB, "forger")  # the forged client's own id
    made: list[pydds.Change] = []
    victim.add_change_listener(made.append)
    for i in range(20):
        await victim.database("cache").set(f"k{i}", "x" * 10_000)
    # The values without their entries: they would wait at the gateway for good.
    writes = [m.Write("cache", c.key, c.gen, "changed", None, c.value, "forger") for c in made]
    out = await forged_client(cluster, WEB, writes)
    assert isinstance(out[-1], m.Close)
    assert "this node has no entry for" in out[-1].reason
    ks = a.database("cache")._keyspace
    assert (ks._early_count, ks._early_bytes, len(ks)) == (0, 0, 0)
    await victim.close()


EMITTER = ClientToken("emitter", "emitter-secret-0123456", rights={"read", "emit"})


async def test_a_client_cannot_silence_anothers_custom_events(cluster: Cluster) -> None:
    credentials = Credentials(secrets=[SECRET], tokens=[EMITTER])
    a = secured(cluster, "a", credentials)
    b = secured(cluster, "b", credentials, ["mem://a"])
    await a.start()
    await b.start()
    await until(lambda: names(a) == ["a", "b"])
    assert b._peers is not None
    # The ids b emits next, as a client that saw b's events could tell them.
    replication = b._peers.replication
    nexts = [f"b:{replication.incarnation}:{n}" for n in range(1, 20)]
    forged = [m.Custom(i, "deploy", b"\x01", "forger") for i in nexts]
    async with a.events(kinds={"custom"}) as at_a:
        out = await forged_client(cluster, EMITTER, forged, [m.Close("bye")])
        assert not any(isinstance(x, m.Close) for x in out)  # the client closed, not a
        got = [await at_a.get(timeout=1) for _ in forged]  # the gateway's own ids: each new
        assert {e.origin for e in got} == {"forger"}
        await b.emit("deploy", 2)
        event = await at_a.get(timeout=1)
    assert (event.origin, event.payload) == ("b", 2)


async def test_an_oversized_custom_event_closes_the_link(cluster: Cluster) -> None:
    credentials = Credentials(secrets=[SECRET], tokens=[EMITTER])
    a = cluster.node("a", credentials=credentials, limits=pydds.Limits(max_value_bytes=1000))
    await a.start()
    async with a.events(kinds={"custom"}) as at_a:
        big = m.Custom("x", "deploy", b"\xc4" + b"\x00" * 2000, "forger")
        out = await forged_client(cluster, EMITTER, [big])
        assert isinstance(out[-1], m.Close)
        assert "custom event payload of 2001 bytes (at most 1000)" in out[-1].reason
        assert len(at_a) == 0


# -- HTTP ------------------------------------------------------------------------------------


async def test_http_bearer_tokens() -> None:
    node = pydds.Node("h", credentials=NODES)
    api: TestClient[Any, Any] = TestClient(TestServer(make_app(node)))
    await api.start_server()
    try:
        assert (await api.get("/healthz")).status == 200  # open, for load balancers
        response = await api.get("/v1/databases")
        assert response.status == 401
        assert (await response.json())["error"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        wrong = {"Authorization": "Bearer web.not-the-secret-000000"}
        assert (await api.get("/v1/databases", headers=wrong)).status == 401
        web = {"Authorization": f"Bearer web.{WEB.secret}"}
        admin = {"Authorization": f"Bearer {SECRET}"}
        url = "/v1/databases/cache/keys/k"
        assert (await api.put(url, json=1, headers=web)).status == 201
        assert await (await api.get(url, headers=web)).json() == 1
        billing = "/v1/databases/billing/keys/k"
        response = await api.put(billing, json=1, headers=web)
        assert response.status == 403
        assert (await response.json())["error"] == "forbidden"
        assert (await api.post("/v1/events/x", json=1, headers=web)).status == 403
        assert (await api.get("/v1/events", headers=web)).status == 403  # all databases
        assert (await api.put(billing, json=1, headers=admin)).status == 201
        listing = await (await api.get("/v1/databases", headers=web)).json()
        assert [d["name"] for d in listing["databases"]] == ["cache"]  # its scope only
        assert (await api.get("/metrics", headers=admin)).status == 200
    finally:
        await api.close()


# -- protected mode and TLS ------------------------------------------------------------------


def test_protected_mode() -> None:
    from pydds.cli.process import credentials_of, protected
    from pydds.serve_config import ConfigError, load_config

    for host in ("127.0.0.1", "::1", "localhost"):
        config = load_config({"host": host}, {})
        protected(config, credentials_of(config))
    config = load_config({"host": "0.0.0.0"}, {})
    with pytest.raises(ConfigError, match=r"refusing to serve on 0\.0\.0\.0 without credentials"):
        protected(config, credentials_of(config))
    config = load_config({"host": "0.0.0.0", "secrets": [SECRET]}, {})
    protected(config, credentials_of(config))  # with a secret: allowed


async def test_serve_refuses_a_public_bind_without_credentials() -> None:
    code, _, err = await pydds_cmd("serve", "--host", "0.0.0.0", "--memory", "--port", "0")
    assert code == 2
    assert "refusing to serve on 0.0.0.0 without credentials" in err


async def test_nodes_over_tls() -> None:
    from pydds.net.ws import WebSocketTransport

    server, trusting = tls_contexts()

    def tls_node(name: str, join: list[str], client_ssl: ssl.SSLContext | None) -> pydds.Node:
        transport = WebSocketTransport(server_ssl=server, client_ssl=client_ssl)
        return pydds.Node(
            name, listen="127.0.0.1:0", join=join, transport=transport, credentials=NODES
        )

    a = tls_node("a", [], trusting)
    await a.start()
    try:
        assert a.address is not None
        assert a.address.startswith("wss://127.0.0.1:")
        b = tls_node("b", [a.address], trusting)
        await b.start()
        await a.database("db").set("k", "over tls")
        await until_events(lambda: "k" in b.database("db"), b)
        assert await b.database("db").get("k") == "over tls"
        await b.close()
        untrusting = tls_node("c", [], None)  # the system CAs do not know this one
        with pytest.raises(pydds.LinkClosed, match="certificate"):
            await untrusting.join(a.address)
        await untrusting.close()
    finally:
        await a.close()


# -- limits ------------------------------------------------------------------------------------


def test_rate_limit_buckets() -> None:
    from pydds.net.ratelimit import RateLimit

    limit = RateLimit(messages_per_s=100, bytes_per_s=10_000, now=0.0)
    assert limit.take(messages=100, size=100, now=0.0) == 0.0  # a second's burst
    assert limit.take(messages=50, size=100, now=0.0) == pytest.approx(0.5)
    assert limit.take(messages=0, size=0, now=0.5) == 0.0  # refilled meanwhile
    assert limit.take(messages=1, size=20_000, now=1.5) == pytest.approx(1.0)  # bytes bound
    assert limit.waited == pytest.approx(1.5)


async def test_a_fast_peer_is_slowed_not_cut(cluster: Cluster) -> None:
    slow = pydds.ClusterSettings(max_messages_per_s=100)
    a = cluster.node("a", cluster=slow)
    await a.start()
    b = await cluster.start("b", ["mem://a"])
    await until(lambda: names(a) == ["a", "b"])
    for i in range(300):
        await b.database("db").set(f"k{i}", i)
    await until(lambda: a._peers is not None and a._peers.stats["rate:waits"] > 0)
    assert len(a.database("db")) < 300  # held back
    await cluster.clock.advance(5, step=0.1)
    await until(lambda: len(a.database("db")) == 300)  # everything arrives, in time
    assert names(a) == ["a", "b"]  # the link stayed up


async def test_a_peer_that_stops_reading_is_cut_at_max_pending(cluster: Cluster) -> None:
    a = cluster.node("a", cluster=pydds.ClusterSettings(max_pending=50))
    await a.start()
    await cluster.start("b", ["mem://a"])
    await until(lambda: names(a) == ["a", "b"])
    assert a._peers is not None
    state = a._peers.links["b"]
    stuck = asyncio.Event()  # never set: b reads nothing more

    async def never(frame: bytes) -> None:
        await stuck.wait()

    link = a._io[state].link
    link.send = never  # type: ignore[method-assign]
    db = a.database("db")
    for i in range(60):
        await db.set(f"k{i}", i)
    assert a._peers.stats["error:slow_peer"] == 1
    assert state.session.closed
    assert state.session.close_reason == "peer too slow: 51 messages queued"
    assert state.session.pending <= 52  # bounded: the 51 and the Close, nothing after
    await until(lambda: link._closed)  # type: ignore[attr-defined]  # cut
    await db.set("later", 1)  # the node goes on writing
    assert await db.get("later") == 1


async def test_limits_on_databases_keys_and_pulls(cluster: Cluster) -> None:
    small = pydds.Limits(max_databases=2, max_keys=3)
    async with pydds.Node(limits=small) as node:
        node.database("one")
        node.database("two")
        with pytest.raises(pydds.InvalidValue, match="databases, its limit"):
            node.database("three")
        db = node.database("one")
        for i in range(3):
            await db.set(f"k{i}", i)
        with pytest.raises(pydds.InvalidValue, match="keys, its limit"):
            await db.set("k3", 3)
        await db.set("k0", "replacing is fine")
        assert len(db) == 3
    a = cluster.node("a", cluster=pydds.ClusterSettings(max_pulls=1))
    await a.start()
    b = await cluster.start("b", ["mem://a"])
    await b.database("db").set("x", 1)
    await b.database("db").set("y", 2)
    await until(lambda: "x" in a.database("db") and "y" in a.database("db"))
    await cluster.network.partition(["mem://a"], ["mem://b"])
    first = asyncio.ensure_future(a.database("db").get("x"))
    await until(lambda: a._peers is not None and bool(a._peers.replication.pulls))
    with pytest.raises(pydds.Unavailable, match="too many pulls"):
        await a.database("db").get("y")
    await cluster.clock.advance(3, step=0.5)
    with pytest.raises(pydds.Unavailable):
        await first


async def test_peers_cannot_exceed_the_limits_and_other_links_go_on(cluster: Cluster) -> None:
    small = pydds.Limits(max_databases=1, max_keys=1)
    a = cluster.node("a", limits=small, credentials=NODES)
    await a.start()
    await a.database("cache").set("only", 1)
    good = client(cluster, "good", READER, "mem://a")
    await good.start()
    await until(lambda: "only" in good.database("cache"))
    # A client adding a key to a full database is cut off...
    maker = pydds.Node("maker")
    maker.client_id = client_id_for(WEB, "forger")  # the forged client's own id
    made: list[pydds.Change] = []
    maker.add_change_listener(made.append)
    await maker.database("cache").set("more", 1)
    await maker.close()
    out = await forged_client(
        cluster,
        WEB,
        [m.Write("cache", "more", 1, "created", made[0].directory, made[0].value, "forger")],
    )
    assert isinstance(out[-1], m.Close)
    assert "full" in out[-1].reason
    # ...and so is one that would make a database beyond the node's limit.
    out = await forged_client(cluster, READER, [m.DirectoryStep1("another", 16, bytes(128))])
    assert isinstance(out[-1], m.Close)
    assert "databases, its limit" in out[-1].reason
    assert a.databases() == ["cache"]
    # The other client was served throughout.
    await a.database("cache").set("only", 2)
    await until(lambda: good.database("cache")._keyspace.generation("only") == 1)
    assert await good.database("cache").get("only") == 2
