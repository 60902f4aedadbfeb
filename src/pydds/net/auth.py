"""Credentials and the link handshake's proofs (sans-IO).

Nodes share one or more cluster secrets (several, to rotate: accept old and new,
then drop the old); the first is the one this node proves with. Clients hold client
tokens (an id, a secret, the databases and rights it grants), distinct from the
cluster secrets. The handshake never sends a secret: each end sends a fresh random
nonce in its ``Hello``, then a ``Proof``, an HMAC-SHA256 over both nonces and its
own name and role, keyed by

* a cluster secret, between nodes;
* the client's token secret, between a client and its gateway, both ways (the
  client also learns that its gateway knows the token).

A client token can never join as a node: a node's proof is checked against the
cluster secrets only. A node with no credentials at all accepts every peer (open
mode, for a trusted network or a single machine); once any secret or token is
configured, every link must prove itself.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as _secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..errors import ProtocolError

__all__ = ["RIGHTS", "ClientToken", "Credentials", "Grant", "client_id_for", "new_nonce"]

RIGHTS = frozenset({"read", "write", "emit"})
_CONTEXT = b"pydds-link-proof-1\0"
_CLIENT_ID = b"pydds-client-id-1\0"
NONCE_BYTES = 16


def client_id_for(token: ClientToken, name: str) -> int:
    """The Yjs client id a client named ``name`` writes under with ``token``: derived
    from the token's secret, so that no client can claim another writer's id (its
    gateway checks it). Two clients sharing a token need different names."""
    digest = hmac.new(_key(token.secret), _CLIENT_ID + name.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") % (2**53 - 1) + 1


def new_nonce() -> bytes:
    """A fresh random nonce for a ``Hello``."""
    return _secrets.token_bytes(NONCE_BYTES)


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


@dataclass(frozen=True)
class ClientToken:
    """A client credential: ``id`` and ``secret``, scoped to ``databases`` (None: all)
    and ``rights`` (``read``, ``write``, ``emit``).

    Example::

        ClientToken("billing", "s3cret", databases={"invoices"}, rights={"read", "write"})
    """

    id: str
    secret: str | bytes = field(repr=False)
    databases: frozenset[str] | None = None
    rights: frozenset[str] = RIGHTS

    def __post_init__(self) -> None:
        object.__setattr__(self, "rights", frozenset(self.rights))
        if self.databases is not None:
            object.__setattr__(self, "databases", frozenset(self.databases))
        if not self.id or ":" in self.id or "." in self.id:
            raise ValueError("a token id is a non-empty name without ':' or '.'")
        if len(_key(self.secret)) < 16:
            raise ValueError(f"the secret of token {self.id!r} is shorter than 16 bytes")
        unknown = self.rights - RIGHTS
        if unknown:
            raise ValueError(f"unknown rights {sorted(unknown)}: use read, write, emit")

    @classmethod
    def parse(cls, spec: str) -> ClientToken:
        """``id:secret[:databases[:rights]]``, databases and rights joined by ``+``,
        ``*`` for all: ``billing:s3cret-s3cret-s3cret:invoices+payments:read+write``.

        Raises:
            ValueError: a malformed spec.
        """
        parts = spec.split(":")
        if len(parts) < 2 or len(parts) > 4:
            raise ValueError("a token is id:secret[:databases[:rights]]")
        databases = parts[2] if len(parts) > 2 else "*"
        rights = parts[3] if len(parts) > 3 else "*"
        return cls(
            parts[0],
            parts[1],
            None if databases == "*" else frozenset(d for d in databases.split("+") if d),
            RIGHTS if rights == "*" else frozenset(r for r in rights.split("+") if r),
        )


@dataclass(frozen=True)
class Grant:
    """What a verified peer may do: everything for a node, its token's scope for a
    client."""

    role: str
    token: str | None = None
    databases: frozenset[str] | None = None  # None: every database
    rights: frozenset[str] = RIGHTS

    def allows(self, right: str, database: str | None = None) -> bool:
        """Whether the peer has ``right`` (on ``database``, when given)."""
        if right not in self.rights:
            return False
        return database is None or self.databases is None or database in self.databases


OPEN_NODE = Grant("node")
OPEN_CLIENT = Grant("client")


class Credentials:
    """What a node or a client proves itself with, and what it accepts.

    Example::

        node_credentials = Credentials(
            secrets=["new-cluster-secret", "old-cluster-secret"],
            tokens=[ClientToken("web", "web-secret-0123456789", databases={"cache"})],
        )
        client_credentials = Credentials(token=ClientToken("web", "web-secret-0123456789"))

    Args:
        secrets: cluster secrets; the first proves this node, all are accepted.
        tokens: the client tokens this node accepts from clients (and gateways).
        token: the token a client proves itself with.
    """

    def __init__(
        self,
        *,
        secrets: Sequence[str | bytes] = (),
        tokens: Iterable[ClientToken] = (),
        token: ClientToken | None = None,
    ) -> None:
        self.secrets = [_key(s) for s in secrets]
        for secret in self.secrets:
            if len(secret) < 16:
                raise ValueError("a cluster secret is at least 16 bytes")
        self.tokens = {t.id: t for t in tokens}
        self.token = token

    @property
    def enabled(self) -> bool:
        """Whether links must prove themselves here (anything is configured)."""
        return bool(self.secrets or self.tokens or self.token)

    def credential_id(self, role: str) -> str | None:
        """The token id a client names in its ``Hello`` (None for a node)."""
        return self.token.id if role == "client" and self.token is not None else None

    @staticmethod
    def mac(key: bytes, role: str, name: str, prover: bytes, verifier: bytes) -> bytes:
        message = b"\0".join((_CONTEXT, role.encode(), name.encode(), prover, verifier))
        return hmac.new(key, message, hashlib.sha256).digest()

    def proof(
        self,
        *,
        role: str,
        name: str,
        own_nonce: bytes,
        peer_nonce: bytes,
        peer_token: str | None,
    ) -> bytes:
        """This end's proof (empty when it has nothing to prove with)."""
        key: bytes | None = None
        if role == "client":
            key = _key(self.token.secret) if self.token is not None else None
        elif peer_token is not None:  # a gateway answers a client with its token
            token = self.tokens.get(peer_token)
            key = _key(token.secret) if token is not None else None
        elif self.secrets:
            key = self.secrets[0]
        if key is None:
            return b""
        return self.mac(key, role, name, own_nonce, peer_nonce)

    def verify(
        self,
        *,
        local_role: str,
        peer_role: str,
        peer_name: str,
        peer_token: str | None,
        peer_nonce: bytes,
        own_nonce: bytes,
        proof: bytes,
        peer_client_id: int = 0,
    ) -> Grant:
        """Check a peer's proof; what it may do.

        Raises:
            ProtocolError: the proof is missing or wrong, or a client token tries to
                join as a node.
        """
        if not self.enabled:
            return OPEN_CLIENT if peer_role == "client" else OPEN_NODE
        if peer_role == "node" and peer_token is not None:
            raise ProtocolError("a client token cannot join as a node")
        if local_role == "client":  # the gateway proves it knows this client's token
            assert self.token is not None
            keys = [_key(self.token.secret)]
            grant = OPEN_NODE
        elif peer_role == "client":
            token = self.tokens.get(peer_token or "")
            if token is None:
                raise ProtocolError("authentication failed: unknown client token")
            if peer_client_id != client_id_for(token, peer_name):
                raise ProtocolError("authentication failed: a client id its token does not give")
            keys = [_key(token.secret)]
            grant = Grant("client", token.id, token.databases, token.rights)
        else:
            keys = self.secrets
            grant = OPEN_NODE
        for key in keys:
            expected = self.mac(key, peer_role, peer_name, peer_nonce, own_nonce)
            if hmac.compare_digest(expected, proof):
                return grant
        raise ProtocolError("authentication failed: wrong proof")

    def bearer(self, header: str | None) -> Grant | None:
        """The grant of an HTTP ``Authorization: Bearer ID.SECRET`` header (a client
        token), or of a cluster secret (everything); None when it proves nothing."""
        if not header or not header.startswith("Bearer "):
            return None
        value = header[7:].strip().encode()
        for secret in self.secrets:
            if hmac.compare_digest(value, secret):
                return OPEN_NODE
        token_id, _, secret = value.partition(b".")
        token = self.tokens.get(token_id.decode(errors="replace"))
        if token is not None and hmac.compare_digest(secret, _key(token.secret)):
            return Grant("client", token.id, token.databases, token.rights)
        return None
