"""The CRDT layer: pydds values, directories and key documents on pycrdt (Yjs/Yrs)."""
