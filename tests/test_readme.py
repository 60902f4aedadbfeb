"""Every code block of README.md and docs/*.md runs as written.

What a block is, and so how it is run, is said by its fence's info string:

- ```` ```python ````: a complete script, run with this interpreter from an empty
  directory; it exits with code 0 (within 60 s) and, for the blocks in ``PRINTS``,
  prints what its comments say.
- ```` ```python fragment ````: lines that use a ``node`` and its database ``db``
  from the text around them, run with top-level ``await`` (as in Jupyter or
  ``python -m asyncio``) inside ``async with pydds.Node(modules=[Persistence()]) as
  node:`` after ``db = node.database("cache")``, a script like the above.
- ```` ```sh ````: one command per line (``\\`` continues a line). A ``pydds serve``
  line starts a node process (trailing ``&`` or not) and the test waits until the
  block's nodes see each other; every other line runs in bash and exits with code 0
  (curl with ``--fail-with-body``, from a ``.curlrc``, so that an HTTP error
  fails). A comment after a command that is ``OK`` or a JSON value is its output,
  exactly.
  ``pydds watch`` and ``curl -N`` stream: they must show a change the test makes to
  the key ``user:watched`` of the database ``cache`` on the node they watch.
- ```` ```toml ````: a settings file: written to ``node.toml`` and served with
  ``pydds serve --config node.toml``; the node takes the name and port it sets.
- a fence with no info string, or ``text``: output or a diagram; not run.
- ```` ```LANG no-run ````: not run. Kept for what cannot run here as written:
  installing (it changes the environment the tests run in), a placeholder for the
  reader's own code or package, a loop that waits for events forever, the minutes
  of a full chaos run.

Any other fence fails ``test_every_block_is_run_or_marked``: a new block is either
run or marked.

Ports 7400-7499 in a block are replaced by free ones, and ``--host 0.0.0.0`` by
``127.0.0.1`` (tests listen on loopback only); client commands without ``--node``
talk to 7400's replacement (``PYDDS_NODE``), and a ``pydds serve`` without
``--port`` listens on it (``PYDDS_PORT``). A block that starts nodes of its own (a
``pydds serve`` line, ``listen=`` on a 74xx port, a settings file) gets ports of its
own. The others talk to the README's cluster: the two ``pydds serve ... &`` lines
under "A cluster", started once for the module, where 7400 is node a and 7401 node
b.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import shlex
import socket
import sys
import textwrap
import tomllib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from .helpers import stop_process

# The async tests share the loop of the module's cluster.
in_module_loop = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^( *)```([^`\n]*)\n(.*?)^\1```[ \t]*$", re.S | re.M)

# What some Python blocks print, one regular expression per line; each is found by
# a line of its own (test_every_expected_output_finds_its_block).
PRINTS = {
    ("README.md", 'print(db.keys(prefix="user:"))'): [
        re.escape("{'age': 37, 'langs': ['en', 'fr'], 'name': 'Ada'}"),  # sorted fields
        "1",
        re.escape("['user:1']"),
        "60",
        "deleted user:1",
        re.escape("deploy {'version': 3}"),
    ],
    ("README.md", 'await cache.set("k", 1, ack="majority")'): ["1"],
    ("docs/api.md", "print(node.databases())"): [re.escape("['cache']")],
    ("docs/api.md", "print(results[0], calls)"): [re.escape("{'id': 7} 1")],
    ("docs/api.md", 'print(db.get("user:1"))'): [
        re.escape("{'name': 'Ada'}"),
        re.escape("{'user:1': {'name': 'Ada'}}"),
    ],
    ("docs/cluster.md", "b.members()"): [r"ws://127\.0\.0\.1:\d+ \['b', 'a'\]"],
    ("docs/events.md", "print(job.payload, job.attempt)"): [re.escape("{'invoice': 7} 0")],
}

FRAGMENT = """\
import asyncio
import pydds
from pydds.modules.persist import Persistence

async def main():
    async with pydds.Node(modules=[Persistence()]) as node:
        db = node.database("cache")
{}

asyncio.run(main())
"""

STREAM_KEY = "user:watched"  # what a streaming command must show


@dataclass(frozen=True)
class Block:
    """A fenced code block of a document."""

    path: Path
    line: int  # of the opening fence
    info: str  # the fence's info string
    code: str  # dedented to the fence

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def kind(self) -> str | None:
        """How the block is run ("python", "fragment", "sh", "toml"), "exempt", or
        None for a fence this module does not know."""
        words = self.info.split()
        if words in ([], ["text"]) or words[1:] == ["no-run"]:
            return "exempt"
        return {
            ("python",): "python",
            ("python", "fragment"): "fragment",
            ("sh",): "sh",
            ("toml",): "toml",
        }.get(tuple(words))


def all_blocks() -> Iterator[Block]:
    for path in DOCUMENTS:
        text = path.read_text()
        for match in FENCE.finditer(text):
            indent, info, code = match.groups()
            line = text.count("\n", 0, match.start()) + 1
            code = "".join(c.removeprefix(indent) for c in code.splitlines(keepends=True))
            yield Block(path, line, info.strip(), code)


BLOCKS = list(all_blocks())


def of_kind(kind: str) -> list[Any]:
    return [pytest.param(b, id=b.id) for b in BLOCKS if b.kind == kind]


def commands(code: str) -> list[str]:
    """The commands of a shell block: one a line, continuations joined."""
    lines = code.replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def split_comment(command: str) -> tuple[str, str | None]:
    """A command and its trailing comment (a ``#`` after a blank, outside quotes)."""
    quote = None
    for i, char in enumerate(command):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and i > 0 and command[i - 1].isspace():
            return command[:i].rstrip(), command[i + 1 :].strip()
    return command, None


def words_of(command: str) -> tuple[dict[str, str], list[str]]:
    """The environment assignments before a command, and its words (no ``&``)."""
    words = shlex.split(command, comments=True)
    if words and words[-1] == "&":
        words.pop()
    env = {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    return env, words


def is_serve(command: str) -> bool:
    return words_of(command)[1][:2] == ["pydds", "serve"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Ports(dict[int, int]):
    """Documented ports (74xx) to free ones, each picked on first use."""

    def __missing__(self, port: int) -> int:
        self[port] = free_port()
        return self[port]

    def substitute(self, text: str) -> str:
        text = re.sub(r"\b74\d\d\b", lambda m: str(self[int(m.group())]), text)
        return text.replace("--host 0.0.0.0", "--host 127.0.0.1")


@dataclass
class Served:
    """A node process started for a block."""

    proc: asyncio.subprocess.Process
    line: str  # the first it printed: "pydds node NAME serving on URL ..."
    url: str
    log: Path  # its stderr


class Place:
    """A directory, its ports, and the node processes started for its blocks."""

    def __init__(self, cwd: Path, ports: Ports | None = None) -> None:
        self.cwd = cwd
        self.ports = ports if ports is not None else Ports()
        self.nodes: list[Served] = []
        (cwd / ".curlrc").write_text("fail-with-body\nsilent\nshow-error\n")

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYDDS_")}
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env["CURL_HOME"] = str(self.cwd)
        env["PYDDS_NODE"] = f"127.0.0.1:{self.ports[7400]}"
        return {**env, **extra}

    async def serve(self, command: str) -> str:
        """Start a ``pydds serve`` line; the URL it serves on."""
        assignments, words = words_of(self.ports.substitute(command))
        args = words[2:]
        env = self.env(**assignments)
        if "--port" not in args and "--config" not in args:
            env["PYDDS_PORT"] = str(self.ports[7400])
        log = self.cwd / f"node-{len(self.nodes)}.log"
        with log.open("wb") as stderr:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "pydds",
                "serve",
                *args,
                cwd=self.cwd,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,  # its own process group, stopped as a whole
            )
        assert proc.stdout is not None
        try:
            line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        except BaseException:
            await stop_process(proc)
            raise
        match = re.search(r"serving on (http://127\.0\.0\.1:\d+)", line)
        self.nodes.append(Served(proc, line, match.group(1) if match else "", log))
        assert match, f"{command}: {line!r}\n{log.read_text()}"
        return match.group(1)

    async def until_linked(self) -> None:
        """Wait (bounded: 20 s) until every node lists every other one as alive."""
        urls = [node.url for node in self.nodes]
        if len(urls) < 2:
            return
        async with aiohttp.ClientSession() as session, asyncio.timeout(20):
            for url in urls:
                while True:
                    async with session.get(url + "/v1/cluster") as response:
                        members = (await response.json())["members"]
                    if sum(m["state"] in ("self", "alive") for m in members) == len(urls):
                        break
                    await asyncio.sleep(0.05)  # other processes: nothing to await here

    async def stop(self) -> None:
        """Stop the nodes; each must exit with code 0."""
        codes = [(await stop_process(node.proc), node.log) for node in self.nodes]
        self.nodes.clear()
        for code, log in codes:
            assert code == 0, log.read_text()

    async def run(self, command: str) -> tuple[int, str, str]:
        """Run a command in bash; its exit code, stdout and stderr."""
        proc = await self.bash(command, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 30)
        finally:
            await stop_process(proc)
        return await proc.wait(), out.decode(), err.decode()

    async def bash(self, command: str, **kwargs: int) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            command,
            cwd=self.cwd,
            env=self.env(),
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
            **kwargs,  # type: ignore[arg-type]
        )

    async def stream(self, command: str) -> str:
        """Run a streaming command until it shows a change to ``STREAM_KEY``; that line."""
        match = re.search(r"(?:127\.0\.0\.1|localhost):(\d+)", command)
        port = match.group(1) if match else str(self.ports[7400])
        url = f"http://127.0.0.1:{port}/v1/databases/cache/keys/{STREAM_KEY}"
        proc = await self.bash(command, stderr=asyncio.subprocess.DEVNULL)
        assert proc.stdout is not None
        try:
            async with aiohttp.ClientSession() as session, asyncio.timeout(20):
                for n in itertools.count():
                    # Again until it shows: nothing says when it has subscribed.
                    async with session.put(url, json={"n": n}) as response:
                        assert response.status in (200, 201), await response.text()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.5):
                            while True:
                                line = (await proc.stdout.readline()).decode()
                                assert line, f"{command}: the stream ended"
                                if STREAM_KEY in line:
                                    return line
        except TimeoutError:
            raise AssertionError(f"{command}: no change to {STREAM_KEY} in 20 s") from None
        finally:
            await stop_process(proc)


async def run_script(code: str, place: Place) -> str:
    """Run a Python script in ``place``; what it printed (it must exit with 0)."""
    script = place.cwd / "block.py"
    script.write_text(code)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        cwd=place.cwd,
        env=place.env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        await stop_process(proc)
    assert proc.returncode == 0, f"exit code {proc.returncode}\n{err.decode()}"
    return out.decode()


def the_readme_cluster() -> Block:
    """The README's first shell block made of ``pydds serve ... &`` lines only."""
    for block in BLOCKS:
        lines = commands(block.code)
        if (
            block.path.name == "README.md"
            and block.kind == "sh"
            and lines
            and all(is_serve(c) and c.endswith("&") for c in lines)
        ):
            return block
    raise AssertionError("README.md has no block that starts a cluster")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def readme_cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Place]:
    place = Place(tmp_path_factory.mktemp("readme-cluster"))
    try:
        for command in commands(the_readme_cluster().code):
            await place.serve(command)
        await place.until_linked()
        yield place
    finally:
        await place.stop()


def starts_nodes(block: Block) -> bool:
    if block.kind == "sh":
        return any(is_serve(c) for c in commands(block.code))
    return block.kind == "toml" or bool(re.search(r"listen=\"[^\"]*:74\d\d\"", block.code))


def place_for(block: Block, readme_cluster: Place, tmp_path: Path) -> Place:
    if starts_nodes(block):
        return Place(tmp_path)
    return Place(tmp_path, readme_cluster.ports)


def is_json(comment: str) -> bool:
    try:
        json.loads(comment)
    except ValueError:
        return False
    return True


def expected_prints(block: Block) -> list[str] | None:
    name = str(block.path.relative_to(ROOT))
    found = [lines for (doc, line), lines in PRINTS.items() if doc == name and line in block.code]
    assert len(found) <= 1, block.id
    return found[0] if found else None


def test_every_block_is_run_or_marked() -> None:
    unknown = [f"{b.id}: ```{b.info}" for b in BLOCKS if b.kind is None]
    assert not unknown, "run these blocks, or mark them (see this module's docstring)"
    for path in DOCUMENTS:  # no fence is missed (two fence lines a block)
        fences = [line for line in path.read_text().splitlines() if line.lstrip().startswith("```")]
        assert len(fences) == 2 * sum(b.path == path for b in BLOCKS), path


def test_every_expected_output_finds_its_block() -> None:
    for (doc, line), _ in PRINTS.items():
        found = [b for b in BLOCKS if b.kind == "python" and str(b.path.relative_to(ROOT)) == doc]
        assert sum(line in b.code for b in found) == 1, (doc, line)


@in_module_loop
@pytest.mark.parametrize("block", of_kind("python"))
async def test_python_block(block: Block, readme_cluster: Place, tmp_path: Path) -> None:
    place = place_for(block, readme_cluster, tmp_path)
    out = await run_script(place.ports.substitute(block.code), place)
    expected = expected_prints(block)
    if expected is not None:
        lines = out.splitlines()
        assert len(lines) == len(expected), out
        for line, pattern in zip(lines, expected, strict=True):
            assert re.fullmatch(pattern, line), (line, pattern)


@in_module_loop
@pytest.mark.parametrize("block", of_kind("fragment"))
async def test_python_fragment(block: Block, readme_cluster: Place, tmp_path: Path) -> None:
    place = place_for(block, readme_cluster, tmp_path)
    code = FRAGMENT.format(textwrap.indent(place.ports.substitute(block.code), " " * 8))
    await run_script(code, place)


@in_module_loop
@pytest.mark.parametrize("block", of_kind("sh"))
async def test_shell_block(block: Block, readme_cluster: Place, tmp_path: Path) -> None:
    if block == the_readme_cluster():  # started by the fixture
        assert len(readme_cluster.nodes) == 2
        await readme_cluster.until_linked()
        return
    place = place_for(block, readme_cluster, tmp_path)
    try:
        for line in commands(block.code):
            if is_serve(line):
                await place.serve(line)
                continue
            await place.until_linked()
            command, comment = split_comment(place.ports.substitute(line))
            words = words_of(command)[1]
            if (words[:2] == ["pydds", "watch"] and "--count" not in words) or (
                words[0] == "curl" and "-N" in words
            ):
                await place.stream(command)
                continue
            code, out, err = await place.run(command)
            assert code == 0, f"{command}: {err}"
            if comment == "OK":
                assert out == "OK\n", command
            elif comment is not None and is_json(comment):  # as printed, in its order
                assert out.strip() == comment, command
        await place.until_linked()
    finally:
        await place.stop()


@in_module_loop
@pytest.mark.parametrize("block", of_kind("toml"))
async def test_settings_file(block: Block, tmp_path: Path) -> None:
    place = Place(tmp_path)
    settings = place.ports.substitute(block.code)
    (tmp_path / "node.toml").write_text(settings)
    try:
        url = await place.serve("pydds serve --config node.toml")
        line = place.nodes[0].line
        parsed = tomllib.loads(settings)
        if "name" in parsed:
            assert line.startswith(f"pydds node {parsed['name']} serving on"), line
        if "port" in parsed:
            assert url == f"http://127.0.0.1:{parsed['port']}", line
    finally:
        await place.stop()
