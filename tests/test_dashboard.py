"""The dashboard at ``/ui/``: its files as ``pydds serve`` serves them, and the page in
a real browser (Debian's Chromium, driven through its ChromeDriver by Selenium)
against real ``pydds serve`` processes on 127.0.0.1.

The browser tests need ``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` (Debian's
``chromium`` and ``chromium-driver``; ``.ci/run`` installs them). Where they are
missing the browser tests are skipped, except under CI (``CI`` set), where that is a
failure. Screenshots of each view are taken on every run; with
``PYDDS_SCREENSHOTS=1`` they are written into docs/ (as docs/dashboard.md shows
them), else into the test's temporary folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from aiohttp.test_utils import TestClient, TestServer

import pydds
from pydds.server import make_app

from .helpers import ServeProcess

DOCS = Path(__file__).resolve().parent.parent / "docs"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SECRET = "a-cluster-secret-of-16-bytes-or-more"
READER = "reader.reader-secret-0123456789"
WRITER = "writer.writer-secret-0123456789"
TOKENS = ["reader:reader-secret-0123456789:*:read", "writer:writer-secret-0123456789"]
#: Seconds a browser wait may take at most (the page updates live, well within it).
WAIT = 10.0


# -- the files, in process ------------------------------------------------------------


async def serve_app(node: pydds.Node) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = TestClient(TestServer(make_app(node)))
    await client.start_server()
    return client


async def test_the_page_is_served_with_its_files_and_a_strict_policy() -> None:
    api = await serve_app(pydds.Node("ui"))
    try:
        for path in ("/", "/ui"):
            response = await api.get(path, allow_redirects=False)
            assert response.status == 302
            assert response.headers["Location"] == "ui/"
        response = await api.get("/")  # followed: the page
        assert str(response.url).endswith("/ui/")
        page = await response.text()
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert '<script src="app.js" defer></script>' in page
        assert "http" not in page.replace("http-equiv", "")  # nothing from elsewhere
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy
        assert "script-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
            response = await api.get("/ui/" + name)
            assert response.status == 200
            assert response.headers["Content-Type"].startswith(kind)
            assert "Content-Security-Policy" in response.headers
            assert "https://" not in await response.text()
        response = await api.get("/ui/secrets.txt")
        assert response.status == 404
        assert (await response.json())["error"] == "not_found"
    finally:
        await api.close()


async def raw_get(client: TestClient[Any, Any], path: str) -> int:
    """The status of ``GET path`` sent as written (an HTTP client would resolve its
    dot segments first)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        status_line = await asyncio.wait_for(reader.readline(), 10)
        return int(status_line.split()[1])
    finally:
        writer.close()


async def test_the_page_needs_no_token_and_the_api_still_does() -> None:
    credentials = pydds.Credentials(secrets=[SECRET])
    api = await serve_app(pydds.Node("ui", credentials=credentials))
    try:
        for path in ("/ui/", "/ui/app.js", "/ui/style.css"):
            assert (await api.get(path)).status == 200, path
        assert (await api.get("/", allow_redirects=False)).status == 302
        for path in ("/v1/token", "/v1/cluster", "/v1/databases", "/uix"):
            assert (await api.get(path)).status == 401, path
        # No spelling of a path through the page's reaches the API without a token.
        for path in (
            "/ui/../v1/cluster",
            "/ui/%2E%2E/v1/cluster",
            "/ui%2F..%2Fv1%2Fcluster",
            "/ui/..;/v1/cluster",
            "/ui/../metrics",
            "/ui//../v1/databases",
            "/ui/%2e%2e%2fv1%2fcluster",
            "http://x/ui/../v1/cluster",
        ):
            assert await raw_get(api, path) in (400, 401, 404), path
        bearer = {"Authorization": "Bearer " + SECRET}
        token = await (await api.get("/v1/token", headers=bearer)).json()
        assert token["credentials"] is True
        assert token["databases"] is None
    finally:
        await api.close()


# -- node processes and a browser -------------------------------------------------------


def node_process(folder: Path, name: str, *args: str) -> ServeProcess:
    """``pydds serve`` as node ``name``, logging into ``folder``."""
    return ServeProcess("--name", name, *args, log=folder / f"{name}.log")


#: The cluster of the browser tests: two node processes.
Pair = tuple[ServeProcess, ServeProcess]


def until(check: Callable[[], Any], timeout: float = WAIT) -> Any:
    """Poll ``check`` until it returns something true (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {check}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER} are needed: .ci/run installs them")
        pytest.skip("Chromium is not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",  # as root in a container
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",  # nothing but the page's own requests
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


#: A program with a ``pydds.Client`` linked to the node given: it says "linked" on
#: stdout, then stays until it is stopped.
CLIENT = """
import asyncio, sys, pydds
async def main():
    async with pydds.Client("web-1", join=[sys.argv[1]]) as client:
        await client.database("clients").set("web-1", "up", ack=1)  # via its gateway
        print("linked", flush=True)
        await asyncio.Event().wait()
asyncio.run(main())
"""


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """Two ``pydds serve`` processes, and a client program linked to the first."""
    folder = tmp_path_factory.mktemp("nodes")
    first = node_process(folder, "alpha")
    try:
        second = node_process(folder, "beta", "--join", first.address)
        try:
            until(lambda: len(alive(first)) == 2 and len(alive(second)) == 2, 20)
            client = subprocess.Popen(
                [sys.executable, "-c", CLIENT, first.address],
                stdout=subprocess.PIPE,
                start_new_session=True,
            )
            try:
                assert client.stdout is not None
                ready, _, _ = select.select([client.stdout], [], [], 20)
                assert ready, "the client program did not link within 20 s"
                assert client.stdout.readline() == b"linked\n"
                yield first, second
            finally:
                os.killpg(client.pid, signal.SIGKILL)
                client.wait()
        finally:
            second.stop()
    finally:
        first.stop()


def alive(node: ServeProcess, headers: dict[str, str] | None = None) -> list[str]:
    members = requests.get(node.url + "/v1/cluster", headers=headers, timeout=5).json()
    return [m["name"] for m in members["members"] if m["state"] in ("self", "alive")]


def load(driver: Any, url: str) -> None:
    """Open ``url`` as a new page (from the same page, a change of its #fragment alone
    would not load it again)."""
    driver.get("about:blank")
    driver.get(url)


def screenshot(driver: Any, name: str, tmp_path: Path) -> None:
    folder = DOCS if os.environ.get("PYDDS_SCREENSHOTS") else tmp_path
    path = folder / f"dashboard-{name}.png"
    assert driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000  # a page, not a blank


def console_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def by_id(driver: Any, element_id: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def texts(driver: Any, css: str) -> list[str]:
    """The text of each element ``css`` selects, read at once (the page redraws its
    tables as it polls, so elements found one call earlier may be gone)."""
    got: list[str] = driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText);", css
    )
    return got


def click_key(driver: Any, key: str) -> None:
    """Click the key browser's item ``key`` (found and clicked in one step: the list
    is drawn again as keys change)."""
    clicked = driver.execute_script(
        "const item = [...document.querySelectorAll('#keys li')]"
        ".find(e => e.dataset.key === arguments[0]);"
        "if (item) item.click(); return Boolean(item);",
        key,
    )
    assert clicked, f"no item {key!r} in the key list"


def stream(driver: Any, element_id: str) -> str | None:
    """The state of the event stream behind ``element_id`` (``#events``, ``#keys``):
    "open" once the node subscribed it, "closed", "down"."""
    got: str | None = driver.execute_script(
        "return document.getElementById(arguments[0]).dataset.stream;", element_id
    )
    return got


def key_url(node: ServeProcess, db: str, key: str) -> str:
    return f"{node.url}/v1/databases/{quote(db, safe='')}/keys/{quote(key, safe='')}"


def test_the_cluster_view_lists_both_members_with_no_console_errors(
    browser: Any, two_nodes: Pair, tmp_path: Path
) -> None:
    first, second = two_nodes
    browser.get_log("browser")  # what earlier pages said is not this page's
    browser.get(first.url + "/")  # redirected to /ui/
    assert browser.current_url == first.url + "/ui/"
    until(lambda: len(texts(browser, "#members tbody tr")) == 2)
    states = dict(
        zip(
            texts(browser, "#members tbody tr td:first-child"),
            texts(browser, "#members tbody tr td:nth-child(2)"),
            strict=True,
        )
    )
    assert states == {"alpha": "self", "beta": "alive"}
    addresses = texts(browser, "#members tbody tr td:nth-child(4)")
    assert "ws://" + second.address in addresses
    # The link to beta carried bytes, both ways; the page shows how many.
    beta = '#members tbody tr[data-name="beta"] td'
    cells = texts(browser, beta)
    for shown in cells[4:6]:  # bytes in, bytes out: "126 B", "1.20 kB"
        assert re.fullmatch(r"[0-9.]+ k?B", shown), cells
        assert shown != "0 B", cells
    until(lambda: texts(browser, "#clients tbody tr td:first-child") == ["web-1"])
    assert by_id(browser, "no-clients").is_displayed() is False
    assert "alpha" in by_id(browser, "node").text
    assert by_id(browser, "connection").text == "connected"
    assert by_id(browser, "sign-out").is_displayed() is False  # no credentials here
    screenshot(browser, "cluster", tmp_path)
    assert console_errors(browser) == []


def test_members_that_crash_or_leave_show_as_suspect_and_left(
    browser: Any, two_nodes: Pair, tmp_path: Path
) -> None:
    first, _second = two_nodes
    crashing = node_process(tmp_path, "delta", "--join", first.address)
    leaving = node_process(tmp_path, "epsilon", "--join", first.address)
    try:
        load(browser, first.url + "/ui/#cluster")

        def state_of(name: str) -> str | None:
            got = texts(browser, f'#members tbody tr[data-name="{name}"] td:nth-child(2)')
            return got[0] if got else None

        until(lambda: state_of("delta") == "alive" and state_of("epsilon") == "alive", 20)
        os.killpg(crashing.proc.pid, signal.SIGKILL)  # no goodbye: its link just closes
        leaving.stop()  # SIGTERM: it says it leaves
        until(lambda: state_of("delta") == "suspect" and state_of("epsilon") == "left")
        assert state_of("alpha") == "self"
        url = f"{first.url}/v1/cluster/members/delta"  # an operator removes the crashed one
        assert requests.delete(url, timeout=5).ok
        until(lambda: state_of("delta") == "left")
        assert console_errors(browser) == []
    finally:
        crashing.stop()
        leaving.stop()


def test_a_key_written_through_the_api_shows_live_and_opens_as_json(
    browser: Any, two_nodes: Pair, tmp_path: Path
) -> None:
    first, second = two_nodes
    for i in range(3):
        requests.put(key_url(first, "cache", f"user:{i}"), json={"n": i}, timeout=5)
    load(browser, first.url + "/ui/#databases/cache")
    until(lambda: texts(browser, "#keys li") == ["user:0", "user:1", "user:2"])
    assert "cache" in texts(browser, "#databases tbody tr td:first-child")
    until(lambda: stream(browser, "keys") == "open")
    # Written on the other node: the directory reaches this one, the page shows it.
    value = {"name": "Ada", "langs": ["en", "fr"], "note": "<b>not bold</b>"}
    assert requests.put(key_url(second, "cache", "user:9"), json=value, timeout=5).ok
    until(lambda: "user:9" in texts(browser, "#keys li"), timeout=1.0)
    click_key(browser, "user:9")
    shown = until(lambda: by_id(browser, "detail-value").text)
    assert json.loads(shown) == value
    assert "\n  " in shown  # formatted
    # A value is text: nothing of it became an element.
    assert browser.find_elements("css selector", "#detail-value b") == []
    info = by_id(browser, "detail-info").text
    assert "beta" in info  # its holder
    assert "no (read from a holder)" in info  # alpha had not read it before the page did
    # The prefix search, and paging.
    requests.post(
        f"{first.url}/v1/databases/cache/set-many",
        json={f"page:{i:03}": i for i in range(120)},
        timeout=5,
    )
    prefix = by_id(browser, "prefix")
    prefix.send_keys("page:")
    prefix.submit()
    until(lambda: texts(browser, "#keys li")[:1] == ["page:000"])
    assert len(texts(browser, "#keys li")) == 50
    by_id(browser, "next").click()
    until(lambda: texts(browser, "#keys li")[:1] == ["page:050"])
    by_id(browser, "next").click()
    until(lambda: texts(browser, "#keys li") == [f"page:{i:03}" for i in range(100, 120)])
    assert by_id(browser, "next").is_enabled() is False
    by_id(browser, "previous").click()
    until(lambda: texts(browser, "#keys li")[:1] == ["page:050"])
    # The table of databases follows, as the page polls.
    cache_row = '#databases tbody tr[data-name="cache"] td:nth-child(2)'
    until(lambda: texts(browser, cache_row) == ["124"])
    screenshot(browser, "databases", tmp_path)
    assert console_errors(browser) == []


def test_an_edit_and_a_delete_made_in_the_page_are_read_back_through_the_api(
    browser: Any, two_nodes: Pair
) -> None:
    first, second = two_nodes
    requests.put(key_url(first, "cache", "edit:me"), json={"v": 1}, timeout=5)
    load(browser, first.url + "/ui/#databases/cache")
    by_id(browser, "prefix").send_keys("edit:")
    by_id(browser, "prefix").submit()
    until(lambda: texts(browser, "#keys li") == ["edit:me"])
    click_key(browser, texts(browser, "#keys li")[0])
    until(lambda: by_id(browser, "edit").is_displayed())
    by_id(browser, "edit").click()
    editor = by_id(browser, "editor-text")
    editor.clear()
    editor.send_keys('{"v": 2, "by": "the page"}')
    by_id(browser, "save").click()
    until(lambda: by_id(browser, "confirm").is_displayed())
    assert "edit:me" in by_id(browser, "confirm-text").text
    by_id(browser, "confirm-ok").click()
    # Read back through the API of the other node.
    url = key_url(second, "cache", "edit:me")
    edited = {"v": 2, "by": "the page"}
    until(lambda: requests.get(url, timeout=5).json() == edited)
    until(lambda: json.loads(by_id(browser, "detail-value").text or "null") == edited)
    # Not JSON: refused in the page, nothing written.
    by_id(browser, "edit").click()
    by_id(browser, "editor-text").clear()
    by_id(browser, "editor-text").send_keys("{not json")
    by_id(browser, "save").click()
    assert by_id(browser, "editor-error").text.startswith("Not JSON")
    assert by_id(browser, "confirm").is_displayed() is False
    by_id(browser, "cancel").click()
    # Delete: cancelled first, then confirmed.
    by_id(browser, "delete").click()
    until(lambda: by_id(browser, "confirm").is_displayed())
    by_id(browser, "confirm-cancel").click()
    assert requests.get(url, timeout=5).status_code == 200
    by_id(browser, "delete").click()
    until(lambda: by_id(browser, "confirm").is_displayed())
    by_id(browser, "confirm-ok").click()
    until(lambda: requests.get(url, timeout=5).status_code == 404)
    until(lambda: texts(browser, "#keys li") == [])
    assert console_errors(browser) == []


#: Keys a URL makes hard: dot segments, a slash, a percent, a newline, non-ASCII.
AWKWARD = [".", "..", "a/b", "../v1", "100%", "line\nbreak", "clé", "?q=1#x"]


def test_keys_with_awkward_names_open_edit_and_delete(browser: Any, two_nodes: Pair) -> None:
    first, second = two_nodes
    values = {key: {"key": key, "n": i} for i, key in enumerate(AWKWARD)}
    requests.post(f"{first.url}/v1/databases/odd/set-many", json=values, timeout=5)
    load(browser, first.url + "/ui/#databases/odd")

    def listed() -> list[str]:
        got: list[str] = browser.execute_script(
            "return [...document.querySelectorAll('#keys li')].map(e => e.dataset.key);"
        )
        return got

    def text_of(element_id: str) -> str:
        got: str = browser.execute_script(
            "return document.getElementById(arguments[0]).textContent;", element_id
        )
        return got

    until(lambda: listed() == sorted(AWKWARD))
    for key in AWKWARD:
        click_key(browser, key)
        until(lambda key=key: text_of("detail-key") == key and text_of("detail-value"))
        assert json.loads(text_of("detail-value")) == values[key], key
    # "." is written and deleted through the batch routes: read back through the API.
    click_key(browser, ".")
    until(lambda: json.loads(by_id(browser, "detail-value").text or "null") == values["."])
    by_id(browser, "edit").click()
    by_id(browser, "editor-text").clear()
    by_id(browser, "editor-text").send_keys('"dot"')
    by_id(browser, "save").click()
    until(lambda: by_id(browser, "confirm").is_displayed())
    by_id(browser, "confirm-ok").click()
    many = f"{second.url}/v1/databases/odd/get-many"
    until(lambda: requests.post(many, json=["."], timeout=5).json() == {"values": {".": "dot"}})
    by_id(browser, "delete").click()
    until(lambda: by_id(browser, "confirm").is_displayed())
    by_id(browser, "confirm-ok").click()
    until(lambda: requests.post(many, json=["."], timeout=5).json() == {"values": {}})
    until(lambda: "." not in listed())
    # A database this node does not know, and an address that does not decode.
    load(browser, first.url + "/ui/#databases/nowhere")
    until(lambda: "no database nowhere" in by_id(browser, "browser-error").text)
    load(browser, first.url + "/ui/#databases/%E0%A4%A")
    until(lambda: by_id(browser, "view-databases").is_displayed())
    assert by_id(browser, "browser").is_displayed() is False
    errors = console_errors(browser)
    assert all("nowhere" in e and "404" in e for e in errors), errors


def test_the_event_list_grows_pauses_and_the_charts_draw(
    browser: Any, two_nodes: Pair, tmp_path: Path
) -> None:
    first, second = two_nodes
    load(browser, first.url + "/ui/#live")
    until(lambda: by_id(browser, "view-live").is_displayed())

    def rows() -> list[str]:
        return texts(browser, "#events tbody tr")

    def emit(n: int, start: int) -> None:
        for i in range(start, start + n):
            url = f"{second.url}/v1/events/deploy"
            assert requests.post(url, json={"version": i}, timeout=5).status_code == 202

    until(lambda: stream(browser, "events") == "open")
    emit(3, 0)
    until(lambda: len([r for r in rows() if "deploy" in r]) == 3)
    assert '{"version":2}' in rows()[0]  # newest first
    for i in range(5):
        requests.put(key_url(first, "cache", f"live:{i}"), json=i, timeout=5)
    until(lambda: len([r for r in rows() if "live:" in r]) == 5)
    # Paused: counted, not shown; resumed: shown.
    by_id(browser, "pause").click()
    shown = len(rows())
    emit(4, 10)
    until(lambda: "(4 held)" in by_id(browser, "event-count").text)
    assert len(rows()) == shown
    by_id(browser, "pause").click()
    until(lambda: len(rows()) == shown + 4)
    # Filters: a database and a key prefix, then only custom events.
    by_id(browser, "filter-database").send_keys("cache")
    by_id(browser, "filter-prefix").send_keys("in:")
    filtered = "?database=cache&prefix=in%3A"

    def opened_filtered() -> bool:
        query = browser.execute_script("return document.getElementById('events').dataset.query")
        return stream(browser, "events") == "open" and query == filtered

    until(opened_filtered)
    requests.put(key_url(first, "other", "in:1"), json=1, timeout=5)
    requests.put(key_url(first, "cache", "out:1"), json=1, timeout=5)
    requests.put(key_url(first, "cache", "in:1"), json=1, timeout=5)
    until(lambda: "in:1" in rows()[0])
    assert not any("out:1" in r or "other" in r for r in rows())
    by_id(browser, "filter-database").clear()
    by_id(browser, "filter-prefix").clear()
    for box in browser.find_elements("css selector", "#filter-kinds input"):
        if box.get_attribute("value") != "custom":
            box.click()
    filtered = "?kinds=custom"
    until(opened_filtered)  # the stream opened again, for custom events alone
    requests.put(key_url(first, "cache", "filtered:out"), json=1, timeout=5)
    emit(1, 99)
    until(lambda: '{"version":99}' in rows()[0])
    assert not any("filtered:out" in r for r in rows())
    # The charts have points, and pixels drawn.
    until(lambda: int(by_id(browser, "chart-events").get_attribute("data-points") or 0) >= 2)
    for chart in ("changes", "events", "traffic", "memory", "evictions"):
        drawn = browser.execute_script(
            "const c = document.getElementById(arguments[0]);"
            "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            "let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n;",
            "chart-" + chart,
        )
        assert drawn > 200, chart
    assert "/s" in by_id(browser, "caption-events").text
    if os.environ.get("PYDDS_SCREENSHOTS"):  # the picture in the docs: a few busy seconds
        for tick in range(12):
            for node in two_nodes:
                many = {f"busy:{i}": {"at": tick, "i": i} for i in range(40 + 20 * tick)}
                requests.post(f"{node.url}/v1/databases/cache/set-many", json=many, timeout=5)
            emit(5, 100 + 5 * tick)
            time.sleep(1)
    screenshot(browser, "live", tmp_path)
    assert console_errors(browser) == []


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    folder = tmp_path_factory.mktemp("secured")
    tokens = [arg for spec in TOKENS for arg in ("--token", spec)]
    node = node_process(folder, "gamma", "--secret", SECRET, *tokens)
    try:
        yield node
    finally:
        node.stop()


def test_with_credentials_the_page_asks_for_a_token_and_follows_its_rights(
    browser: Any, secured: ServeProcess, tmp_path: Path
) -> None:
    writer = {"Authorization": "Bearer " + WRITER}
    requests.put(key_url(secured, "cache", "k"), json={"v": 1}, headers=writer, timeout=5)
    load(browser, secured.url + "/ui/#databases/cache")
    until(lambda: by_id(browser, "login").is_displayed())
    for hidden in ("tabs", "view-cluster", "view-databases", "view-live"):
        assert by_id(browser, hidden).is_displayed() is False, hidden
    screenshot(browser, "token", tmp_path)
    by_id(browser, "token").send_keys("reader.not-the-secret-000000")
    by_id(browser, "token").submit()
    until(lambda: "does not accept" in by_id(browser, "login-error").text)
    assert by_id(browser, "tabs").is_displayed() is False
    # A read-only token: the key opens, with no edit or delete.
    by_id(browser, "token").clear()
    by_id(browser, "token").send_keys(READER)
    by_id(browser, "token").submit()
    until(lambda: texts(browser, "#keys li") == ["k"])
    click_key(browser, texts(browser, "#keys li")[0])
    until(lambda: by_id(browser, "detail-value").text)
    assert by_id(browser, "detail-actions").is_displayed() is False
    reader = {"Authorization": "Bearer " + READER}
    refused = requests.put(key_url(secured, "cache", "k"), json=2, headers=reader, timeout=5)
    assert refused.status_code == 403  # and the API refuses anyway
    # Forget it; a token that writes gets the buttons.
    by_id(browser, "sign-out").click()
    until(lambda: by_id(browser, "login").is_displayed())
    by_id(browser, "token").send_keys(WRITER)
    by_id(browser, "token").submit()
    until(lambda: texts(browser, "#keys li") == ["k"])
    click_key(browser, texts(browser, "#keys li")[0])
    until(lambda: by_id(browser, "detail-actions").is_displayed())
    # The only console errors are the refused wrong token's 401.
    errors = console_errors(browser)
    assert all("401" in e for e in errors), errors
