"""Modules: pluggable parts of a node (persistence, keep-fresh, statistics)."""
