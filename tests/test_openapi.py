"""The OpenAPI description of the HTTP API (``pydds.openapi``): the copy in docs/ is
what a node serves, it covers the app's routes and nothing else, and schemathesis
finds no server error and no answer unlike the description on real ``pydds serve``
processes: an open one, and one with credentials (with a token, and without one).

``GET /v1/events`` is not fuzzed (a stream that does not end); its answers are
checked one by one below.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import hypothesis
import jsonschema
import pytest
import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import pydds
from pydds.dashboard import PATHS as DASHBOARD_PATHS
from pydds.net.ws import LINK_PATH, WebSocketTransport
from pydds.openapi import OPENAPI_PATH, document, render
from pydds.server import make_app

from .helpers import ServeProcess

DOCS_COPY = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"

SECRET = "a-cluster-secret-of-16-bytes-or-more"
TOKEN_SPEC = "svc:svc-secret-0123456789:cache:read+write"
TOKEN = "svc.svc-secret-0123456789"  # the bearer form of TOKEN_SPEC
TOKEN_DATABASE = "cache"

#: Every answer: no server error, a described status with the described content
#: type, headers and body.
CONFORMS = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
CHECKS = [not_a_server_error, *CONFORMS]

#: Examples per operation and run. derandomize: the examples are the same on every
#: run (Hypothesis seeds them from the test's name), and none is kept between runs.
EXAMPLES = 40
FUZZ_SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
TIMEOUT = 10.0  # seconds, for every request and every read


# -- pydds serve processes --------------------------------------------------------------


def _serve(
    tmp_path_factory: pytest.TempPathFactory, *args: str, clean_log: bool = True
) -> Iterator[str]:
    serve = ServeProcess(*args, log=tmp_path_factory.mktemp("serve") / "stderr")
    try:
        yield serve.url
    finally:
        code = serve.stop()
    # After all it was sent, the node stops gracefully, and it logged no traceback
    # (aiohttp logs one for a request it could not handle).
    log = serve.log.read_text()
    assert code == 0, log
    if clean_log:
        assert "Traceback" not in log, log


@pytest.fixture(scope="module")
def open_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _serve(tmp_path_factory)


@pytest.fixture(scope="module")
def secured_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _serve(tmp_path_factory, "--secret", SECRET, "--token", TOKEN_SPEC)


@pytest.fixture(scope="module")
def defects_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """For the known defects (aiohttp logs a traceback for a request line too long)."""
    yield from _serve(tmp_path_factory, clean_log=False)


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


def test_it_is_a_valid_openapi_3_1_document() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["version"] == pydds.__version__
    schemathesis.openapi.from_dict(doc).validate()  # against the OpenAPI 3.1 schema
    # ... which refuses what is not one
    broken = {**doc, "paths": {"/healthz": {"get": {"responses": "none"}}}}
    with pytest.raises(Exception, match="none"):
        schemathesis.openapi.from_dict(broken).validate()


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
    # The link route, a WebSocket upgrade to pydds's own protocol, is not described,
    # nor are the dashboard's page and files.
    dashboard = {("get", path) for path in DASHBOARD_PATHS}
    assert dashboard <= routes
    assert described == routes - {("get", LINK_PATH)} - dashboard


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


# -- schemathesis against live nodes ------------------------------------------------------------

OPEN = schemathesis.openapi.from_dict(document()).exclude(path="/v1/events", method="GET")
WITH_TOKEN = schemathesis.openapi.from_dict(document()).exclude(path="/v1/events", method="GET")
# Without a token every answer is a 401 at once: the event stream is fuzzed too.
WITHOUT_TOKEN = schemathesis.openapi.from_dict(document())
#: For the requests made one by one.
DESCRIBED = schemathesis.openapi.from_dict(document())

_COUNT = re.compile(r"0*([1-9][0-9]*)")


def _one_node_acks(
    context: schemathesis.HookContext, query: dict[str, Any] | None
) -> dict[str, Any] | None:
    """One node acknowledges a write on its own: an ack of 2 or more nodes is an
    ack_timeout 504 after 5 s (test_an_ack_no_node_can_give_times_out). Those levels
    are sent as 1."""
    ack = query.get("ack") if query else None
    if query is not None and isinstance(ack, str):
        level = ack[len("durable") + 1 :] if ack.startswith("durable") else ack
        match = _COUNT.fullmatch(level)
        if match is not None and int(match.group(1)) > 1:
            query["ack"] = ack[: len(ack) - len(level)] + "1"
    return query


def _token_database(
    context: schemathesis.HookContext, path_parameters: dict[str, Any] | None
) -> dict[str, Any] | None:
    """Half the database names become the token's database: there the token reads
    and writes, elsewhere it is forbidden."""
    db = path_parameters.get("db") if path_parameters else None
    if path_parameters is not None and isinstance(db, str) and len(db) % 2 == 0:
        path_parameters["db"] = TOKEN_DATABASE
    return path_parameters


for _schema in (OPEN, WITH_TOKEN):
    _schema.hook("map_query")(_one_node_acks)
WITH_TOKEN.hook("map_path_parameters")(_token_database)


def _probe(case: schemathesis.Case) -> bool:
    """Whether the case sends another method than its operation's (schemathesis
    probes how a path answers undescribed methods)."""
    return case.method.lower() != case.operation.method.lower()


@OPEN.parametrize()
@FUZZ_SETTINGS
def test_an_open_node_answers_as_described(case: schemathesis.Case, open_node: str) -> None:
    case.call_and_validate(base_url=open_node, checks=CHECKS, timeout=TIMEOUT)


@WITH_TOKEN.parametrize()
@FUZZ_SETTINGS
def test_a_node_with_credentials_answers_a_token_as_described(
    case: schemathesis.Case, secured_node: str
) -> None:
    response = case.call_and_validate(
        base_url=secured_node, headers=_bearer(), checks=CHECKS, timeout=TIMEOUT
    )
    assert response.status_code != 401


@WITHOUT_TOKEN.parametrize()
@FUZZ_SETTINGS
def test_a_node_with_credentials_refuses_requests_without_a_token(
    case: schemathesis.Case, secured_node: str
) -> None:
    if case.headers is not None:
        case.headers.pop("Authorization", None)
    response = case.call_and_validate(base_url=secured_node, checks=CHECKS, timeout=TIMEOUT)
    if _probe(case):
        assert response.status_code in (401, 405)  # /healthz has no token to check
    elif case.operation.path == "/healthz":
        assert response.status_code == 200
    else:
        assert response.status_code == 401
        assert response.json()["error"] == "unauthorized"


# -- answers checked one by one -------------------------------------------------------------


def _case(
    schema: schemathesis.BaseSchema,
    method: str,
    path: str,
    *,
    path_parameters: dict[str, str] | None = None,
    **parts: Any,
) -> schemathesis.Case:
    """A request to send as it is (path parameters percent-encoded here, as a client
    does: a case made by hand is sent without encoding)."""
    encoded = {k: quote(v, safe="") for k, v in (path_parameters or {}).items()}
    if "body" in parts:
        parts["media_type"] = "application/json"
    case: schemathesis.Case = schema[path][method].Case(path_parameters=encoded, **parts)
    return case


def _event_validator() -> jsonschema.protocols.Validator:
    root = {**document(), "$ref": "#/components/schemas/Event"}
    validator: jsonschema.protocols.Validator = jsonschema.Draft202012Validator(root)
    return validator


def test_an_event_stream_answers_as_described(open_node: str) -> None:
    events_200 = document()["paths"]["/v1/events"]["get"]["responses"]["200"]
    assert list(events_200["content"]) == ["text/event-stream"]
    url = open_node + "/v1/events?database=sse&values=1&kinds=created,changed"
    with requests.get(url, stream=True, timeout=TIMEOUT) as stream:
        assert stream.status_code == 200
        assert stream.headers["Content-Type"] == "text/event-stream"
        lines = stream.iter_lines(decode_unicode=True)
        assert next(lines) == ": pydds events"
        assert next(lines) == ""
        case = _case(
            DESCRIBED,
            "PUT",
            "/v1/databases/{db}/keys/{key}",
            path_parameters={"db": "sse", "key": "k/1"},
            body={"name": "Ada"},
        )
        assert case.call_and_validate(base_url=open_node, checks=CHECKS).status_code == 201
        ident = next(lines)
        assert ident.startswith("id: ")  # the event's offset
        assert next(lines) == "event: created"
        data = next(lines)
    assert data.startswith("data: ")
    event = json.loads(data.removeprefix("data: "))
    _event_validator().validate(event)
    assert event["key"] == "k/1"
    assert event["value"] == {"name": "Ada"}
    assert event["offset"] == int(ident.removeprefix("id: "))
    # A bad filter is an error as described, before any stream.
    case = _case(DESCRIBED, "GET", "/v1/events", query={"kinds": "created,bogus"})
    response = case.call_and_validate(base_url=open_node, checks=CHECKS, timeout=TIMEOUT)
    assert response.status_code == 400


def test_an_event_stream_of_a_node_with_credentials_answers_as_described(
    secured_node: str,
) -> None:
    url = secured_node + "/v1/events?database=" + TOKEN_DATABASE
    with requests.get(url, headers=_bearer(), stream=True, timeout=TIMEOUT) as stream:
        assert stream.status_code == 200
        assert next(stream.iter_lines(decode_unicode=True)) == ": pydds events"
    # The token reads only its database; nor does it reach every database at once.
    for query in ({"database": "other"}, {}):
        case = _case(DESCRIBED, "GET", "/v1/events", query=query)
        response = case.call_and_validate(
            base_url=secured_node, headers=_bearer(), checks=CHECKS, timeout=TIMEOUT
        )
        assert response.status_code == 403
        assert response.json()["error"] == "forbidden"


def test_an_ack_no_node_can_give_times_out(open_node: str) -> None:
    case = _case(
        DESCRIBED,
        "PUT",
        "/v1/databases/{db}/keys/{key}",
        path_parameters={"db": "acks", "key": "k"},
        query={"ack": "2"},
        body=1,
    )
    # A 504 it is, as described; the write stands.
    response = case.call_and_validate(base_url=open_node, checks=CONFORMS, timeout=TIMEOUT)
    assert response.status_code == 504
    assert response.json()["error"] == "ack_timeout"
    case = _case(
        DESCRIBED,
        "GET",
        "/v1/databases/{db}/keys/{key}",
        path_parameters={"db": "acks", "key": "k"},
    )
    assert case.call_and_validate(base_url=open_node, checks=CHECKS).json() == 1


def _put_and_get(open_node: str, key: str) -> None:
    where = {"db": "defects", "key": key}
    case = _case(
        DESCRIBED, "PUT", "/v1/databases/{db}/keys/{key}", path_parameters=where, body=[key]
    )
    response = case.call_and_validate(base_url=open_node, checks=CHECKS, timeout=TIMEOUT)
    assert response.status_code == 201
    case = _case(DESCRIBED, "GET", "/v1/databases/{db}/keys/{key}", path_parameters=where)
    response = case.call_and_validate(base_url=open_node, checks=CHECKS, timeout=TIMEOUT)
    assert response.json() == [key]


def test_a_long_key_is_addressable(defects_node: str) -> None:
    _put_and_get(defects_node, "\N{GRINNING FACE}" * 1024)  # 12 KiB percent-encoded


def test_a_key_with_a_newline_is_addressable(defects_node: str) -> None:
    _put_and_get(defects_node, "line 1\nline 2")
