"""``pydds serve``: its options (the node process itself is ``process.py``, imported
only when a node runs, so that the other commands start fast)."""

from __future__ import annotations

import sys
from typing import Any

import click

__all__ = ["serve_command"]


@click.command("serve")
@click.option("--config", "config_file", metavar="FILE", help="a TOML file of settings")
@click.option("--host", default=None, help="the address to bind  [default: 127.0.0.1]")
@click.option("--port", default=None, help="0 picks a free port  [default: 7400]")
@click.option("--join", multiple=True, metavar="ADDR", help="a node to join (repeatable)")
@click.option("--advertise", default=None, metavar="ADDR", help="the address peers should dial")
@click.option("--name", default=None, help="the node's name  [default: random]")
@click.option("--data-dir", default=None, help="where data is kept  [default: ./pydds-data]")
@click.option("--memory", is_flag=True, default=None, help="keep data in memory only")
@click.option(
    "--module", "modules", multiple=True, metavar="SPEC", help="package.module:Class?opt=v"
)
@click.option(
    "--secret", "secrets", multiple=True, metavar="SECRET", help="a cluster secret (repeatable)"
)
@click.option(
    "--token", "tokens", multiple=True, metavar="SPEC", help="a client token id:secret:dbs:rights"
)
@click.option("--tls-cert", default=None, metavar="PEM", help="serve https and wss")
@click.option("--tls-key", default=None, metavar="PEM", help="the certificate's key")
@click.option("--tls-ca", default=None, metavar="PEM", help="CA certificates peers must chain to")
@click.option("--log-level", default=None, help="debug, info, warning or error  [default: info]")
@click.option(
    "--log-format", default=None, type=click.Choice(["text", "json"]), help="[default: text]"
)
@click.option(
    "--stale-after",
    multiple=True,
    metavar="DB=SECONDS",
    help="idle seconds before a database's key goes stale here: kept, no longer"
    " replicated; not a TTL (repeatable)",
)
@click.option("--expire", multiple=True, metavar="DB=SECONDS", help="deprecated: --stale-after")
@click.option(
    "--max-memory",
    default=None,
    metavar="SIZE",
    help="bytes the values held here may take, e.g. 512MiB; past it, copies held"
    " elsewhere or on disk are evicted  [default: no limit]",
)
@click.option(
    "--eviction",
    default=None,
    type=click.Choice(["lru", "lfu"]),
    help="which copies go first past --max-memory  [default: lru]",
)
@click.option(
    "--loop",
    default=None,
    type=click.Choice(["auto", "uvloop", "asyncio"]),
    help="the event loop; auto is uvloop if installed  [default: auto]",
)
@click.option(
    "--tombstone-horizon",
    default=None,
    metavar="SECONDS",
    help="how long a deleted key is remembered, then pruned everywhere  [default: 21600]",
)
@click.option(
    "--http-idle-timeout",
    default=None,
    metavar="SECONDS",
    help="close an HTTP connection this long without a request  [default: 15]",
)
@click.option(
    "--http-header-timeout",
    default=None,
    metavar="SECONDS",
    help="close one whose request line and headers take longer  [default: 10]",
)
def serve_command(config_file: str | None, **options: Any) -> None:
    """Run a node process.

    Settings come from the options, then PYDDS_* environment variables (PYDDS_PORT,
    PYDDS_JOIN=a,b, ...), then the --config file (or PYDDS_CONFIG), then the
    defaults. Write IPv6 addresses in brackets: --join [::1]:7400. SIGTERM or
    SIGINT stops the node gracefully (exit code 0).
    """
    from .process import start  # the node and everything it needs

    code = start(config_file, options)
    if code:
        sys.exit(code)
