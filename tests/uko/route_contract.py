"""Drive every route of ``keyorch serve`` (a real subprocess) over the four fakes and record every answer, for
tests/uko/test_contract_routes.py to check against the UKO SDK's models.

:func:`drive` runs one daemon on the given database: a scenario that reaches each route's success (vaults,
keystores of the four fakes, templates, keys through their lifecycle, dual authorization, removal, the
reconciler's routes, pagers walked by ``next.href``), then, from the route table, the errors every route can
answer (no token, an unknown query parameter, an unknown id, a missing or stale If-Match, a body that is not
JSON, not sent as JSON, or with an unknown field, a method the path does not serve). Each answer is kept as
an :class:`Exchange` under the route's templated path, so checks never depend on how a test reached it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from keyorch.api.app import ROUTES
from keyorch.api.routing import Route as ApiRoute
from tests.api.uko_keystore_bodies import uko_body
from tests.daemon.harness import ADMIN_TOKEN, API, DaemonProcess, connect_body, eventually, write_config
from tests.e2e.harness import start_world_fakes

#: a route as (method, path below /api/v4), e.g. ("GET", "/vaults/{id}")
RouteKey = tuple[str, str]

SECOND_ADMIN = "admin2"
SECOND_ADMIN_TOKEN = "contract-second-admin-token-0123456789"
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
#: keyorch's fake kind → UKO's keystore type, where they differ
UKO_KIND = {"ibm_key_protect": "ibm_cloud_kms"}
#: UKO's CreateKeyTemplate body (the vault is added), distributing to the keystores of group "uko" (uko_body's)
UKO_TEMPLATE: dict[str, Any] = {
    "name": "uko-template",
    "description": "UKO's body",
    "type": ["user_defined"],
    "key": {
        "size": "256",
        "algorithm": "aes",
        "activation_date": "P0D",
        "expiration_date": "P1Y",
        "state": "pre_activation",
    },
    "keystores": [{"group": "uko", "type": "aws_kms"}, {"group": "uko", "type": "google_kms"}],
}
#: the status each case of the error battery must answer (so each reaches the error it means to)
BATTERY_STATUS = {
    "no token": 401,
    "unknown query parameter": 400,
    "unknown id": 404,
    "no If-Match": 428,
    "stale If-Match": 412,
    "not JSON": 400,
    "not sent as JSON": 415,
    "unknown field": 400,
    "method not allowed": 405,
    "no such file": 404,
}
#: a Key Protect registration the scenario makes (tests of GET …/associated_resources)
REGISTERED_CRN = "crn:v1:bluemix:public:cloud-object-storage:global:a/contract:inst-1:bucket:invoices"
#: list route → the field its items are in
LIST_FIELDS: dict[RouteKey, str] = {
    ("GET", "/vaults"): "vaults",
    ("GET", "/keystores"): "keystores",
    ("GET", "/templates"): "templates",
    ("GET", "/managed_keys"): "managed_keys",
    ("GET", "/keystores/{id}/managed_keys"): "managed_keys",
}
#: the fields of request bodies that hold a credential (UKO's and the providers' credential documents')
SECRET_FIELDS = frozenset(
    {
        "aws_secret_access_key",
        "azure_service_principal_password",
        "google_credentials",
        "ibm_api_key",
        "secret_access_key",
        "client_secret",
        "private_key",
        "apikey",
    }
)


def secrets_in(doc: Any) -> set[str]:
    """The values of the credential fields anywhere in a request body."""
    if isinstance(doc, dict):
        found = {v for k, v in doc.items() if k in SECRET_FIELDS and isinstance(v, str) and v}
        return found.union(*(secrets_in(v) for v in doc.values()))
    if isinstance(doc, list):
        return set().union(*(secrets_in(v) for v in doc))
    return set()


#: every route of the API's table
SERVED: frozenset[RouteKey] = frozenset((route.method, route.path) for route in ROUTES)
#: the pager walks: each list unfiltered, and the lists of one vault (the filter must ride along in next.href)
WALKS: tuple[tuple[RouteKey, str], ...] = (
    *((route, "") for route in LIST_FIELDS if route in SERVED),
    (("GET", "/managed_keys"), "vault=main"),
    (("GET", "/keystores"), "vault=main"),
    (("GET", "/templates"), "vault=main"),
)


@dataclass(frozen=True, eq=False)
class Exchange:
    """One request and its answer: ``doc`` is the parsed JSON body (None: no body; a str: not JSON)."""

    route: RouteKey
    case: str
    method: str
    url: str
    status: int
    doc: Any
    content_type: str

    def __str__(self) -> str:
        return f"{self.method} {self.url} ({self.case}) -> {self.status}"


@dataclass(frozen=True)
class Walk:
    """A list walked by ``next.href``: the ids its filter selects (one big page), those the walk met in order,
    how many pages it took, the ids of the unfiltered list that the filter leaves out, and those met walking
    back by ``previous.href`` from ``last.href``."""

    expected: list[str]
    walked: list[str]
    pages: int
    others: list[str]
    backward: list[str]


@dataclass
class Driven:
    """What one daemon answered: every exchange, and each list's items as walked by next.href."""

    backend: str
    exchanges: list[Exchange] = field(default_factory=list)
    #: every credential sent in a request body (no answer may carry one)
    secrets: set[str] = field(default_factory=set)
    #: (list route, filter) → its pager walk
    walks: dict[tuple[RouteKey, str], Walk] = field(default_factory=dict)

    def of(self, route: RouteKey) -> list[Exchange]:
        return [e for e in self.exchanges if e.route == route]


class Recorder:
    """An aiohttp client of the daemon's API that records every answer as an Exchange."""

    def __init__(self, session: aiohttp.ClientSession, base: str, driven: Driven) -> None:
        self.session = session
        self.base = base
        self.driven = driven
        #: the last ETag answered for each object id
        self.etags: dict[str, str] = {}

    async def call(
        self,
        method: str,
        route: str,
        ident: str | None = None,
        *,
        case: str = "success",
        json_body: Any = None,
        data: str | None = None,
        content_type: str | None = None,
        if_match: str | None = None,
        query: str = "",
        token: str | None = ADMIN_TOKEN,
        url: str | None = None,
        as_route: RouteKey | None = None,
        vault: str | None = None,
    ) -> Exchange:
        """``route`` is the templated path ("/vaults/{id}"), ``ident`` what replaces {id}; ``url`` (a path the
        API gave, e.g. a next.href) is requested instead, recorded under ``as_route``; ``vault`` is sent as UKO's
        UKO-Vault header."""
        path = route.replace("{id}", ident) if ident is not None else route
        self.driven.secrets |= secrets_in(json_body)
        target = url if url is not None else API + path + (f"?{query}" if query else "")
        headers: dict[str, str] = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if if_match is not None:
            headers["If-Match"] = if_match
        if content_type is not None:
            headers["Content-Type"] = content_type
        if vault is not None:
            headers["UKO-Vault"] = vault
        async with self.session.request(method, self.base + target, json=json_body, data=data, headers=headers) as resp:
            raw = await resp.read()
            doc: Any = None
            if raw:
                text = raw.decode("utf-8", errors="replace")
                try:
                    doc = json.loads(text) if resp.content_type.endswith("json") else text
                except json.JSONDecodeError:
                    doc = text
            exchange = Exchange(as_route or (method, route), case, method, target, resp.status, doc, resp.content_type)
            if resp.headers.get("ETag"):
                self.etags[doc["id"] if isinstance(doc, dict) and "id" in doc else target] = resp.headers["ETag"]
        self.driven.exchanges.append(exchange)
        return exchange

    async def ok(self, method: str, route: str, ident: str | None = None, **kwargs: Any) -> Any:
        """The document of a call that must succeed (the scenario cannot go on otherwise)."""
        exchange = await self.call(method, route, ident, **kwargs)
        assert 200 <= exchange.status < 300, f"{exchange}: {exchange.doc}"
        return exchange.doc

    async def changed(self, method: str, route: str, ident: str, **kwargs: Any) -> Any:
        """The document of a change that must succeed, sent with the object's current ETag as If-Match."""
        tag = await self.etag("/" + route.split("/")[1] + "/{id}", ident)
        return await self.ok(method, route, ident, if_match=tag, **kwargs)

    async def etag(self, route: str, ident: str) -> str:
        """The object's current ETag, from a GET (recorded like any other answer)."""
        exchange = await self.call("GET", route, ident)
        assert exchange.status == 200, f"{exchange}: {exchange.doc}"
        return self.etags[ident]


def _in_sync(doc: Any, state: str) -> bool:
    targets = doc.get("targets") or []
    return (
        bool(targets)
        and all(t["sync_flag"] == "in_sync" for t in targets)
        and (state != "active" or all(t["status"] == "active" for t in targets))
    )


async def drive(backend: str, db_url: str, workdir: Path) -> Driven:
    """Start the fakes and one daemon on ``db_url``, run the scenario and the error battery, stop them all."""
    driven = Driven(backend)
    cluster, credentials, _ = await start_world_fakes(workdir)
    daemon: DaemonProcess | None = None
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
    try:
        config = write_config(
            workdir / "keyorch.yaml",
            db_url,
            users={SECOND_ADMIN: (SECOND_ADMIN_TOKEN, {"*": "vault_administrator"})},
        )
        daemon = await DaemonProcess.start(workdir, config)
        base = daemon.url

        async def ready() -> bool | None:
            try:
                async with session.get(base + "/readyz") as resp:
                    return True if resp.status == 200 else None
            except aiohttp.ClientError:
                return None

        await eventually(ready, 30, "/readyz 200")
        client = Recorder(session, daemon.url, driven)
        try:
            live = await _scenario(client, cluster.running, credentials, driven)
            await _error_battery(client, live)
        except AssertionError as exc:
            failures = [r for r in daemon.logs() if r.get("level") in ("error", "critical")]
            raise AssertionError(f"{exc}\nthe daemon's errors: {json.dumps(failures, indent=1)[-6000:]}") from None
    finally:
        await session.close()
        if daemon is not None:
            await daemon.kill()
        await cluster.stop()
    return driven


async def _scenario(
    c: Recorder, running: dict[str, Any], credentials: dict[str, Path], driven: Driven
) -> dict[str, str]:
    """Reach every route's success; for each templated path, the id of an object still there afterwards (for
    the error battery)."""
    main = (await c.ok("POST", "/vaults", json_body={"name": "main", "description": "contract test"}))["id"]
    dual = (await c.ok("POST", "/vaults", json_body={"name": "dual", "dual_auth": True, "recovery_key_label": "rk-1"}))[
        "id"
    ]
    uko_vault = {"name": "third", "description": "UKO's body", "recovery_key_label": "rk-3"}
    third = (await c.ok("POST", "/vaults", json_body=uko_vault))["id"]
    spare = (await c.ok("POST", "/vaults", json_body={"name": "spare"}))["id"]
    await c.ok("GET", "/vaults")
    await c.changed("PATCH", "/vaults/{id}", main, json_body={"description": "changed"})
    await c.changed("DELETE", "/vaults/{id}", spare)

    stores: dict[str, str] = {}
    for kind, fake in running.items():
        body = {**connect_body(main, kind, kind, fake, credentials[kind]), "groups": ["production"]}
        body["description"] = f"the {kind} fake"
        await c.ok("POST", "/keystores", json_body=body, query="dry_run=true")  # tried, nothing stored
        stores[kind] = (await c.ok("POST", "/keystores", json_body=body))["id"]
    aws = next(k for k in running if k.startswith("aws"))
    dual_store = (
        await c.ok("POST", "/keystores", json_body=connect_body(dual, "dual-aws", aws, running[aws], credentials[aws]))
    )["id"]
    extra = (
        await c.ok("POST", "/keystores", json_body=connect_body(main, "extra", aws, running[aws], credentials[aws]))
    )["id"]
    # the third vault's keystores, template and key are made with the bodies IBM's SDK sends
    uko_stores = []
    for kind, fake in running.items():
        uko_kind = UKO_KIND.get(kind, kind)
        body = uko_body(third, f"uko-{uko_kind}", uko_kind, fake)
        if uko_kind == "google_kms":
            body["google_project_id"] = fake.fake.credentials(fake.url)["project_id"]
        uko_stores.append((await c.ok("POST", "/keystores", json_body=body))["id"])
    await c.ok("GET", "/keystores")
    for ident in [*stores.values(), dual_store, extra, *uko_stores]:
        await c.ok("GET", "/keystores/{id}", ident)
        await c.ok("GET", "/keystores/{id}/status", ident)
    await c.changed("PATCH", "/keystores/{id}", extra, json_body={"drift_policy": "remediate"})
    await c.changed("DELETE", "/keystores/{id}", extra)

    body = {"vault": main, "name": "everywhere", "keystores": list(stores.values()), "naming_scheme": "C-{label}"}
    template = (await c.ok("POST", "/templates", json_body=body))["id"]
    dual_template = (
        await c.ok("POST", "/templates", json_body={"vault": dual, "name": "dual", "keystores": [dual_store]})
    )["id"]
    await c.ok("POST", "/templates", json_body={**body, "name": "another"})
    periods = {"activation_date": "P1D", "expiration_date": "P2Y"}
    planned = (await c.ok("POST", "/templates", json_body={**body, "name": "planned", "key": periods}))["id"]
    await c.changed("PATCH", "/templates/{id}", planned, json_body={"description": "changed"})
    for action in ("archive", "unarchive"):
        await c.changed("POST", f"/templates/{{id}}/{action}", planned)
    doomed = (await c.ok("POST", "/templates", json_body={**body, "name": "doomed", "key": periods}))["id"]
    await c.changed("DELETE", "/templates/{id}", doomed)
    await c.ok("POST", "/templates", json_body=UKO_TEMPLATE | {"vault": {"id": third}})
    await c.ok("GET", "/templates")
    await c.ok("GET", "/templates/{id}", template)

    tags = [{"name": "env", "value": "contract"}]
    keys = [
        (await c.ok("POST", "/managed_keys", json_body={"template": template, "label": f"key-{i}", "tags": tags}))["id"]
        for i in range(4)
    ]
    uko_key = {"template_name": "everywhere", "vault": {"id": main}, "label": "key-4", "description": "UKO's body"}
    keys.append((await c.ok("POST", "/managed_keys", json_body={**uko_key, "tags": tags}))["id"])
    uko_key = {"template_name": UKO_TEMPLATE["name"], "vault": {"id": third}, "label": "uko-key", "tags": tags}
    await c.ok("POST", "/managed_keys", json_body=uko_key)
    await c.ok("GET", "/managed_keys")
    await c.changed("PATCH", "/managed_keys/{id}", keys[0], json_body={"description": "changed"})
    dates = {"activation_date": "2027-01-01", "expiration_date": "2030-12-31", "tags": []}
    await c.changed("PATCH", "/managed_keys/{id}", keys[3], json_body=dates)

    async def settled(key: str, state: str) -> Any:
        async def check() -> Any:
            exchange = await c.call("GET", "/managed_keys/{id}", key, case="poll")
            return exchange.doc if exchange.status == 200 and _in_sync(exchange.doc, state) else None

        return await eventually(check, 60, f"key {key} {state} and in sync in every keystore")

    for key in keys[:2]:
        await c.changed("POST", "/managed_keys/{id}/activate", key)
    active = await settled(keys[0], "active")
    # a Key Protect registration of keys[0] (IBM services make them; the fake's admin route stands in), so its
    # associated resources are not an empty list
    ibm = next(k for k in running if k.startswith("ibm"))
    kp_key = next(t["key_id_in_keystore"] for t in active["targets"] if t["keystore"] == stores[ibm])
    registration = {"keyId": kp_key, "resourceCrn": REGISTERED_CRN, "description": "contract test"}
    async with c.session.post(running[ibm].url + "/_fake/ibm/registrations", json=registration) as resp:
        assert resp.status == 201, await resp.text()
    await c.ok("GET", "/managed_keys/{id}/status_in_keystores", keys[0])
    await c.ok("POST", "/managed_keys/{id}/sync_status_in_keystores", keys[0])
    # rotated in the four fakes by the daemon's reconciler
    await c.changed("POST", "/managed_keys/{id}/rotate", keys[0])
    rotated = await settled(keys[0], "active")
    assert rotated["current_version"] == 2, rotated
    assert [t["key_version"] for t in rotated["targets"]] == [2] * len(rotated["targets"]), rotated["targets"]
    assert all(t["primary_version_id"] for t in rotated["targets"]), rotated["targets"]
    await c.ok("GET", "/managed_keys/{id}/versions", keys[0])
    await settled(keys[1], "active")
    await c.changed("POST", "/managed_keys/{id}/compromise", keys[1])
    # refused by the lifecycle: a compromised key is never activated again
    refused = await c.call(
        "POST",
        "/managed_keys/{id}/activate",
        keys[1],
        case="compromised",
        if_match=await c.etag("/managed_keys/{id}", keys[1]),
    )
    assert refused.status == 409, refused
    # destroyed_compromised
    await c.changed("POST", "/managed_keys/{id}/destroy", keys[1])
    await c.changed("POST", "/managed_keys/{id}/deactivate", keys[0])
    # refused while a key it holds is deactivated, not destroyed
    refused = await c.call(
        "DELETE",
        "/keystores/{id}",
        stores[aws],
        case="holds keys",
        if_match=await c.etag("/keystores/{id}", stores[aws]),
    )
    assert refused.status == 409, refused

    await settled(keys[2], "pre_active")
    await c.changed("POST", "/managed_keys/{id}/destroy", keys[2])

    async def removed() -> bool | None:
        exchange = await c.call(
            "DELETE", "/managed_keys/{id}", keys[2], case="remove", if_match=await c.etag("/managed_keys/{id}", keys[2])
        )
        assert exchange.status in (204, 409), exchange
        return True if exchange.status == 204 else None

    await eventually(removed, 60, "the destroyed key removed once every keystore confirmed it")

    dual_key = (await c.ok("POST", "/managed_keys", json_body={"template": dual_template, "label": "dual-key"}))["id"]
    await c.changed("POST", "/managed_keys/{id}/authorize_deletion", dual_key)
    await c.changed("POST", "/managed_keys/{id}/withdraw_authorization", dual_key)

    # a key its template no longer matches (the planned dates changed), realigned: a dry run, then for real
    realigned = (await c.ok("POST", "/managed_keys", json_body={"template": planned, "label": "realigned"}))["id"]
    later = {"key": {"activation_date": "P2D", "expiration_date": "P3Y"}}
    await c.changed("PATCH", "/templates/{id}", planned, json_body=later)
    for query in ("dry_run=true", ""):
        await c.changed("POST", "/managed_keys/{id}/update_from_template", realigned, query=query)
    found = await c.ok("GET", "/managed_keys/{id}/associated_resources", keys[0])
    assert [r["key_id_in_keystore"] for r in found["associated_resources"]] == [kp_key], found
    for kind, ident in stores.items():
        found = await c.ok("GET", "/keystores/{id}/associated_resources", ident)
        shown = [r["managed_key"]["id"] for r in found["associated_resources"]]
        assert shown == ([keys[0]] if kind == ibm else []), found  # only Key Protect records registrations
        await c.ok("GET", "/keystores/{id}/managed_keys", ident)
    # keys made outside keyorch (issue 16): a UKO key and a person's in the AWS fake, found by the scan
    seed = {"keys": [{"name": "uko-contract", "uko": True}, {"name": "by-hand-contract"}]}
    async with c.session.post(running[aws].url + "/_fake/seed", json=seed) as resp:
        assert resp.status == 201, await resp.text()
        seeded = {k["id"] for k in (await resp.json())["keys"]}
    found = await c.ok("GET", "/keystores/{id}/unmanaged_keys", stores[aws], query="limit=1000")
    assert seeded <= {k["key_id_in_keystore"] for k in found["unmanaged_keys"]}, found
    # and adopted as it is: a dry run, then for real
    by_hand = next(
        k["key_id_in_keystore"] for k in found["unmanaged_keys"] if k["label_in_keystore"].endswith("by-hand-contract")
    )
    adopt = {
        "keystores": [{"id": stores[aws]}],
        "vault": {"id": main},
        "template": {"id": template},
        "instances": [{"keystore": {"id": stores[aws]}, "key_id_in_keystore": by_hand}],
        "label": "adopted-contract",
    }
    for query in ("dry_run=true", ""):
        answer = await c.ok("POST", "/managed_keys/adopt", json_body=adopt, query=query)
        assert [k["outcome"] for k in answer["managed_keys"]] == ["planned" if query else "adopted"], answer

    await c.ok("POST", "/reconcile")
    await c.ok("POST", "/plan", json_body={"keys": [keys[0]]})
    await c.ok("GET", "/audit_records", query="limit=20")
    await c.ok("GET", "/audit_chain")
    await c.ok("GET", "/openapi.json", token=None)
    await c.ok("GET", "/docs", token=None)
    await c.ok("GET", "/docs/static/{name}", url=API + "/docs/static/docs.js", token=None)

    live = {"vaults": main, "keystores": stores[aws], "templates": template, "managed_keys": keys[0]}
    # as the SDK sends them: in the vault UKO-Vault names (the lists keep to it)
    for kind, ident in live.items():
        await c.ok("GET", f"/{kind}/{{id}}", ident, vault=main, case="UKO-Vault")
    for route, name in LIST_FIELDS.items():
        if "{id}" not in route[1]:
            doc = await c.ok(*route, vault=third, case="UKO-Vault")
            assert doc[name] and all(_vault_of(item) == third for item in doc[name]), (route, doc)
    for route, query in WALKS:
        driven.walks[(route, query)] = await _walk(c, route, query, live[route[1].split("/")[1]])
    return live


def _vault_of(item: dict[str, Any]) -> str:
    """The vault id of a list's item (a vault is its own)."""
    vault = item.get("vault", item["id"])
    return str(vault["id"] if isinstance(vault, dict) else vault)


async def _walk(c: Recorder, route: RouteKey, query: str, ident: str) -> Walk:
    """A pager walk: from a first page of 2 (with ``query``'s filter), ``next.href`` to the last page
    (``ident``: the object of a list below one, e.g. /keystores/{id}/managed_keys)."""
    name = LIST_FIELDS[route]
    ident_or_none = ident if "{id}" in route[1] else None
    everything = await c.ok(*route, ident_or_none, query="limit=1000", case="whole list")
    more = f"{query}&limit=1000" if query else "limit=1000"
    selected = await c.ok(*route, ident_or_none, query=more, case="whole list")
    expected = [item["id"] for item in selected[name]]
    walked: list[str] = []
    doc = await c.ok(*route, ident_or_none, query=f"{query}&limit=2" if query else "limit=2", case="first page")
    last = doc["last"]["href"]
    pages = 1
    for _ in range(len(expected) + 2):
        walked += [item["id"] for item in doc[name]]
        if "next" not in doc:
            break
        doc = await c.ok(*route, url=doc["next"]["href"], as_route=route, case="next page")
        pages += 1
    backward: list[str] = []
    doc = await c.ok(*route, url=last, as_route=route, case="last page")
    for _ in range(len(expected) + 2):
        backward += [item["id"] for item in doc[name]]
        if "previous" not in doc:
            break
        doc = await c.ok(*route, url=doc["previous"]["href"], as_route=route, case="previous page")
    others = [item["id"] for item in everything[name] if item["id"] not in expected]
    return Walk(expected, walked, pages, others, backward)


async def _error_battery(c: Recorder, live: dict[str, str]) -> None:
    """The errors every route of the table can answer, from its own description (ROUTES); ``live``: an object
    of each kind (the path's first part) that the scenario left in place."""
    for route in ROUTES:
        ident = live.get(route.path.split("/")[1]) if "{id}" in route.path else None
        await _route_errors(c, route, ident)
    documents = {"/openapi.json": "/openapi.json", "/docs": "/docs", "/docs/static/{name}": "/docs/static/docs.js"}
    for document, path in documents.items():
        await c.call(
            "DELETE", document, url=API + path, case="method not allowed", token=None, as_route=("GET", document)
        )
    missing = API + "/docs/static/no-such-file.js"
    await c.call("GET", "/docs/static/{name}", url=missing, case="no such file", token=None)


async def _route_errors(c: Recorder, route: ApiRoute, ident: str | None) -> None:
    """A route of a kind of object the scenario left none of gets only the cases that need no live object."""
    method, path = route.method, route.path
    known = ident is not None or "{id}" not in path
    ident = ident if known else UNKNOWN_ID
    sent_body: dict[str, Any] = {"json_body": {}} if route.body is not None else {}
    if route.permission is not None:
        await c.call(method, path, ident, case="no token", token=None, **sent_body)
    await c.call(method, path, ident, case="unknown query parameter", query="no_such_parameter=1", **sent_body)
    if "{id}" in path:
        await c.call(method, path, UNKNOWN_ID, case="unknown id", if_match=f'"{UNKNOWN_ID}:1"', **sent_body)
    if route.if_match and known:
        await c.call(method, path, ident, case="no If-Match", **sent_body)
        await c.call(method, path, ident, case="stale If-Match", if_match=f'"{ident}:0"', **sent_body)
    if route.body is not None:
        tag = c.etags.get(ident) if known and route.if_match else None
        await c.call(method, path, ident, case="not JSON", data="{", content_type="application/json", if_match=tag)
        await c.call(method, path, ident, case="not sent as JSON", data="{}", content_type="text/plain", if_match=tag)
        await c.call(method, path, ident, case="unknown field", json_body={"no_such_field": 1}, if_match=tag)
    await c.call("PUT", path, ident, case="method not allowed", as_route=(method, path))
