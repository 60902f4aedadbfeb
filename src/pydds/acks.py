"""A write's acknowledgement level: what it is written as, and what it means."""

from __future__ import annotations

from .errors import InvalidValue

__all__ = ["Ack", "check_ack", "parse_ack"]

#: A write's acknowledgement level: "local", "majority", "all", a number of nodes,
#: "durable", or "durable+" one of the others.
Ack = str | int


def parse_ack(ack: object) -> tuple[bool, str | int]:
    """Split a write's ack level into (durable, cluster level).

    Levels: ``"local"``, ``"majority"``, ``"all"``, an int >= 1 (nodes that applied
    the write, this one counting), ``"durable"`` (on this node's disk), or
    ``"durable+"`` and a cluster level (``"durable+majority"``).

    Example::

        parse_ack("durable+majority")   # (True, 'majority')
        parse_ack(2)                    # (False, 2)

    Raises:
        InvalidValue: anything else.
    """
    durable, level = False, ack
    if isinstance(ack, str) and ack.startswith("durable"):
        durable, rest = True, ack.removeprefix("durable")
        level = "local" if not rest else rest.removeprefix("+") if rest[0] == "+" else ack
        if isinstance(level, str) and level.isdigit():
            level = int(level)
    if level in ("local", "majority", "all"):
        return durable, level
    if type(level) is int and level >= 1:
        return durable, level
    raise InvalidValue(
        f"ack must be 'local', 'majority', 'all', a number >= 1, 'durable' or "
        f"'durable+' one of those, not {ack!r}"
    )


def check_ack(ack: object) -> None:
    """Check a write's ack level (see ``parse_ack``).

    Raises:
        InvalidValue: not a level.
    """
    parse_ack(ack)
