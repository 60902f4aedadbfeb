"""``python -m pydds.testing.chaos``: the command line run as a program."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
