"""``python -m pydds`` is the ``pydds`` command."""

import sys

from .cli import main

sys.exit(main())
