"""Tools for testing pydds and what is built on it (fuzzing the link protocol)."""
