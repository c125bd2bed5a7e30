"""Issue 14, first acceptance point: every answer of every /api/v4 route is what IBM's UKO SDK models say.

One ``keyorch serve`` per backend (a real SQLite file, a real PostgreSQL) over the four fakes on loopback is
driven through every route (tests/uko/route_contract.py): each success answer validates as the UKO model the
route is mapped to below (list items too; the pagers' ``next.href`` walk, and ``previous.href`` back, meet every
item once), and every error answer (4xx and 5xx) as UKO's ApiError, whose ``errors`` are ErrorModels. A route of
the API that is in none of the tables below fails the test: a new route comes with its contract case.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from keyorch.api.app import create_api_app
from keyorch.api.routing import PREFIX
from keyorch.domain.clock import FixedClock
from keyorch.settings import ApiSettings
from keyorch.store.repository import Store
from tests.conftest import fresh_postgres_database, postgres_admin_url
from tests.uko.contract import schemas, violations
from tests.uko.route_contract import BATTERY_STATUS, WALKS, Driven, Exchange, RouteKey, drive

#: an answer UKO gives without a body (204)
NO_CONTENT = "no content (204)"

#: route → the UKO SDK model of its success answer (tests/uko/schemas/), or NO_CONTENT
UKO_MODELS: dict[RouteKey, str] = {
    ("GET", "/vaults"): "VaultList",
    ("POST", "/vaults"): "Vault",
    ("GET", "/vaults/{id}"): "Vault",
    ("PATCH", "/vaults/{id}"): "Vault",
    ("DELETE", "/vaults/{id}"): NO_CONTENT,
    ("GET", "/keystores"): "KeystoreList",
    ("POST", "/keystores"): "Keystore",
    ("GET", "/keystores/{id}"): "Keystore",
    ("PATCH", "/keystores/{id}"): "Keystore",
    # UKO's DeleteKeystore (?mode=) answers 204
    ("DELETE", "/keystores/{id}"): NO_CONTENT,
    ("GET", "/keystores/{id}/managed_keys"): "ManagedKeyList",
    ("GET", "/keystores/{id}/associated_resources"): "AssociatedResourceList",
    ("GET", "/managed_keys/{id}/associated_resources"): "AssociatedResourceList",
    ("GET", "/templates"): "TemplateList",
    ("POST", "/templates"): "Template",
    ("GET", "/templates/{id}"): "Template",
    ("GET", "/keystores/{id}/status"): "KeystoreStatus",
    ("PATCH", "/templates/{id}"): "Template",
    ("DELETE", "/templates/{id}"): NO_CONTENT,
    ("POST", "/templates/{id}/archive"): "Template",
    ("POST", "/templates/{id}/unarchive"): "Template",
    # UKO's UpdateManagedKeyFromTemplate answers the ManagedKey (keyorch adds changes and dry_run)
    ("POST", "/managed_keys/{id}/update_from_template"): "ManagedKey",
    ("GET", "/managed_keys"): "ManagedKeyList",
    ("POST", "/managed_keys"): "ManagedKey",
    ("GET", "/managed_keys/{id}"): "ManagedKey",
    ("PATCH", "/managed_keys/{id}"): "ManagedKey",
    ("DELETE", "/managed_keys/{id}"): NO_CONTENT,
    ("GET", "/managed_keys/{id}/status_in_keystores"): "StatusInKeystores",
    ("POST", "/managed_keys/{id}/sync_status_in_keystores"): "StatusInKeystores",
    ("POST", "/managed_keys/{id}/activate"): "ManagedKey",
    ("POST", "/managed_keys/{id}/deactivate"): "ManagedKey",
    ("POST", "/managed_keys/{id}/destroy"): "ManagedKey",
    # UKO's compromised state (issue 14): the key's answer is UKO's ManagedKey
    ("POST", "/managed_keys/{id}/compromise"): "ManagedKey",
    # keyorch's dual authorization (UKO has no such route), answered as UKO's ManagedKey with extra fields
    ("POST", "/managed_keys/{id}/authorize_deletion"): "ManagedKey",
    ("POST", "/managed_keys/{id}/withdraw_authorization"): "ManagedKey",
    ("POST", "/managed_keys/{id}/rotate"): "ManagedKey",
}

#: routes UKO does not have, whose success answers no UKO model describes → why (their errors are still ApiError)
KEYORCH_ONLY: dict[RouteKey, str] = {
    ("GET", "/managed_keys/{id}/versions"): "a key's versions and which one each keystore serves; the UKO SDK "
    "(4.7.3) the schemas are derived from has no versions model",
    ("GET", "/keystores/{id}/unmanaged_keys"): "the keys a keystore holds that no managed key targets, read live "
    "from the provider (issue 16's scan, before adopting keys made by UKO or by hand); UKO manages only keys it "
    "made and has no such list",
    ("POST", "/managed_keys/adopt"): "adopts keys that exist in keystores as managed keys (issue 16); UKO manages "
    "only keys it made",
    ("POST", "/reconcile"): "runs one reconcile pass now; UKO reconciles on its own schedule only",
    ("POST", "/plan"): "what a reconcile pass would do, without doing it; UKO has no dry run of its sync",
    ("GET", "/audit_records"): "keyorch's audit trail; UKO's is IBM Cloud Activity Tracker, outside its API",
    ("GET", "/audit_chain"): "verifies the audit trail's hash chain; no UKO counterpart",
    ("GET", "/openapi.json"): "keyorch's OpenAPI document; UKO publishes its API description outside the API",
    ("GET", "/docs"): "the API's HTML documentation page",
    ("GET", "/docs/static/{name}"): "the documentation page's scripts and styles",
}


@dataclass(frozen=True)
class Pending:
    """A route whose success answer does not match its UKO model yet, because someone else is rebuilding it."""

    model: str
    why: str
    issue: int = 14


#: routes that still fail their UKO model → the model and who fixes it. test_pending_routes_still_fail fails
#: as soon as one of them passes: move it to UKO_MODELS then.
PENDING: dict[RouteKey, Pending] = {}


@dataclass(frozen=True)
class KnownViolation:
    """A violation of routes in UKO_MODELS that is known and waits for a decision or a change by someone else:
    ``text`` (part of the violation's message) in the answers about the objects ``named`` (their ``name``) on
    ``routes``. It is not reported there; test_known_violations_still_occur fails once it is gone."""

    routes: tuple[RouteKey, ...]
    text: str
    named: frozenset[str]
    why: str
    issue: int = 14


_KEYSTORES = (("POST", "/keystores"), ("GET", "/keystores"), ("GET", "/keystores/{id}"))
_TEMPLATES = (("POST", "/templates"), ("GET", "/templates"), ("GET", "/templates/{id}"))
_NO_PERIODS = (
    "a template made with keyorch's body, which gives no planned activation or expiration, answers key without "
    "activation_date and expiration_date, which UKO's KeyProperties requires (ISO 8601 periods: what keyorch "
    "should answer for 'none' is the templates owner's call; a UKO-bodied template passes)"
)
KNOWN_VIOLATIONS: tuple[KnownViolation, ...] = (
    KnownViolation(
        _KEYSTORES,
        "'azure_location' is a required property",
        frozenset({"azure_key_vault"}),
        "an Azure keystore connected with keyorch's body or CLI without azure_location (optional there; keystores "
        "connected before migration 0008 have none) answers without it, and UKO's KeystoreTypeAzure requires it "
        "(an enum keyorch cannot make up; a UKO-bodied Azure keystore passes)",
    ),
    KnownViolation(
        _TEMPLATES,
        "'activation_date' is a required property",
        frozenset(("everywhere", "another", "dual")),
        _NO_PERIODS,
    ),
    KnownViolation(
        _TEMPLATES,
        "'expiration_date' is a required property",
        frozenset(("everywhere", "another", "dual")),
        _NO_PERIODS,
    ),
)


def _about(doc: Any, violation: str) -> object:
    """The ``name`` of the object a violation is in: the list item its JSON path starts in, else the document."""
    for field_name, _ in LIST_ITEMS.values():
        prefix = f"$.{field_name}["
        if violation.startswith(prefix) and isinstance(doc, dict):
            index = int(violation[len(prefix) :].split("]", 1)[0])
            item = (doc.get(field_name) or [None] * (index + 1))[index]
            return item.get("name") if isinstance(item, dict) else None
    return doc.get("name") if isinstance(doc, dict) else None


def _known(route: RouteKey, exchange: Exchange, violation: str) -> KnownViolation | None:
    return next(
        (
            k
            for k in KNOWN_VIOLATIONS
            if route in k.routes and k.text in violation and _about(exchange.doc, violation) in k.named
        ),
        None,
    )


#: UKO fields the SDK declares optional but without which an answer tells a UKO client nothing (issue 14)
ALSO_REQUIRED: dict[str, tuple[str, ...]] = {"KeystoreStatus": ("health_status",)}

#: list model → (the field of its items, the items' model)
LIST_ITEMS = {
    "VaultList": ("vaults", "Vault"),
    "KeystoreList": ("keystores", "Keystore"),
    "ManagedKeyList": ("managed_keys", "ManagedKey"),
    "TemplateList": ("templates", "Template"),
    "AssociatedResourceList": ("associated_resources", "AssociatedResource"),
}

BACKENDS = ("sqlite", "postgres")
_DRIVEN: dict[str, Driven | Exception] = {}


def _served_routes() -> set[RouteKey]:
    """Every (method, path below /api/v4) the API application serves (HEAD: aiohttp's twin of each GET)."""

    async def collect() -> set[RouteKey]:
        with tempfile.TemporaryDirectory() as folder:
            store = Store.from_url(f"sqlite:///{Path(folder) / 'unused.db'}")
            try:
                app = create_api_app(
                    store=store,
                    settings=ApiSettings(),
                    clock=FixedClock(datetime(2026, 1, 1, tzinfo=UTC)),
                    master_key=None,
                )
                found = set()
                for route in app.router.routes():
                    path = route.resource.canonical if route.resource is not None else ""
                    if path.startswith(PREFIX) and route.method != "HEAD":
                        found.add((route.method, path.removeprefix(PREFIX)))
                return found
            finally:
                await store.close()

    return asyncio.run(collect())


def _answer_problems(model: str, exchange: Exchange) -> list[str]:
    """What is wrong with a success answer for UKO's ``model`` (NO_CONTENT: a 204 without a body)."""
    if model == NO_CONTENT:
        if exchange.status != 204 or exchange.doc is not None:
            return [f"UKO answers 204 without a body; got {exchange.status} with {str(exchange.doc)[:200]}"]
        return []
    found = violations(model, exchange.doc)
    if exchange.content_type != "application/json":
        found.append(f"sent as {exchange.content_type!r}; UKO's SDK reads application/json")
    if isinstance(exchange.doc, dict):
        found += [
            f"$: {name!r} is missing (issue 14)" for name in ALSO_REQUIRED.get(model, ()) if name not in exchange.doc
        ]
        if model in LIST_ITEMS:
            name, item_model = LIST_ITEMS[model]
            for i, item in enumerate(exchange.doc.get(name) or []):
                found += [f"$.{name}[{i}] as {item_model}: {v}" for v in violations(item_model, item)]
    return found


def _error_problems(exchange: Exchange) -> list[str]:
    if not isinstance(exchange.doc, dict):
        return [f"an error answer must be UKO's ApiError; got {exchange.content_type}: {str(exchange.doc)[:200]}"]
    found = violations("ApiError", exchange.doc)
    if exchange.content_type != "application/json":
        found.append(f"sent as {exchange.content_type!r}; UKO's SDK reads application/json")
    if exchange.doc.get("status_code") != exchange.status:
        found.append(f"$.status_code: {exchange.doc.get('status_code')!r} is not the answer's status {exchange.status}")
    if not exchange.doc.get("errors"):
        found.append("$.errors: empty; UKO's ApiError names at least one error")
    return found


def _report(problems: dict[Exchange, list[str]]) -> str:
    return "\n".join(f"{e}:\n" + "\n".join(f"    {p}" for p in found) for e, found in problems.items())


def _drive_on(backend: str, workdir: Path) -> Driven:
    if backend == "sqlite":
        return asyncio.run(drive(backend, f"sqlite:///{workdir / 'keyorch.db'}", workdir))

    async def on_postgres() -> Driven:
        async with fresh_postgres_database() as url:
            return await drive(backend, url, workdir)

    return asyncio.run(on_postgres())


@pytest.fixture(scope="module", params=BACKENDS)
def driven(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Driven:
    """Every route driven on one daemon over this backend, once per backend whatever the tests' order (a
    scenario that failed fails every test of its backend with its first error, without running again)."""
    backend: str = request.param
    if backend == "postgres":
        postgres_admin_url()  # skips (or fails in CI) without a PostgreSQL server
    if backend not in _DRIVEN:
        try:
            _DRIVEN[backend] = _drive_on(backend, tmp_path_factory.mktemp(f"contract-{backend}"))
        except Exception as exc:
            _DRIVEN[backend] = exc
            raise
    found = _DRIVEN[backend]
    if isinstance(found, Exception):
        raise AssertionError(f"the {backend} scenario failed earlier: {str(found)[:3000]}")
    return found


def test_every_route_of_the_api_has_a_contract_case() -> None:
    tables = {"UKO_MODELS": set(UKO_MODELS), "KEYORCH_ONLY": set(KEYORCH_ONLY), "PENDING": set(PENDING)}
    served = _served_routes()
    missing = served - set().union(*tables.values())
    assert not missing, f"routes without a contract case (map them in UKO_MODELS, KEYORCH_ONLY or PENDING): {missing}"
    stale = set().union(*tables.values()) - served
    assert not stale, f"contract cases of routes the API does not serve: {stale}"
    for a, b in (("UKO_MODELS", "KEYORCH_ONLY"), ("UKO_MODELS", "PENDING"), ("KEYORCH_ONLY", "PENDING")):
        assert not tables[a] & tables[b], f"routes in both {a} and {b}: {tables[a] & tables[b]}"
    models = {*UKO_MODELS.values(), *(p.model for p in PENDING.values())} - {NO_CONTENT}
    assert models <= set(schemas()), f"models without a schema: {models - set(schemas())}"
    assert all(p.why and p.issue for p in PENDING.values())


def test_every_route_was_driven_to_a_success_and_an_error(driven: Driven) -> None:
    for route in sorted({*UKO_MODELS, *KEYORCH_ONLY, *PENDING}):
        statuses = sorted({e.status for e in driven.of(route)})
        assert any(200 <= s < 300 for s in statuses), f"{route}: no success answer reached (got {statuses})"
        assert any(400 <= s < 500 for s in statuses), f"{route}: no error answer reached (got {statuses})"


def test_each_error_case_reached_its_error(driven: Driven) -> None:
    """The error battery's requests were refused for the reason each means to test, on every route."""
    wrong = [
        f"{e}, not {BATTERY_STATUS[e.case]}"
        for e in driven.exchanges
        if BATTERY_STATUS.get(e.case, e.status) != e.status
    ]
    assert not wrong, "\n".join(wrong)
    reached = {e.case for e in driven.exchanges}
    assert set(BATTERY_STATUS) <= reached, f"error cases never sent: {set(BATTERY_STATUS) - reached}"


@pytest.mark.parametrize("route", sorted(UKO_MODELS), ids=" ".join)
def test_success_answers_are_the_uko_model(driven: Driven, route: RouteKey) -> None:
    model = UKO_MODELS[route]
    successes = [e for e in driven.of(route) if e.status < 400]
    assert successes, f"{route} was never answered with a success"
    problems = {
        e: found for e in successes if (found := [v for v in _answer_problems(model, e) if not _known(route, e, v)])
    }
    assert not problems, f"{route} does not answer UKO's {model} on {driven.backend}:\n{_report(problems)}"


@pytest.mark.parametrize(
    ("known", "route"),
    [(k, route) for k in KNOWN_VIOLATIONS for route in k.routes],
    ids=lambda v: v.text if isinstance(v, KnownViolation) else " ".join(v),
)
def test_known_violations_still_occur(driven: Driven, known: KnownViolation, route: RouteKey) -> None:
    """A known violation that is gone must leave KNOWN_VIOLATIONS (so the route is checked for it again)."""
    found = [
        v
        for e in driven.of(route)
        if e.status < 400
        for v in _answer_problems(UKO_MODELS[route], e)
        if _known(route, e, v) is known
    ]
    assert found, (
        f"{route} no longer shows {known.text!r} for {sorted(known.named)} on {driven.backend}: remove it from "
        f"KNOWN_VIOLATIONS (it was known because {known.why})"
    )


@pytest.mark.parametrize("route", sorted({*UKO_MODELS, *KEYORCH_ONLY, *PENDING}), ids=" ".join)
def test_error_answers_are_uko_api_errors(driven: Driven, route: RouteKey) -> None:
    errors = [e for e in driven.of(route) if e.status >= 400]
    assert errors, f"{route} was never answered with an error"
    problems = {e: found for e in errors if (found := _error_problems(e))}
    assert not problems, f"{route} answers errors that are not UKO's ApiError on {driven.backend}:\n{_report(problems)}"


def test_pending_routes_still_fail(driven: Driven) -> None:
    """A pending route that passes its model must leave PENDING for UKO_MODELS (so it stays checked)."""
    passing = []
    for route, pending in PENDING.items():
        successes = [e for e in driven.of(route) if e.status < 400]
        assert successes, f"{route} was never answered with a success"
        if not any(_answer_problems(pending.model, e) for e in successes):
            passing.append(f"{route} (pending because it {pending.why})")
    assert not passing, f"now answering UKO's model on {driven.backend}: move from PENDING to UKO_MODELS: {passing}"


@pytest.mark.parametrize("walk", [w for w in WALKS if w[0] not in PENDING], ids=lambda w: f"{w[0][1]}?{w[1]}")
def test_pagers_walk_every_item_exactly_once(driven: Driven, walk: tuple[RouteKey, str]) -> None:
    """From a first page of 2, ``next.href`` leads through every item the filter selects, once each, and
    through no other; so does ``previous.href`` from ``last.href`` (a pending list is walked once it leaves
    PENDING)."""
    found = driven.walks[walk]
    assert len(found.expected) >= 3, f"{walk}: too few items ({found.expected}) for a walk over several pages of 2"
    assert sorted(found.walked) == sorted(found.expected), (walk, found)
    assert len(set(found.walked)) == len(found.walked), f"{walk}: an item met twice: {found.walked}"
    assert sorted(found.backward) == sorted(found.expected), f"{walk}: previous.href from last.href: {found}"
    assert len(set(found.backward)) == len(found.backward), f"{walk}: an item met twice going back: {found.backward}"
    assert found.pages == (len(found.expected) + 1) // 2, f"{walk}: {found.pages} pages for {len(found.expected)} items"
    if walk[1]:
        assert found.others, f"{walk}: the filter leaves nothing out, so the walk shows nothing of it"
        assert not set(found.others) & set(found.walked), f"{walk}: items the filter leaves out were walked"


def test_no_answer_carries_a_credential(driven: Driven) -> None:
    """UKO's credential fields are answered redacted; no answer (success or error) carries a credential sent."""
    assert len(driven.secrets) >= 5, f"not a credential of each of the four types sent: {len(driven.secrets)}"
    leaks = [
        f"{e}: carries a credential" for e in driven.exchanges if any(s in json.dumps(e.doc) for s in driven.secrets)
    ]
    assert not leaks, "\n".join(leaks)
