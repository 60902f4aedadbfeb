"""The ``pydds`` command: ``pydds serve`` runs a node; the other commands talk to one
over its HTTP API (``--node``, default 127.0.0.1:7400 or ``PYDDS_NODE``)."""

from __future__ import annotations

import click

from .. import __version__
from .client import COMMANDS
from .serve import serve_command

__all__ = ["cli", "main"]

DEFAULT_NODE = "127.0.0.1:7400"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pydds", message="%(prog)s %(version)s")
@click.option(
    "--node",
    envvar="PYDDS_NODE",
    default=DEFAULT_NODE,
    show_default=True,
    metavar="ADDR",
    help="the node to talk to (host:port or http://host:port; env PYDDS_NODE)",
)
@click.option("--timeout", type=float, default=30.0, show_default=True, help="seconds per request")
@click.option(
    "--token",
    envvar="PYDDS_TOKEN",
    default=None,
    metavar="ID.SECRET",
    help="a client token (or a cluster secret) for a node with credentials; env PYDDS_TOKEN",
)
@click.option("--tls-ca", default=None, metavar="PEM", help="CA certificates to verify https")
def cli(node: str, timeout: float, token: str | None, tls_ca: str | None) -> None:
    """pydds: a distributed data store and event system.

    `pydds serve` runs a node; the other commands talk to a node's HTTP API.
    """


cli.add_command(serve_command)
for command in COMMANDS:
    cli.add_command(command)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pydds`` command (exits with the command's code)."""
    cli.main(args=argv, prog_name="pydds")
    return 0
