"""The interactive API documentation of ``keyorch serve`` (a subprocess): ``/api/v4/docs`` and every file it
references are served by the daemon itself, none is outside it, and the page runs no inline script under the
Content-Security-Policy it is sent with."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import aiohttp
from openapi_spec_validator import validate

from tests.daemon.harness import DaemonProcess, write_config

#: XML namespace names in the stylesheet's inline SVG images: identifiers, never fetched
NAMESPACES = ("http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink")


class _References(HTMLParser):
    """The URLs a page references (src, href, data-openapi-url), and the text of its script elements."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self.handlers: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "data-openapi-url") and value:
                self.urls.append(value)
            if name.startswith("on"):
                self.handlers.append(f"{tag} {name}")
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts.append(data)


def _no_outside_url(text: str, where: str) -> None:
    found = [u for u in re.findall(r"(?:https?:)?//[^\s\"')<>]+", text) if not u.startswith(NAMESPACES)]
    assert found == [], f"{where} references {found[:5]}"


def _css_urls(css: str) -> list[str]:
    return [u.strip("'\"") for u in re.findall(r"url\(([^)]*)\)", css)]


async def test_the_docs_page_and_every_file_it_references_come_from_the_daemon(
    tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    config = write_config(tmp_path / "keyorch.yaml", f"sqlite:///{tmp_path / 'keyorch.db'}")
    daemon = await DaemonProcess.start(tmp_path, config)
    daemons.append(daemon)
    page_url = daemon.url + "/api/v4/docs"
    origin = urlsplit(daemon.url).netloc
    async with aiohttp.ClientSession() as session:
        async with session.get(page_url) as resp:  # no token: the documentation is public, like the document
            assert resp.status == 200 and resp.content_type == "text/html"
            html = await resp.text()
            policy = resp.headers["Content-Security-Policy"]
        directives = dict(d.strip().partition(" ")[::2] for d in policy.split(";"))
        assert directives["default-src"] == "'none'" and directives["script-src"] == "'self'"
        assert directives["connect-src"] == "'self'" and directives["img-src"] == "'self' data:"
        page = _References()
        page.feed(html)
        assert page.inline_scripts == [] and page.handlers == []  # nothing the policy would block
        _no_outside_url(html, "the page")

        fetched: dict[str, tuple[str, bytes]] = {}
        pending = [urljoin(page_url, u) for u in page.urls]
        while pending:
            url = pending.pop()
            if url in fetched:
                continue
            assert urlsplit(url).netloc == origin and urlsplit(url).scheme == "http", url
            async with session.get(url) as resp:
                assert resp.status == 200, url
                fetched[url] = (resp.content_type, await resp.read())
            kind, body = fetched[url]
            if kind == "text/css":
                text = body.decode()
                _no_outside_url(re.sub(r"url\(\"?data:[^)]*\)", "", text), url)
                pending += [urljoin(url, u) for u in _css_urls(text) if not u.startswith("data:")]
            elif url.endswith("/docs.js"):
                _no_outside_url(body.decode(), url)

    kinds = {urlsplit(u).path: kind for u, (kind, _) in fetched.items()}
    assert kinds == {
        "/api/v4/docs/static/swagger-ui.css": "text/css",
        "/api/v4/docs/static/swagger-ui-bundle.js": "text/javascript",
        "/api/v4/docs/static/docs.js": "text/javascript",
        "/api/v4/openapi.json": "application/json",
        "/api/v4/docs/static/LICENSE": "text/plain",
    }
    document = next(body for u, (_, body) in fetched.items() if u.endswith("/openapi.json"))
    validate(json.loads(document))  # the page shows a valid document
    script = next(body for u, (_, body) in fetched.items() if u.endswith("/docs.js")).decode()
    assert "validatorUrl: null" in script  # Swagger UI's default sends the document to an outside validator
