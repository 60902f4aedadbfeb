"""A client: a node's data and event API, linked to the cluster through one gateway
node at a time, never a member."""

from __future__ import annotations

from collections.abc import Iterable

from .clock import Clock
from .config import Limits
from .errors import InvalidValue
from .net.auth import Credentials, client_id_for
from .net.peers import ClusterSettings
from .net.transport import Transport
from .node import Node

__all__ = ["Client"]


class Client(Node):
    """A client: joins like a node and has the same data and event API, but accepts
    no links, is never a member or a gateway, and relays nothing. It links to one
    node at a time (its gateway), which relays its writes and events to the cluster
    and the cluster's to it; when the gateway goes away it moves to another node
    it knows.

    Example::

        async with pydds.Client(join=["127.0.0.1:7400"]) as client:
            await client.database("cache").set("k", 1)
    """

    role = "client"

    def __init__(
        self,
        name: str | None = None,
        *,
        join: Iterable[str],
        transport: Transport | None = None,
        clock: Clock | None = None,
        cluster: ClusterSettings | None = None,
        limits: Limits | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        join = list(join)
        if not join:
            raise InvalidValue("a client needs at least one node to join")
        super().__init__(
            name,
            join=join,
            transport=transport,
            clock=clock,
            cluster=cluster,
            limits=limits,
            credentials=credentials,
        )
        if self.credentials.token is not None:  # an id its gateway can check
            self.client_id = client_id_for(self.credentials.token, self.name)
