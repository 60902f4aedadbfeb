"""Command-line start-up: seconds until a ``pydds`` command has done its work.

Prints one JSON object: for each command, the median and the worst of N runs of
the installed ``pydds`` entry point (``--version``, ``--help``, ``get`` against a
node that is not there, which fails at once, and ``serve --help``), and of a bare
``python -c pass`` for the interpreter's own share. The goal: every command within
0.25 s on a 2-core machine.

    python bench/cli_start.py [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path


def entry_point() -> list[str]:
    """The ``pydds`` script beside this interpreter (not a shell shim in front of it)."""
    beside = Path(sys.executable).with_name("pydds")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("pydds")
    return [found] if found else [sys.executable, "-m", "pydds"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def timed(command: list[str], runs: int) -> dict[str, float]:
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        seconds.append(time.perf_counter() - start)
    return {"median_s": round(statistics.median(seconds), 3), "max_s": round(max(seconds), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    pydds = entry_point()
    nowhere = f"127.0.0.1:{free_port()}"
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "pydds --version": [*pydds, "--version"],
        "pydds --help": [*pydds, "--help"],
        "pydds get (no node)": [*pydds, "get", "db", "k", "--node", nowhere],
        "pydds serve --help": [*pydds, "serve", "--help"],
    }
    result = {"entry_point": pydds, "runs": args.runs}
    result.update({name: timed(command, args.runs) for name, command in commands.items()})
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
