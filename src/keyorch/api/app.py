"""The REST API application (``/api/v4``), for ``keyorch serve`` to run.

Routes carry their full ``/api/v4`` path, so the daemon can add its own routes (``/healthz``,
``/readyz``, ``/metrics``) to this application and run it as its root.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from keyorch.api import (
    routes_adoption,
    routes_associations,
    routes_audit,
    routes_key_actions,
    routes_keys,
    routes_keystores,
    routes_reconcile,
    routes_templates,
    routes_vaults,
)
from keyorch.api.auth import Authenticator
from keyorch.api.docs import add_docs_routes
from keyorch.api.errors import MAX_BODY_BYTES, add_trace_header, error_middleware, trace_middleware
from keyorch.api.limits import LIMITS, RequestLimits, concurrency_middleware
from keyorch.api.openapi import OPENAPI_PATH, build_openapi
from keyorch.api.routing import DEPS, ApiDeps, Route, make_handler
from keyorch.crypto import MasterKey
from keyorch.domain.clock import Clock
from keyorch.domain.states import KeyAction
from keyorch.service.environment import EnvironmentPolicy
from keyorch.service.keystore_probe import StatusChecks
from keyorch.settings import ApiSettings, EnvironmentCredentialsSettings, KeySettings, Settings
from keyorch.store.repository import Store
from keyorch.web import add_console

ROUTES: list[Route] = [
    *routes_vaults.ROUTES,
    *routes_keystores.ROUTES,
    *routes_associations.ROUTES,
    *routes_templates.ROUTES,
    *routes_adoption.ROUTES,
    *routes_keys.ROUTES,
    *routes_key_actions.ROUTES,
    *routes_reconcile.ROUTES,
    *routes_audit.ROUTES,
]

OPENAPI_KEY = web.AppKey("keyorch_openapi", dict)


async def _openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI_KEY])


def create_api_app(
    *,
    store: Store,
    settings: ApiSettings | Settings,
    clock: Clock,
    master_key: MasterKey | None,
    on_change: Callable[[str], None] | None = None,
    sync_key: Callable[[str], Awaitable[dict[str, Any]]] | None = None,
    reconcile_once: Callable[[], Awaitable[dict[str, Any]]] | None = None,
    plan: Callable[[Sequence[str]], Awaitable[dict[str, Any]]] | None = None,
    environment_credentials: EnvironmentCredentialsSettings | None = None,
    plan_action: Callable[[str, KeyAction], Awaitable[dict[str, Any]]] | None = None,
) -> web.Application:
    """The API application.

    ``on_change(key_id)`` is called after every accepted change to a key; ``sync_key(key_id)`` runs a
    push reconcile and returns its document (:func:`keyorch.reconcile.report.sync_document`; without it
    the sync endpoint answers 503); ``reconcile_once()`` runs a full pass and ``plan(refs)`` plans one
    (their documents: :mod:`keyorch.reconcile.report`; without them those endpoints answer 503); ``plan_action(ref,
    action)`` plans what a state action would do in each keystore (the web console's confirmations, at ``/ui/``).
    ``environment_credentials`` (default: that of ``settings``, else none allowed) says which vaults may
    connect keystores with credentials from keyorch's environment, and to which endpoints.
    """
    api = settings.api if isinstance(settings, Settings) else settings
    if environment_credentials is None and isinstance(settings, Settings):
        environment_credentials = settings.environment_credentials
    app = web.Application(
        middlewares=[trace_middleware, concurrency_middleware, error_middleware], client_max_size=MAX_BODY_BYTES
    )
    app.on_response_prepare.append(add_trace_header)
    app[LIMITS] = RequestLimits.of(api)
    deps = ApiDeps(
        store=store,
        clock=clock,
        master_key=master_key,
        authenticator=Authenticator(api.tokens),
        on_change=on_change,
        sync_key=sync_key,
        keystore_checks=StatusChecks(api.keystore_status_cache_seconds, api.keystore_check_timeout_seconds),
        reconcile_once=reconcile_once,
        plan=plan,
        environment=EnvironmentPolicy.for_api(environment_credentials or EnvironmentCredentialsSettings()),
        rotation_min_interval=(
            settings.keys if isinstance(settings, Settings) else KeySettings()
        ).rotation_min_interval,
    )
    app[DEPS] = deps
    app[OPENAPI_KEY] = build_openapi(ROUTES)
    app.router.add_route("GET", OPENAPI_PATH, _openapi)
    add_docs_routes(app)
    for route in ROUTES:
        app.router.add_route(route.method, route.full_path, make_handler(route))
    add_console(app, deps, plan_action=plan_action)
    return app
