"""The README's quickstart works when pasted."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_quickstart_runs_and_prints_what_it_says() -> None:
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert code is not None
    result = subprocess.run(
        [sys.executable, "-c", code.group(1)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "{'name': 'Ada', 'langs': ['en', 'fr'], 'age': 37}",
        "1",
        "['user:1']",
        "deleted user:1",
        "deploy {'version': 3}",
    ]
