"""The web console at ``/ui/``: server-rendered pages (Jinja2) over the API's own operations, for people who would
rather look than type. See docs/console.md."""

from __future__ import annotations

from aiohttp import web

from keyorch.api.routing import ApiDeps
from keyorch.web.console import PREFIX, PlanAction, create_console


def add_console(app: web.Application, deps: ApiDeps, *, plan_action: PlanAction | None = None) -> None:
    """Mount the console on the API application at ``/ui/`` (``/ui`` redirects there)."""
    from keyorch.web import pages_keys

    async def to_console(_: web.Request) -> web.StreamResponse:
        raise web.HTTPPermanentRedirect(PREFIX + "/")

    app.router.add_get(PREFIX, to_console)
    app.add_subapp(PREFIX, create_console(deps, plan_action=plan_action, routes=[*pages_keys.ROUTES]))
