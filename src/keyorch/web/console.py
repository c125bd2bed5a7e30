"""The console's shell: its sub-application at ``/ui/``, sign-in and sign-out, the security headers, the CSRF
check of every form that changes something, rendering, and error pages.

Handlers are written as ``async def page(request, user) -> web.StreamResponse`` and registered with
:func:`signed_in`: without a valid session a GET is sent to the sign-in page (303) and a POST is answered 401
with it; a POST whose form lacks the session's CSRF token is answered 403 before its handler runs.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from aiohttp import web
from multidict import MultiDictProxy

from keyorch.api.auth import Principal, token_hash
from keyorch.api.routing import DEPS, ApiDeps
from keyorch.domain.errors import KeyorchError
from keyorch.domain.rotation import DEFAULT_MIN_INTERVAL
from keyorch.domain.states import KeyAction
from keyorch.web import words
from keyorch.web.session import COOKIE, LIFETIME, SIGN_IN_COOKIE, Session, Sessions

log = logging.getLogger(__name__)

PREFIX = "/ui"
HERE = Path(__file__).parent

#: no inline script or style, nothing from elsewhere, never in a frame
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}

PlanAction = Callable[[str, KeyAction], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Console:
    deps: ApiDeps
    sessions: Sessions
    templates: jinja2.Environment
    #: what a state action would do in each keystore (the daemon's planner); None where no reconciler runs
    plan_action: PlanAction | None


CONSOLE = web.AppKey("keyorch_console", Console)


@dataclass(frozen=True)
class User:
    """The signed-in user: the session, the principal (roles read afresh from the configured tokens), the form."""

    session: Session
    principal: Principal
    csrf: str
    form: MultiDictProxy[str | bytes | bytearray | web.FileField] | None = None

    rotation_min_interval: timedelta = DEFAULT_MIN_INTERVAL

    def field(self, name: str) -> str | None:
        value = self.form.get(name) if self.form is not None else None
        return value if isinstance(value, str) else None


Page = Callable[[web.Request, User], Awaitable[web.StreamResponse]]


def console_of(request: web.Request) -> Console:
    return request.app[CONSOLE]


def render(request: web.Request, file: str, /, status: int = 200, **values: Any) -> web.Response:
    console = console_of(request)
    section = request.path.removeprefix(PREFIX + "/").partition("/")[0]
    text = console.templates.get_template(file).render(section=section, words=words, **values)
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _user(request: web.Request) -> User | None:
    console = console_of(request)
    session = console.sessions.read(request.cookies.get(COOKIE), console.deps.clock.now())
    if session is None:
        return None
    principal = console.deps.authenticator.by_digest(session.token_sha256)
    if principal is None or principal.user != session.user:  # the token is no longer configured
        return None
    return User(session, principal, console.sessions.csrf_token(session))


def _sign_in_url(request: web.Request) -> str:
    return f"{PREFIX}/sign-in?{urlencode({'next': request.path_qs})}"


def signed_in(page: Page) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        user = _user(request)
        if user is None:
            if request.method == "GET":
                raise web.HTTPSeeOther(_sign_in_url(request))
            return _sign_in_page(request, status=401, error="Your session has ended: sign in again.")
        if request.method == "POST":
            form = await request.post()
            token = form.get("csrf")
            if not console_of(request).sessions.csrf_ok(user.session, token if isinstance(token, str) else None):
                return render(
                    request,
                    "error.html",
                    status=403,
                    user=user,
                    title="Forbidden",
                    message="This form was not sent from a page of this console (its CSRF token is missing or "
                    "wrong), so nothing was done. Open the page again and retry.",
                )
            user = User(user.session, user.principal, user.csrf, form)
        user = replace(user, rotation_min_interval=console_of(request).deps.rotation_min_interval)
        return await page(request, user)

    handle.__name__ = page.__name__
    return handle


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path only (never another site)."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return f"{PREFIX}/keys"


def _sign_in_page(request: web.Request, *, status: int = 200, error: str | None = None) -> web.Response:
    nonce = request.cookies.get(SIGN_IN_COOKIE) or ""
    if len(nonce) < 20 or len(nonce) > 100:
        nonce = secrets.token_urlsafe(24)
    response = render(
        request,
        "sign_in.html",
        status=status,
        user=None,
        next=_safe_next(request.query.get("next")),
        sign_in_csrf=nonce,
        error=error,
    )
    response.set_cookie(
        SIGN_IN_COOKIE, nonce, path=PREFIX, httponly=True, samesite="Strict", secure=request.secure, max_age=3600
    )
    return response


async def sign_in_form(request: web.Request) -> web.StreamResponse:
    if _user(request) is not None:
        raise web.HTTPSeeOther(_safe_next(request.query.get("next")))
    return _sign_in_page(request)


async def sign_in(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    form = await request.post()
    given, expected = form.get("csrf"), request.cookies.get(SIGN_IN_COOKIE)
    if not isinstance(given, str) or not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        return _sign_in_page(request, status=403, error="The sign-in form had expired: try again.")
    token = form.get("token")
    token = token.strip() if isinstance(token, str) else ""
    principal = console.deps.authenticator.by_digest(token_hash(token)) if token else None
    if principal is None:
        log.info("console.sign_in_refused")
        return _sign_in_page(request, status=401, error="That API token is not valid.")
    digest = token_hash(token)
    _, cookie = console.sessions.issue(principal.user, digest, console.deps.clock.now())
    next_url = form.get("next")
    response = web.HTTPSeeOther(_safe_next(next_url if isinstance(next_url, str) else None))
    response.set_cookie(
        COOKIE,
        cookie,
        path=PREFIX,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        max_age=int(LIFETIME.total_seconds()),
    )
    response.del_cookie(SIGN_IN_COOKIE, path=PREFIX)
    log.info("console.signed_in user=%s", principal.user)
    return response


async def sign_out(request: web.Request, user: User) -> web.StreamResponse:
    console = console_of(request)
    console.sessions.revoke(user.session, console.deps.clock.now())
    response = web.HTTPSeeOther(f"{PREFIX}/sign-in")
    response.del_cookie(COOKIE, path=PREFIX)
    return response


async def root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther(f"{PREFIX}/keys")


def error_page(request: web.Request, status: int, message: str) -> web.Response:
    titles = {400: "Not accepted", 401: "Sign in", 403: "Forbidden", 404: "Not found", 409: "Refused"}
    title = titles.get(status, "Not done" if status < 500 else "keyorch could not do this")
    return render(request, "error.html", status=status, user=_user(request), title=title, message=message)


@web.middleware
async def pages_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """keyorch's refusals and HTTP errors as pages (the API's middleware would answer JSON)."""
    try:
        return await handler(request)
    except KeyorchError as exc:
        return error_page(request, exc.http_status, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = "There is no such page." if exc.status == 404 else exc.reason
        return error_page(request, exc.status, message)
    except Exception:
        log.exception("console.internal_error method=%s path=%s", request.method, request.path)
        return error_page(request, 500, "keyorch failed to show this page; its log says why.")


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.path.startswith(f"{PREFIX}/static/"):
        response.headers["Cache-Control"] = "no-store"


def link(path: str, query: Mapping[str, str | int | None] | None = None) -> str:
    """A console URL: ``path`` below /ui, with the query's non-empty values."""
    shown = {k: str(v) for k, v in (query or {}).items() if v not in (None, "")}
    return f"{PREFIX}{path}" + (f"?{urlencode(shown)}" if shown else "")


def create_console(deps: ApiDeps, *, plan_action: PlanAction | None, routes: Sequence[web.RouteDef]) -> web.Application:
    """The console's sub-application (mounted at ``/ui``) over the API's dependencies."""
    app = web.Application(middlewares=[pages_middleware])
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )
    env.globals["link"] = link
    env.filters["quote"] = lambda value: quote(str(value), safe="")
    app[DEPS] = deps
    app[CONSOLE] = Console(deps, Sessions(deps.master_key), env, plan_action)
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/", root)
    app.router.add_get("/sign-in", sign_in_form)
    app.router.add_post("/sign-in", sign_in)
    app.router.add_post("/sign-out", signed_in(sign_out))
    app.router.add_routes(routes)
    app.router.add_static("/static/", HERE / "static", append_version=False)
    return app
