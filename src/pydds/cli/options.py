"""The options every client command takes, before or after its name:
``pydds --node H:P get cache k`` and ``pydds get cache k --node H:P`` are the same.

The group holds the defaults (and the environment: ``PYDDS_NODE``, ``PYDDS_TOKEN``);
an option given after the subcommand overrides the one given before it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

__all__ = ["DEFAULT_NODE", "client_options", "group_options", "option"]

DEFAULT_NODE = "127.0.0.1:7400"

F = TypeVar("F", bound=Callable[..., Any])

_HELP = {
    "node": "the node to talk to (host:port or http://host:port; env PYDDS_NODE)",
    "timeout": "seconds per request",
    "token": "a client token (or a cluster secret) for a node with credentials; env PYDDS_TOKEN",
    "tls_ca": "CA certificates to verify https",
    "json": "print the node's answer as JSON",
}


def group_options(command: F) -> F:
    """The options with their defaults, on the ``pydds`` group."""
    decorators = [
        click.option(
            "--node",
            envvar="PYDDS_NODE",
            default=DEFAULT_NODE,
            show_default=True,
            metavar="ADDR",
            help=_HELP["node"],
        ),
        click.option(
            "--timeout", type=float, default=30.0, show_default=True, help=_HELP["timeout"]
        ),
        click.option(
            "--token", envvar="PYDDS_TOKEN", default=None, metavar="ID.SECRET", help=_HELP["token"]
        ),
        click.option("--tls-ca", default=None, metavar="PEM", help=_HELP["tls_ca"]),
        click.option("--json", "as_json", is_flag=True, help=_HELP["json"]),
    ]
    for decorate in reversed(decorators):
        command = decorate(command)
    return command


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value not in (None, False) and param.name is not None:  # an unset flag is False
        ctx.meta[f"pydds.{param.name}"] = value


def client_options(command: F) -> F:
    """The same options on a subcommand: no defaults there, so that only what is
    given after the subcommand overrides the group's."""
    common: dict[str, Any] = {"expose_value": False, "callback": _remember, "default": None}
    decorators = [
        click.option("--node", metavar="ADDR", help=_HELP["node"], **common),
        click.option("--timeout", type=float, help=_HELP["timeout"], **common),
        click.option("--token", metavar="ID.SECRET", help=_HELP["token"], **common),
        click.option("--tls-ca", metavar="PEM", help=_HELP["tls_ca"], **common),
        click.option("--json", "as_json", is_flag=True, help=_HELP["json"], **common),
    ]
    for decorate in reversed(decorators):
        command = decorate(command)
    return command


def option(name: str) -> Any:
    """An option's value: given after the subcommand, else before it, else its default."""
    ctx = click.get_current_context()
    given = ctx.meta.get(f"pydds.{name}")
    return given if given is not None else ctx.find_root().params[name]
