"""The OpenAPI description of the HTTP API (``pydds.openapi``): the copy in docs/ is
what a node serves (a real ``pydds serve`` process), and it covers the app's routes
and nothing else."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import pydds
from pydds.net.ws import LINK_PATH, WebSocketTransport
from pydds.openapi import OPENAPI_PATH, document, render
from pydds.server import make_app

DOCS_COPY = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"

SECRET = "a-cluster-secret-of-16-bytes-or-more"
TOKEN_SPEC = "svc:svc-secret-0123456789:cache:read+write"
TOKEN = "svc.svc-secret-0123456789"  # the bearer form of TOKEN_SPEC
TOKEN_DATABASE = "cache"

TIMEOUT = 10.0  # seconds, for every request and every read


# -- pydds serve processes --------------------------------------------------------------


class Serve:
    """A ``pydds serve`` process on a free port, in its own process group; what it
    logs goes to ``log``."""

    def __init__(self, *args: str, log: Path) -> None:
        self.log = log
        with log.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pydds", "serve", "--port", "0", *args],
                stdout=subprocess.PIPE,
                stderr=err,
                env={**os.environ, "PYDDS_MEMORY": "1"},
                start_new_session=True,
            )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline().decode() if ready else ""
        match = re.search(r"serving on (http://127\.0\.0\.1:\d+)", line)
        if match is None:
            self.stop()
            raise AssertionError(f"pydds serve did not start: {line!r} {log.read_text()}")
        self.url = match.group(1)

    def stop(self) -> int:
        """SIGTERM to its process group, SIGKILL if it has not stopped within 20 s."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return self.proc.returncode


def _serve(tmp_path_factory: pytest.TempPathFactory, *args: str) -> Iterator[str]:
    serve = Serve(*args, log=tmp_path_factory.mktemp("serve") / "stderr")
    try:
        yield serve.url
    finally:
        code = serve.stop()
    # After all it was sent, the node stops gracefully, and it logged no traceback
    # (aiohttp logs one for a request it could not handle).
    log = serve.log.read_text()
    assert code == 0, log
    assert "Traceback" not in log, log


@pytest.fixture(scope="module")
def open_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _serve(tmp_path_factory)


@pytest.fixture(scope="module")
def secured_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _serve(tmp_path_factory, "--secret", SECRET, "--token", TOKEN_SPEC)


def _bearer(secret: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


# -- the document -------------------------------------------------------------------------


def test_the_docs_copy_is_what_a_node_serves(open_node: str) -> None:
    response = requests.get(open_node + OPENAPI_PATH, timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    # If this fails, regenerate the copy: python -m pydds.openapi > docs/openapi.json
    assert DOCS_COPY.read_bytes() == response.content == render()
    assert response.json() == document()


def test_a_node_with_credentials_serves_it_to_a_valid_token(secured_node: str) -> None:
    url = secured_node + OPENAPI_PATH
    for secret in (TOKEN, SECRET):
        response = requests.get(url, headers=_bearer(secret), timeout=TIMEOUT)
        assert response.status_code == 200
        assert response.content == render()
    for headers in ({}, _bearer("svc.not-the-secret-0123")):
        response = requests.get(url, headers=headers, timeout=TIMEOUT)
        assert response.status_code == 401
        assert response.json()["error"] == "unauthorized"


def _template(path: str) -> str:
    """An aiohttp route's path as an OpenAPI path: ``{key:.+}`` is ``{key}``."""
    return re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)


async def test_every_route_of_a_node_is_described_and_nothing_else() -> None:
    # The app as pydds serve builds it, listening: the link route is there too.
    transport = WebSocketTransport()
    node = pydds.Node("routes", listen="127.0.0.1:0", transport=transport)
    transport.app = make_app(node)
    async with node:
        routes = {
            (route.method.lower(), _template(route.resource.canonical))
            for route in transport.app.router.routes()
            if route.resource is not None and route.method != "HEAD"
        }
    assert ("get", LINK_PATH) in routes
    described = {
        (method, path)
        for path, item in document()["paths"].items()
        for method in item
        if method != "parameters"
    }
    # The link route, a WebSocket upgrade to pydds's own protocol, is not described.
    assert described == routes - {("get", LINK_PATH)}


def test_the_error_codes_are_the_ones_docs_http_md_names() -> None:
    text = (DOCS_COPY.parent / "http.md").read_text()
    errors = text.split("### Errors", 1)[1].split("###", 1)[0]
    rows = set(re.findall(r"^\| (\d{3}) \| `(\w+)` \|", errors, re.MULTILINE))
    assert len(rows) > 10
    doc = document()
    described = set()
    for item in doc["paths"].values():
        for method, operation in item.items():
            if method == "parameters":
                continue
            for status, response in operation["responses"].items():
                if "$ref" not in response:
                    continue
                name = response["$ref"].removeprefix("#/components/responses/")
                schema = doc["components"]["responses"][name]["content"]["application/json"]
                for code in schema["schema"]["allOf"][1]["properties"]["error"]["enum"]:
                    described.add((status, code))
    # 405 answers a method that no operation has: the document's description says it.
    assert described == rows - {("405", "method_not_allowed")}
