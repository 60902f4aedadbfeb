"""Rich display in Jupyter: HTML tables for nodes, databases and events, escaped."""

from __future__ import annotations

import pydds
from pydds import display

from .memcluster import Cluster


async def test_a_node_shows_its_databases_and_recent_events() -> None:
    async with pydds.Node("n1") as node:
        db = node.database("cache", stale_after=300)
        await db.set("user:1", {"name": "Ada"})
        await db.set("<script>alert(1)</script>", "<b>bold</b>")
        await node.emit("deploy", {"v": 3})
        assert repr(node) == "<Node 'n1' embedded members=1 databases=1>"
        text = node._repr_html_()
        assert "pydds node n1 (open)" in text
        assert "<td" in text
        assert ">cache<" in text
        assert ">300 s<" in text
        assert "deploy" in text
        assert "<script>" not in text  # user data is escaped
        assert "&lt;script&gt;" in text
        kinds = [e.kind for e in node.recent_events()]
        assert kinds == ["created", "created", "custom"]
        assert repr(db) == "<Database 'cache' keys=2 held=2 stale=0>"
        table = db._repr_html_()
        assert "user:1" in table
        assert "{&quot;name&quot;: &quot;Ada&quot;}" in table
        assert "&lt;b&gt;bold&lt;/b&gt;" in table
        assert "<b>" not in table
    assert "(closed)" in node._repr_html_()
    assert "closed" in repr(node)
    assert "(node closed)" in db._repr_html_()


async def test_tables_are_bounded() -> None:
    async with pydds.Node() as node:
        db = node.database("big")
        for i in range(display.ROWS + 5):
            await db.set(f"k{i:03d}", "x" * 500)
        text = db._repr_html_()
        assert "... and 5 more" in text
        assert "x" * display.PREVIEW not in text  # values are previewed, not dumped
        assert len(node.recent_events()) == 20


async def test_an_event_and_a_cluster(cluster: Cluster) -> None:
    a, b = await cluster.pair()
    async with b.events(database="db") as events:
        await a.database("db").set("k", 1)
        event = await events.get(timeout=1)
    row = event._repr_html_()
    assert "<table" in row
    assert ">created<" in row
    assert ">k<" in row
    text = b._repr_html_()
    assert ">a<" in text  # a member, and a link
    assert "bytes in" in text
    assert b.traffic()["a"].bytes_in > 0
    db_text = b.database("db")._repr_html_()
    assert "held elsewhere" in db_text  # not pulled by displaying it
    assert not b.database("db").holds("k")
