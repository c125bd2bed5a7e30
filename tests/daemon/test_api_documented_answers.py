"""What ``keyorch serve`` answers is what its OpenAPI document says: the success bodies of the main routes,
served by the daemon (a subprocess) over the four fakes, validate against the schemas of its own document."""

from __future__ import annotations

from typing import Any

from tests.daemon.harness import API, Answer, ApiClient, DaemonProcess, connect_body, eventually
from tests.daemon.world import World, in_sync, serving
from tests.openapi_answers import check_answer

#: the operations this test reaches, by method and documented path
MAIN_ROUTES = {
    ("POST", "/vaults"),
    ("GET", "/vaults"),
    ("GET", "/vaults/{id}"),
    ("POST", "/keystores"),
    ("GET", "/keystores"),
    ("GET", "/keystores/{id}"),
    ("GET", "/keystores/{id}/status"),
    ("POST", "/templates"),
    ("GET", "/templates"),
    ("GET", "/templates/{id}"),
    ("POST", "/managed_keys"),
    ("GET", "/managed_keys"),
    ("GET", "/managed_keys/{id}"),
    ("GET", "/managed_keys/{id}/status_in_keystores"),
    ("POST", "/managed_keys/{id}/activate"),
    ("POST", "/managed_keys/{id}/deactivate"),
    ("POST", "/managed_keys/{id}/sync_status_in_keystores"),
    ("POST", "/reconcile"),
    ("POST", "/plan"),
    ("GET", "/audit_records"),
    ("GET", "/audit_chain"),
}


class Checked:
    """Calls of the daemon's API whose success bodies are checked against its served OpenAPI document."""

    def __init__(self, client: ApiClient, document: dict[str, Any]) -> None:
        self.client = client
        self.document = document
        self.reached: set[tuple[str, str]] = set()

    async def call(self, method: str, path: str, ident: str | None = None, **kwargs: Any) -> Answer:
        concrete = path.replace("{id}", ident) if ident is not None else path
        answer = await self.client.api(method, concrete, **kwargs)
        status = 201 if method == "POST" and path in ("/vaults", "/keystores", "/templates", "/managed_keys") else 200
        answer.ok(status)
        check_answer(self.document, method, API + path, status, answer.doc)
        self.reached.add((method, path))
        return answer


async def test_the_daemons_answers_validate_against_its_openapi_document(
    world: World, daemons: list[DaemonProcess]
) -> None:
    _, client = await serving(world, daemons, world.config())
    document = (await client.call("GET", API + "/openapi.json")).ok()
    api = Checked(client, document)

    vault = (await api.call("POST", "/vaults", json_body={"name": "main"})).doc["id"]
    keystores = []
    for kind, running in world.cluster.running.items():
        body = connect_body(vault, kind, kind, running, world.credentials[kind])
        keystores.append((await api.call("POST", "/keystores", json_body=body)).doc["id"])
    body = {"vault": vault, "name": "everywhere", "keystores": keystores, "naming_scheme": "D-{label}"}
    template = (await api.call("POST", "/templates", json_body=body)).doc["id"]
    created = await api.call("POST", "/managed_keys", json_body={"template": template, "label": "documented"})
    key = created.doc["id"]

    activated = await api.call("POST", "/managed_keys/{id}/activate", key, if_match=created.headers["ETag"])

    async def active_everywhere() -> list[dict[str, Any]] | None:
        targets = await client.key_targets(key)
        return targets if in_sync(targets) and all(t["status"] == "active" for t in targets) else None

    await eventually(active_everywhere, 60, "the key active in every keystore")
    await api.call("POST", "/managed_keys/{id}/sync_status_in_keystores", key)
    await api.call("POST", "/managed_keys/{id}/deactivate", key, if_match=activated.headers["ETag"])

    for path, ident in (("/vaults", None), ("/vaults/{id}", vault), ("/keystores", None)):
        await api.call("GET", path, ident)
    for ident in keystores:
        await api.call("GET", "/keystores/{id}", ident)
        await api.call("GET", "/keystores/{id}/status", ident)
    await api.call("GET", "/templates")
    await api.call("GET", "/templates/{id}", template)
    await api.call("GET", "/managed_keys")
    await api.call("GET", "/managed_keys/{id}", key)
    await api.call("GET", "/managed_keys/{id}/status_in_keystores", key)
    await api.call("POST", "/reconcile")
    plan = await api.call("POST", "/plan", json_body={"keys": [key]})
    assert plan.doc["steps"], "the plan names the key's keystores"
    await api.call("POST", "/plan", json_body={})
    records = await api.call("GET", "/audit_records")
    assert records.doc["audit_records"], "the changes above were audited"
    await api.call("GET", "/audit_chain")
    assert api.reached == MAIN_ROUTES
