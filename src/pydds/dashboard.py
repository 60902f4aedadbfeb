"""The web dashboard's files, served by ``pydds serve`` at ``/ui/`` (docs/dashboard.md).

The page is three static files shipped in the package (``pydds/ui``): no framework,
nothing fetched from elsewhere, no build step. They hold no data, so they are served
without a token; the page asks the JSON API for everything, with the bearer token
its user gives it, as any other API client does. They are read once, when the app
is built.

Every answer carries a Content-Security-Policy that allows only this origin's
scripts, styles and requests, so that a value shown in the page can never run as
code (the page also writes values as text only), and frames of the page are refused.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from .http_api import PUBLIC_ROUTE

__all__ = ["PATHS", "UI_PATH", "add_dashboard"]

#: Where the page is.
UI_PATH = "/ui/"
#: The routes of the dashboard (not of the API: docs/openapi.json omits them).
PATHS = frozenset({"/", "/ui", "/ui/", "/ui/{file}"})

_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # a new version of pydds serves its own page at once
}


def _read() -> dict[str, bytes]:
    folder = resources.files("pydds") / "ui"
    return {name: (folder / name).read_bytes() for name in _TYPES}


def add_dashboard(app: web.Application) -> None:
    """Serve the dashboard on ``app``: ``/ui/`` and its files; ``/`` and ``/ui``
    redirect to ``/ui/`` (relative links, so the page works behind a proxy that
    serves the node under a path of its own)."""
    files = _read()

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("ui/")  # from "/" and from "/ui" alike: "/ui/"

    def answer(name: str) -> web.Response:
        return web.Response(body=files[name], headers={"Content-Type": _TYPES[name], **_HEADERS})

    async def index(request: web.Request) -> web.Response:
        return answer("index.html")

    async def file(request: web.Request) -> web.Response:
        name = request.match_info["file"]
        if name not in files:
            raise web.HTTPNotFound(text=f"the dashboard has no file {name[:100]!r}")
        return answer(name)

    app.router.add_get("/", redirect, name=PUBLIC_ROUTE + "root")
    app.router.add_get("/ui", redirect, name=PUBLIC_ROUTE + "ui")
    app.router.add_get(UI_PATH, index, name=PUBLIC_ROUTE + "page")
    app.router.add_get(UI_PATH + "{file}", file, name=PUBLIC_ROUTE + "file")
