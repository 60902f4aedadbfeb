"""Modules named by specs: ``package.module:Class?option=value&other=value``, or the
name of an entry point in the group ``pydds.modules`` (``persist?path=/data``).

The class is called with the options as keyword arguments (values are strings from
a command line or environment variable; a TOML table keeps its types).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import parse_qsl

from ..errors import ModuleError
from .base import Module

__all__ = ["ENTRY_POINT_GROUP", "load_module", "parse_spec"]

ENTRY_POINT_GROUP = "pydds.modules"


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """Split a spec into its target and its options.

    Example::

        parse_spec("pkg.mod:Cls?path=/data&every=5")
        # ('pkg.mod:Cls', {'path': '/data', 'every': '5'})
    """
    target, _, query = spec.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False))
    return target.strip(), options


def _resolve(target: str) -> Any:
    if ":" in target:
        module_name, _, attribute = target.partition(":")
        try:
            found: Any = importlib.import_module(module_name)
        except ImportError as exc:
            raise ModuleError(
                f"cannot import {module_name!r} for module {target!r}: {exc}"
            ) from exc
        for part in attribute.split("."):
            try:
                found = getattr(found, part)
            except AttributeError:
                raise ModuleError(f"{module_name!r} has no {attribute!r}") from None
        return found
    matches = entry_points(group=ENTRY_POINT_GROUP, name=target)
    if not matches:
        raise ModuleError(
            f"no module {target!r}: give package.module:Class, or install a package that "
            f"declares {target!r} in the entry-point group {ENTRY_POINT_GROUP!r}"
        )
    try:
        return next(iter(matches)).load()
    except Exception as exc:
        raise ModuleError(f"cannot load the entry point {target!r}: {exc}") from exc


def load_module(spec: str | Mapping[str, Any]) -> Module:
    """Make the module a spec names: a string, or a table with ``spec`` and options.

    Raises:
        ModuleError: the target cannot be found, is not a module class, or refuses
            the options.
    """
    if isinstance(spec, str):
        target, options = parse_spec(spec)
        extra: dict[str, Any] = dict(options)
    else:
        if not isinstance(spec.get("spec"), str):
            raise ModuleError(f"a module table needs a 'spec' string: {dict(spec)!r}")
        target, options = parse_spec(spec["spec"])
        extra = {**options, **{k: v for k, v in spec.items() if k != "spec"}}
    factory = _resolve(target)
    if not (isinstance(factory, type) and issubclass(factory, Module)):
        raise ModuleError(f"{target!r} is not a pydds.Module class")
    try:
        return factory(**extra)
    except (TypeError, ValueError) as exc:
        raise ModuleError(f"module {target!r} refused its options {extra!r}: {exc}") from exc
