"""The audit trail through the API (keyorch's addition, for `keyorch --server audit …`).

The trail records every vault's changes, so reading or verifying it needs a reading role in every
vault (a role for ``"*"``).
"""

from __future__ import annotations

from aiohttp import web

from keyorch.api.auth import ALL_VAULTS, Permission
from keyorch.api.models import AuditQuery
from keyorch.api.responses import AuditChain, AuditRecords
from keyorch.api.routing import Call, Route
from keyorch.service import audit
from keyorch.views import audit_json

_WHAT = f'reading the audit trail (it spans every vault: a role for "{ALL_VAULTS}")'


async def list_records(call: Call) -> web.StreamResponse:
    q = call.parsed(AuditQuery, call.query)
    call.principal.require(Permission.READ, ALL_VAULTS, _WHAT)
    records = await audit.list_records(call.context(), q.object, q.limit)
    return call.answer({"audit_records": [audit_json(r) for r in records], "limit": q.limit})


async def verify_chain(call: Call) -> web.StreamResponse:
    call.principal.require(Permission.READ, ALL_VAULTS, _WHAT)
    return call.answer((await audit.verify_chain(call.context())).as_json())


ROUTES = [
    Route(
        "GET",
        "/audit_records",
        list_records,
        "list_audit_records",
        "The newest audit records (about one object, if asked), oldest first",
        "audit",
        Permission.READ,
        query=AuditQuery,
        response=AuditRecords,
    ),
    Route(
        "GET",
        "/audit_chain",
        verify_chain,
        "verify_audit_chain",
        "Verify the audit chain: counts, or the first edited or missing record (500 audit_chain_broken)",
        "audit",
        Permission.READ,
        refusals=(500,),
        response=AuditChain,
    ),
]
