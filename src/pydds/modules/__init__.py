"""Modules: pluggable parts of a node (persistence, keep-fresh, statistics, yours).

See ``Module`` for the contract and ``load_module`` for specs.
"""

from .base import EventFilter, Module
from .loading import ENTRY_POINT_GROUP, load_module, parse_spec

__all__ = ["ENTRY_POINT_GROUP", "EventFilter", "Module", "load_module", "parse_spec"]
