"""Prometheus metrics of a node (``GET /metrics``).

Every figure is read from the node when scraped; nothing is counted twice and
the write path pays only for plain integer counters. Metrics (all prefixed
``pydds_``):

==============================  =======  ==========================================
name                            type     labels
==============================  =======  ==========================================
members                         gauge    state (self, alive, indirect, suspect,
                                         joining)
links                           gauge
keys                            gauge    database
held_keys                       gauge    database (values held here, stale or not)
stale_keys                      gauge    database
events_total                    counter  kind
link_bytes_total                counter  peer, direction (in, out)
link_messages_total             counter  peer, direction (in, out)
pulls_total                     counter  result (asked, timeout, unavailable)
acks_total                      counter  result (waited, timeout)
errors_total                    counter  kind (malformed_frame, protocol, slow_peer,
                                         custom_payload, handler)
module_errors_total             counter  module
(and what modules add: ``collect_metrics()``, e.g. the statistics module)
==============================  =======  ==========================================

Link counters count from the moment a link opened (a new link starts again at 0,
which Prometheus reads as a counter reset).

What a scrape shows follows its bearer token (on a node with credentials): a cluster
secret or a token that reaches every database sees everything; a token scoped to
databases sees only the series of those databases (the samples labelled with one
of them: ``keys``, ``held_keys``, ``stale_keys``, and modules' per-database series),
never the node's own figures, which count every database.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .http_api import GRANT, authorize
from .net.auth import Grant
from .node import Node

__all__ = ["NodeCollector", "ScopedCollector", "metrics_handler", "registry_for"]

_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class NodeCollector(Collector):
    """Reads a node's figures at each scrape."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        node = self.node
        members = GaugeMetricFamily(
            "pydds_members", "Members as this node sees them.", None, ["state"]
        )
        for state, count in sorted(Counter(m.state for m in node.members()).items()):
            members.add_metric([state], count)
        yield members
        traffic = node.traffic()
        yield GaugeMetricFamily("pydds_links", "Open links to peers.", len(traffic))

        keys = GaugeMetricFamily("pydds_keys", "Keys in the directory.", None, ["database"])
        held = GaugeMetricFamily(
            "pydds_held_keys", "Keys whose value this node holds.", None, ["database"]
        )
        stale = GaugeMetricFamily(
            "pydds_stale_keys", "Held keys that went stale here.", None, ["database"]
        )
        for name in node.databases():
            total, holding, stale_count = node.database(name).keyspace.counts()
            keys.add_metric([name], total)
            held.add_metric([name], holding)
            stale.add_metric([name], stale_count)
        yield from (keys, held, stale)

        footprint, evictor = node.footprint, node.evictor
        yield GaugeMetricFamily(
            "pydds_memory_used_bytes",
            "Bytes the values held here take (estimated).",
            footprint.used,
        )
        if footprint.limit is not None:
            yield GaugeMetricFamily(
                "pydds_memory_limit_bytes", "The memory limit (max_memory).", footprint.limit
            )
        evictions = CounterMetricFamily(
            "pydds_evictions", "Copies evicted, by where the other copy is.", None, ["to"]
        )
        reloads = CounterMetricFamily(
            "pydds_reloads", "Reads that took a copy back, by source.", None, ["source"]
        )
        for where in ("disk", "peer"):
            evictions.add_metric([where], evictor.evicted[where])
            reloads.add_metric([where], evictor.reloaded[where])
        yield from (evictions, reloads)
        yield CounterMetricFamily(
            "pydds_memory_full", "Times nothing could be evicted past the limit.", evictor.full
        )

        events = CounterMetricFamily(
            "pydds_events", "Events this node recorded, by kind.", None, ["kind"]
        )
        for kind, count in sorted(node.event_counts.items()):
            events.add_metric([str(kind)], count)
        yield events

        link_bytes = CounterMetricFamily(
            "pydds_link_bytes", "Bytes carried per link.", None, ["peer", "direction"]
        )
        link_messages = CounterMetricFamily(
            "pydds_link_messages", "Messages carried per link.", None, ["peer", "direction"]
        )
        for peer, t in sorted(traffic.items()):
            link_bytes.add_metric([peer, "in"], t.bytes_in)
            link_bytes.add_metric([peer, "out"], t.bytes_out)
            link_messages.add_metric([peer, "in"], t.messages_in)
            link_messages.add_metric([peer, "out"], t.messages_out)
        yield from (link_bytes, link_messages)

        stats = node.network_counts()
        families = {
            "pull": CounterMetricFamily("pydds_pulls", "Value pulls.", None, ["result"]),
            "ack": CounterMetricFamily(
                "pydds_acks", "Writes that waited for acknowledgements.", None, ["result"]
            ),
            "error": CounterMetricFamily("pydds_errors", "Errors, by kind.", None, ["kind"]),
        }
        for name, count in sorted(stats.items()):
            group, _, label = name.partition(":")
            if group in families:
                families[group].add_metric([label], count)
        families["error"].add_metric(["handler"], node.handler_errors)
        yield from families.values()

        module_errors = CounterMetricFamily(
            "pydds_module_errors", "Exceptions raised by modules, by module.", None, ["module"]
        )
        for module in node.modules:
            module_errors.add_metric([module.name], node.module_errors[module.name])
        yield module_errors
        for module in node.modules:  # modules with metrics of their own (statistics)
            collect = getattr(module, "collect_metrics", None)
            if collect is not None:
                yield from collect()


def registry_for(node: Node) -> CollectorRegistry:
    """A registry holding only ``node``'s metrics (not the process-wide default)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node))
    return registry


class ScopedCollector(Collector):
    """``registry``'s metrics as a token scoped to databases may read them: of each
    family, the samples labelled with a database the token reads; a family of
    samples without a database label (the node's figures) not at all."""

    def __init__(self, registry: CollectorRegistry, grant: Grant) -> None:
        self.registry = registry
        self.grant = grant

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            if any("database" not in s.labels for s in family.samples):
                continue  # the node's own figures, of every database
            samples = [s for s in family.samples if self.grant.allows("read", s.labels["database"])]
            scoped = Metric(family.name, family.documentation, family.type, family.unit)
            scoped.samples = samples
            yield scoped


def metrics_handler(
    registry: CollectorRegistry,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The ``GET /metrics`` handler for ``registry`` (scoped to the request's token)."""

    async def metrics(request: web.Request) -> web.Response:
        authorize(request, "read")
        grant: Grant = request[GRANT]
        if grant.databases is None:
            body = generate_latest(registry)
        else:
            scoped = CollectorRegistry(auto_describe=False)
            scoped.register(ScopedCollector(registry, grant))
            body = generate_latest(scoped)
        return web.Response(body=body, headers={"Content-Type": _CONTENT_TYPE})

    return metrics
