"""The command line: a plan from options, a run, its report printed (exit 0 on a pass)."""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import asdict
from pathlib import Path

from .plan import Plan
from .runner import run

#: ``--help``'s description: the first paragraph of the package's docstring.
DESCRIPTION = """A Jepsen-style harness: real ``pydds serve`` processes, a proxy in front of each,
faults (partitions, one-way cuts, SIGKILL and restart, SIGSTOP pauses, delays,
graceful leaves and rejoins), a workload whose every write is unique, and a checker."""


def main() -> int:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    defaults = Plan()
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name}", type=type(value), default=value)
    parser.add_argument("--json", default=None, help="also write the report here")
    parser.add_argument("--workdir", default=None, help="keep data directories here")
    args = vars(parser.parse_args())
    out, workdir = args.pop("json"), args.pop("workdir")
    report = asyncio.run(run(Plan(**args), workdir))
    print(report.text())
    if out:
        Path(out).write_text(json.dumps({**asdict(report), "ok": report.ok}, indent=2))
    return 0 if report.ok else 1
