"""The interactive API documentation at ``/api/v4/docs``: Swagger UI on the OpenAPI document, all of it served
by keyorch itself from files shipped in the package (``static/``), so the page fetches nothing from outside.

The page carries no inline script (its start-up is ``docs.js``) and is sent with a Content-Security-Policy
that allows scripts, styles, images and requests from the daemon only. Swagger UI sets inline style
attributes, hence ``style-src 'unsafe-inline'``; it needs no ``eval``.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from keyorch.api.routing import PREFIX

DOCS_PATH = PREFIX + "/docs"
ASSETS_PATH = DOCS_PATH + "/static"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

#: name served under ASSETS_PATH → (file in the package's static folder, content type)
ASSETS: dict[str, tuple[str, str]] = {
    "swagger-ui-bundle.js": ("swagger-ui/swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": ("swagger-ui/swagger-ui.css", "text/css"),
    "docs.js": ("docs.js", "text/javascript"),
    "LICENSE": ("swagger-ui/LICENSE", "text/plain"),
    "NOTICE": ("swagger-ui/NOTICE", "text/plain"),
}

_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

STATIC = web.AppKey("keyorch_docs_files", dict)


def _read(name: str) -> bytes:
    return resources.files("keyorch.api").joinpath("static", *name.split("/")).read_bytes()


def _file(app: web.Application, name: str) -> bytes:
    """A static file's bytes, read from the package once."""
    cache: dict[str, bytes] = app[STATIC]
    if name not in cache:
        cache[name] = _read(name)
    return cache[name]


async def _page(request: web.Request) -> web.Response:
    body = _file(request.app, "docs.html")
    return web.Response(body=body, content_type="text/html", charset="utf-8", headers=_HEADERS)


async def _asset(request: web.Request) -> web.Response:
    found = ASSETS.get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound()
    path, content_type = found
    headers = {**_HEADERS, "Cache-Control": "public, max-age=86400"}
    return web.Response(body=_file(request.app, path), content_type=content_type, charset="utf-8", headers=headers)


def add_docs_routes(app: web.Application) -> None:
    app[STATIC] = {}
    app.router.add_route("GET", DOCS_PATH, _page)
    app.router.add_route("GET", ASSETS_PATH + "/{name}", _asset)
