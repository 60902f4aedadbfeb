"""The ``pydds`` command: ``pydds serve`` runs a node; the other commands talk to one
over its HTTP API (``--node``, default 127.0.0.1:7400 or ``PYDDS_NODE``)."""

from __future__ import annotations

import click

from .. import __version__
from .client import COMMANDS
from .options import group_options
from .serve import serve_command

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pydds", message="%(prog)s %(version)s")
@group_options
def cli(node: str, timeout: float, token: str | None, tls_ca: str | None, as_json: bool) -> None:
    """pydds: a distributed data store and event system.

    `pydds serve` runs a node; the other commands talk to a node's HTTP API.
    Their options (--node, --token, --json, ...) go before or after the command.
    """


cli.add_command(serve_command)
for command in COMMANDS:
    cli.add_command(command)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pydds`` command (exits with the command's code)."""
    cli.main(args=argv, prog_name="pydds")
    return 0
