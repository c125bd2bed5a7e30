"""One console request as the API's :class:`keyorch.api.routing.Call`: the same lookups (a key of a vault the user
cannot read is not found), the same role checks and audited refusals (``authorize``), the same service context,
with the console as the source of its audit records.

Each console operation names the API route it is (by operation id): its permission is that route's, so the
console never needs another role than the API for the same change.
"""

from __future__ import annotations

from aiohttp import web

from keyorch.api import (
    routes_audit,
    routes_key_actions,
    routes_keys,
    routes_keystores,
    routes_templates,
    routes_vaults,
)
from keyorch.api.auth import Permission, Principal
from keyorch.api.errors import PreconditionRequired
from keyorch.api.routing import ApiDeps, Call, Route
from keyorch.audit import Actor
from keyorch.domain.errors import KeyorchError, StaleVersion
from keyorch.service.context import ServiceContext

#: the API's routes by operation id
API_ROUTES: dict[str, Route] = {
    r.operation_id: r
    for r in (
        *routes_vaults.ROUTES,
        *routes_keystores.ROUTES,
        *routes_templates.ROUTES,
        *routes_keys.ROUTES,
        *routes_key_actions.ROUTES,
        *routes_audit.ROUTES,
    )
}


def permission_of(operation_id: str) -> Permission:
    permission = API_ROUTES[operation_id].permission
    assert permission is not None, f"{operation_id} is public"
    return permission


class ConsoleCall(Call):
    """A signed-in user's request to the console, acting as the API operation ``operation_id``."""

    def __init__(self, request: web.Request, deps: ApiDeps, principal: Principal, operation_id: str) -> None:
        super().__init__(request, deps, principal, API_ROUTES[operation_id])

    @property
    def permission(self) -> Permission:
        return permission_of(self.route.operation_id)

    def context(self, role: str | None = None) -> ServiceContext:
        return ServiceContext(
            store=self.deps.store,
            actor=Actor(user=self.principal.user, source="console", role=role),
            clock=self.deps.clock,
            master_key=self.deps.master_key,
            environment=self.deps.environment,
        )

    async def form_version(
        self, ctx: ServiceContext, action: str, object_type: str, object_id: str, current: int, given: str | None
    ) -> int:
        """The version the confirmation was shown for (the form's ``version``): the API's If-Match. A change made
        since the page was shown is refused (412), audited, so nobody confirms what they did not see."""
        if given is None or not given.strip():
            exc: KeyorchError = PreconditionRequired(
                f"{action} changes an existing {object_type}: the form must carry the version it was shown for",
                target="version",
            )
        elif given.strip() == str(current):
            return current
        else:
            exc = StaleVersion(
                f"{object_type} {object_id} changed since this page was shown (version {given[:20]!r}, now {current});"
                " look at it again and confirm again",
                target="version",
            )
        await self.refuse(ctx, action, object_type, object_id, exc)
        raise AssertionError("unreachable")  # pragma: no cover - refuse() always raises
