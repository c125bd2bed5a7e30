"""Admin routes of the IBM Key Protect fake (``/_fake/ibm/...``): users, registrations, forced states."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from keyorch.fakes.ibm_state import ACTIVE, DEACTIVATED, PRE_ACTIVE, SUSPENDED, Registration
from keyorch.fakes.ibm_wire import IbmError

if TYPE_CHECKING:
    from keyorch.fakes.ibm import KeyProtectFake


def add_admin_routes(app: web.Application, fake: KeyProtectFake) -> None:
    state = fake.state

    def fail(status: int, message: str) -> web.Response:
        return web.json_response({"error": message}, status=status)

    async def read(request: web.Request) -> dict[str, Any] | None:
        try:
            doc = json.loads(await request.read() or b"{}")
        except (ValueError, UnicodeDecodeError):
            return None
        return doc if isinstance(doc, dict) else None

    async def add_apikey(request: web.Request) -> web.Response:
        doc = await read(request)
        user = doc.get("user") if doc else None
        if not isinstance(user, str) or not 1 <= len(user) <= 128 or not user.isprintable():
            return fail(400, "give 'user': a user name (1-128 printable characters)")
        return web.json_response({"apikey": fake.iam.add_apikey(user), "user": user}, status=201)

    async def add_registration(request: web.Request) -> web.Response:
        doc = await read(request)
        if doc is None:
            return fail(400, "the body must be a JSON object")
        key_id, crn = doc.get("keyId"), doc.get("resourceCrn")
        prevent, description = doc.get("preventKeyDeletion", False), doc.get("description", "")
        if not isinstance(key_id, str) or not isinstance(crn, str) or not crn or len(crn) > 512:
            return fail(400, "give 'keyId' and 'resourceCrn' (strings)")
        if not isinstance(prevent, bool) or not isinstance(description, str):
            return fail(400, "'preventKeyDeletion' must be a boolean and 'description' a string")
        try:
            key = state.find(key_id, "Registration could not be created")
        except IbmError:
            return fail(404, f"no key {key_id!r}")
        if key.extractable:
            return fail(422, "KEY_ROOT_REQ_REG_ERR: registrations need a root key")
        if key.effective_state(fake.clock.now()) != ACTIVE:
            return fail(422, "KEY_INVALID_STATE_ERR: registrations need an active key")
        if any(r.resource_crn == crn for r in state.registrations_of(key)):
            return fail(409, "this key already has a registration for that resource")
        reg = Registration(key.id, crn, prevent, description, "ServiceId-fake-service", fake.clock.now(),
                           key.versions[-1].id)  # fmt: skip
        state.registrations.append(reg)
        return web.json_response(reg.as_json(key.name), status=201)

    async def remove_registrations(request: web.Request) -> web.Response:
        key_id, crn = request.query.get("keyId"), request.query.get("resourceCrn")
        before = len(state.registrations)
        state.registrations = [
            r
            for r in state.registrations
            if not ((key_id is None or r.key_id == key_id) and (crn is None or r.resource_crn == crn))
        ]
        return web.json_response({"removed": before - len(state.registrations)})

    async def force_state(request: web.Request) -> web.Response:
        doc = await read(request)
        wanted = doc.get("state") if doc else None
        if type(wanted) is not int or wanted not in (PRE_ACTIVE, ACTIVE, SUSPENDED, DEACTIVATED):
            return fail(400, "give 'state': 0, 1, 2 or 3 (delete a key for 5)")
        try:
            key = state.find(request.match_info["id"], "")
        except IbmError:
            return fail(404, "no such key")
        if key.deleted_at is not None:
            return fail(409, "the key is deleted (state 5); restore it first")
        key.forced_deactivated = wanted == DEACTIVATED
        if wanted != DEACTIVATED:
            key.state = wanted
        return web.json_response(key.as_json(fake.clock.now()))

    app.router.add_post("/_fake/ibm/apikeys", add_apikey)
    app.router.add_post("/_fake/ibm/registrations", add_registration)
    app.router.add_delete("/_fake/ibm/registrations", remove_registrations)
    app.router.add_put("/_fake/ibm/keys/{id}/state", force_state)
