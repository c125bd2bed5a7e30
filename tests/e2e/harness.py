"""Shared machinery of the end-to-end, chaos and crash tests.

* The four fakes run in-process, in the test's own event loop (:func:`start_world_fakes`), so a
  ``keyorch`` subprocess started with :func:`run_cli` (``asyncio.create_subprocess_exec``) talks to
  them over loopback while the loop keeps serving.
* Per-provider readers of ``fake.state_snapshot()`` give each managed key's provider-native state,
  found by the adapters' deterministic identities: AWS alias ``alias/keyorch/<id>`` (and the tag
  ``keyorch:managed-key-id`` for counting duplicates), Azure tag ``keyorch-managed-key-id``, Google
  label ``keyorch-managed-key`` (a key named by its template's naming scheme; or, made before that,
  the name ``keyorch-<id>``), IBM alias ``keyorch-<id>``.
* :class:`RejectionRecorder` keeps the error code of every error a fake answers, read from the
  response body, so a test can tell a state-table rejection (AWS ``KMSInvalidStateException``,
  Azure 409 ``Conflict``, Google ``FAILED_PRECONDITION``, IBM ``KEY_ACTION_INVALID_STATE_ERR``)
  from an injected fault or a legitimate "not found" / "already exists".
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiohttp import web

from keyorch.audit import Actor
from keyorch.crypto import MasterKey, generate_master_key
from keyorch.domain.clock import SystemClock
from keyorch.fakes.base import ProviderFake
from keyorch.fakes.registry import (
    AWS_REGION,
    FAKE_KINDS,
    GOOGLE_KEY_RING,
    GOOGLE_LOCATION,
    IBM_REGION,
    FakeCluster,
    connect_args,
    start_fakes,
    write_credentials,
)
from keyorch.service import keystores, vaults
from keyorch.service.context import ServiceContext
from keyorch.service.keystores import ConnectRequest
from keyorch.store.engine import migrate
from keyorch.store.repository import Store

KINDS: tuple[str, ...] = FAKE_KINDS  # aws_kms, azure_key_vault, google_kms, ibm_key_protect
AWS_TAG = "keyorch:managed-key-id"
AZURE_TAG = "keyorch-managed-key-id"
GOOGLE_LABEL = "keyorch-managed-key"
PREFIX = "keyorch-"
CLI_TIMEOUT_SECONDS = 120.0

#: Provider operations (as the fakes name them in their request logs) that change a key.
MUTATING: dict[str, frozenset[str]] = {
    "aws_kms": frozenset(
        {
            "CreateKey",
            "CreateAlias",
            "DeleteAlias",
            "RotateKeyOnDemand",
            "EnableKey",
            "DisableKey",
            "ScheduleKeyDeletion",
            "CancelKeyDeletion",
            "TagResource",
            "UntagResource",
        }
    ),
    "azure_key_vault": frozenset(
        {
            "CreateKey",
            "ImportKey",
            "UpdateKey",
            "DeleteKey",
            "PurgeDeletedKey",
            "RecoverDeletedKey",
            "RotateKey",
            "UpdateKeyRotationPolicy",
        }
    ),
    "google_kms": frozenset(
        {
            "CreateCryptoKey",
            "UpdateCryptoKey",
            "UpdateCryptoKeyPrimaryVersion",
            "CreateCryptoKeyVersion",
            "UpdateCryptoKeyVersion",
            "DestroyCryptoKeyVersion",
            "RestoreCryptoKeyVersion",
        }
    ),
    "ibm_key_protect": frozenset(
        {
            "CreateKey",
            "CreateKeyWithPolicyOverrides",
            "DeleteKey",
            "EnableKey",
            "DisableKey",
            "RestoreKey",
            "RotateKey",
            "SetKeyForDeletion",
            "UnsetKeyForDeletion",
            "PurgeKey",
            "CreateKeyAlias",
            "DeleteKeyAlias",
        }
    ),
}

#: The operation that makes a key's new version (a rotation), per fake. Google's rotation is two calls: this one,
#: then ``UpdateCryptoKeyPrimaryVersion`` (which can be repeated).
ROTATE_OPERATION: dict[str, str] = {
    "aws_kms": "RotateKeyOnDemand",
    "azure_key_vault": "RotateKey",
    "google_kms": "CreateCryptoKeyVersion",
    "ibm_key_protect": "RotateKey",
}

#: The operation that creates a key, per fake.
CREATE_OPERATION: dict[str, str] = {
    "aws_kms": "CreateKey",
    "azure_key_vault": "CreateKey",
    "google_kms": "CreateCryptoKey",
    "ibm_key_protect": "CreateKey",
}


# -- provider-native state readers ------------------------------------------------------------


def aws_keys(snapshot: Mapping[str, Any], managed_key_id: str) -> list[dict[str, Any]]:
    """Every AWS key tagged with the managed key id (a duplicate or orphan shows up here)."""
    return [
        k
        for k in snapshot["keys"]
        if any(t["TagKey"] == AWS_TAG and t["TagValue"] == managed_key_id for t in k.get("Tags", []))
    ]


def aws_state(snapshot: Mapping[str, Any], managed_key_id: str) -> str | None:
    """KeyState (Enabled / Disabled / PendingDeletion …) of the key ``alias/keyorch/<id>`` names."""
    alias = f"alias/keyorch/{managed_key_id}"
    for key in snapshot["keys"]:
        if alias in key.get("Aliases", []):
            return str(key["KeyState"])
    return None


def _azure_owned(key: Mapping[str, Any], managed_key_id: str) -> bool:
    """A Key Vault key of the managed key: tagged with its id, or named ``keyorch-<id>`` (made before keys were
    named by their template)."""
    tagged = any(v.get("tags", {}).get(AZURE_TAG) == managed_key_id for v in key.get("versions", []))
    return tagged or key["name"] == PREFIX + managed_key_id


def azure_keys(snapshot: Mapping[str, Any], managed_key_id: str) -> list[dict[str, Any]]:
    return [k for k in [*snapshot["keys"], *snapshot["deleted_keys"]] if _azure_owned(k, managed_key_id)]


def azure_state(snapshot: Mapping[str, Any], managed_key_id: str) -> str | None:
    """``enabled`` / ``disabled`` (of the current version) for a live key, ``deleted`` for a soft-deleted one."""
    for key in snapshot["keys"]:
        if _azure_owned(key, managed_key_id):
            return "enabled" if key["versions"][-1]["enabled"] else "disabled"
    if any(_azure_owned(k, managed_key_id) for k in snapshot["deleted_keys"]):
        return "deleted"
    in_flight = snapshot.get("in_flight", [])
    if any(_azure_owned(f, managed_key_id) and f["operation"] == "delete" for f in in_flight):
        return "deleted"
    return None


def google_keys(snapshot: Mapping[str, Any], managed_key_id: str) -> list[dict[str, Any]]:
    """The cryptoKeys of the managed key: labelled with its id, or named ``keyorch-<id>``."""
    suffix = "/cryptoKeys/" + PREFIX + managed_key_id
    return [
        k
        for ring in snapshot["keyRings"]
        for k in ring["cryptoKeys"]
        if k.get("labels", {}).get(GOOGLE_LABEL) == managed_key_id or str(k["name"]).endswith(suffix)
    ]


def google_state(snapshot: Mapping[str, Any], managed_key_id: str) -> str | None:
    """The primary version's state: ENABLED / DISABLED / DESTROY_SCHEDULED / DESTROYED."""
    found = google_keys(snapshot, managed_key_id)
    if not found:
        return None
    key = found[0]
    if "primary" in key:
        return str(key["primary"]["state"])
    versions = key.get("cryptoKeyVersions", [])
    return str(versions[-1]["state"]) if versions else "NO_VERSION"


def ibm_keys(snapshot: Mapping[str, Any], managed_key_id: str) -> list[dict[str, Any]]:
    alias = PREFIX + managed_key_id
    return [k for k in snapshot["keys"] if alias in k.get("aliases", [])]


def ibm_state(snapshot: Mapping[str, Any], managed_key_id: str) -> int | None:
    """Key Protect's state integer: 0 pre-active, 1 active, 2 suspended, 3 deactivated, 5 destroyed."""
    found = ibm_keys(snapshot, managed_key_id)
    return int(found[0]["state"]) if found else None


def aws_versions(snapshot: Mapping[str, Any], managed_key_id: str) -> list[tuple[str, bool]]:
    """(KeyMaterialId, current) of each key material of the key ``alias/keyorch/<id>`` names, oldest first."""
    alias = f"alias/keyorch/{managed_key_id}"
    for key in snapshot["keys"]:
        if alias in key.get("Aliases", []):
            return [(str(m["KeyMaterialId"]), bool(m["Current"])) for m in key["KeyMaterials"]]
    return []


def azure_versions(snapshot: Mapping[str, Any], managed_key_id: str) -> list[tuple[str, bool]]:
    """(version, latest) of each version of the managed key's live Key Vault key."""
    for key in snapshot["keys"]:
        if _azure_owned(key, managed_key_id):
            return [(str(v["version"]), bool(v["primary"])) for v in key["versions"]]
    return []


def google_versions(snapshot: Mapping[str, Any], managed_key_id: str) -> list[tuple[str, bool]]:
    """(number as text, primary) of each cryptoKeyVersion of the managed key's cryptoKey."""
    found = google_keys(snapshot, managed_key_id)
    if not found:
        return []
    return [(str(v["name"]).rsplit("/", 1)[1], bool(v["primary"])) for v in found[0].get("cryptoKeyVersions", [])]


def ibm_versions(snapshot: Mapping[str, Any], managed_key_id: str) -> list[tuple[str, bool]]:
    """(version id, current) of each version of the Key Protect key aliased ``keyorch-<id>``."""
    found = ibm_keys(snapshot, managed_key_id)
    return [(str(v["id"]), bool(v["primary"])) for v in found[0]["versions"]] if found else []


def azure_version_states(cluster: FakeCluster, managed_key_id: str) -> list[tuple[str, bool, bool]]:
    """(version, primary, enabled) of every version of the managed key's Key Vault key, oldest first."""
    [key] = azure_keys(cluster["azure_key_vault"].fake.state_snapshot(), managed_key_id)
    return [(v["version"], v["primary"], v["enabled"]) for v in key["versions"]]


def google_version_states(cluster: FakeCluster, managed_key_id: str) -> list[tuple[str, bool, str]]:
    """(version number, primary, state) of every cryptoKeyVersion of the managed key's key, oldest first."""
    [key] = google_keys(cluster["google_kms"].fake.state_snapshot(), managed_key_id)
    primary = key.get("primary", {}).get("name")
    return [
        (str(v["name"]).rpartition("/")[2], v["name"] == primary, str(v["state"]))
        for v in key.get("cryptoKeyVersions", [])
    ]


def primaries(cluster: FakeCluster, managed_key_id: str) -> dict[str, tuple[str, int]]:
    """Per fake: the provider's id of the managed key's primary version, and how many versions it holds there
    (-1 for Key Protect, whose key shows its latest version only)."""
    [aws] = aws_keys(cluster["aws_kms"].fake.state_snapshot(), managed_key_id)
    materials = aws["KeyMaterials"]
    [aws_current] = [m["KeyMaterialId"] for m in materials if m["Current"]]
    azure = azure_version_states(cluster, managed_key_id)
    google = google_version_states(cluster, managed_key_id)
    [ibm] = ibm_keys(cluster["ibm_key_protect"].fake.state_snapshot(), managed_key_id)
    return {
        "aws_kms": (aws_current, len(materials)),
        "azure_key_vault": (next(v for v, primary, _ in azure if primary), len(azure)),
        "google_kms": (next(v for v, primary, _ in google if primary), len(google)),
        "ibm_key_protect": (str(ibm["keyVersion"]["id"]), -1),
    }


STATE_READERS: dict[str, Callable[[Mapping[str, Any], str], object]] = {
    "aws_kms": aws_state,
    "azure_key_vault": azure_state,
    "google_kms": google_state,
    "ibm_key_protect": ibm_state,
}
#: Each fake's versions of a managed key: (the provider's version id, as keyorch records it; primary), oldest first.
VERSION_READERS: dict[str, Callable[[Mapping[str, Any], str], list[tuple[str, bool]]]] = {
    "aws_kms": aws_versions,
    "azure_key_vault": azure_versions,
    "google_kms": google_versions,
    "ibm_key_protect": ibm_versions,
}
KEY_FINDERS: dict[str, Callable[[Mapping[str, Any], str], list[dict[str, Any]]]] = {
    "aws_kms": aws_keys,
    "azure_key_vault": azure_keys,
    "google_kms": google_keys,
    "ibm_key_protect": ibm_keys,
}

#: What each fake shows for a managed key in each desired state (None: not present).
EXPECTED: dict[str, dict[str, object]] = {
    "pre_active": {"aws_kms": None, "azure_key_vault": None, "google_kms": None, "ibm_key_protect": None},
    # UKO's name of the state, as the API answers it
    "pre_activation": {"aws_kms": None, "azure_key_vault": None, "google_kms": None, "ibm_key_protect": None},
    "active": {"aws_kms": "Enabled", "azure_key_vault": "enabled", "google_kms": "ENABLED", "ibm_key_protect": 1},
    "deactivated": {
        "aws_kms": "Disabled",
        "azure_key_vault": "disabled",
        "google_kms": "DISABLED",
        "ibm_key_protect": 2,
    },
    "destroyed": {
        "aws_kms": "PendingDeletion",
        "azure_key_vault": "deleted",
        "google_kms": "DESTROY_SCHEDULED",
        "ibm_key_protect": 5,
    },
}


def provider_states(cluster: FakeCluster, managed_key_id: str) -> dict[str, object]:
    return {kind: STATE_READERS[kind](cluster[kind].fake.state_snapshot(), managed_key_id) for kind in cluster}


def duplicates(cluster: FakeCluster, managed_key_ids: Iterable[str]) -> dict[str, dict[str, int]]:
    """Per fake, the managed keys that do not have exactly one key there (id -> count)."""
    ids = list(managed_key_ids)
    found: dict[str, dict[str, int]] = {}
    for kind in cluster:
        snapshot = cluster[kind].fake.state_snapshot()
        counts = {mid: len(KEY_FINDERS[kind](snapshot, mid)) for mid in ids}
        found[kind] = {mid: n for mid, n in counts.items() if n != 1}
    return found


# -- request logs -----------------------------------------------------------------------------

#: Faults served before the fake's handler runs: the request never reached the state table.
FAULTS_BEFORE_HANDLER = frozenset({"error_500", "error_503", "throttle", "hang", "drop", "non_json"})


def handled(fake: ProviderFake) -> list[Any]:
    """Request-log entries whose request reached the fake's handler (no fault, or latency/truncate)."""
    return [e for e in fake.log.entries if e.fault not in FAULTS_BEFORE_HANDLER]


def mutating_calls(kind: str, fake: ProviderFake) -> list[str]:
    return [e.operation for e in fake.log.entries if e.operation in MUTATING[kind]]


def carried_out(fake: ProviderFake, operation: str) -> int:
    """Requests for ``operation`` that reached the fake's handler and succeeded there (2xx), whatever the client
    was then served (a truncated, replaced or held answer still did what was asked)."""
    return sum(1 for e in handled(fake) if e.operation == operation and e.status is not None and 200 <= e.status < 300)


def successful_creates(kind: str, fake: ProviderFake) -> int:
    """Create operations the fake carried out (2xx; a truncated answer still created the key)."""
    return carried_out(fake, CREATE_OPERATION[kind])


def accepted_rotations(kind: str, fake: ProviderFake) -> int:
    """Rotations the fake carried out (a truncated, replaced or held answer still rotated)."""
    return carried_out(fake, ROTATE_OPERATION[kind])


@dataclass(frozen=True)
class Rejection:
    kind: str
    operation: str
    status: int
    body: str


#: Body markers of the providers' invalid-state refusals (what "the state table rejects" looks like).
INVALID_STATE_MARKERS: dict[str, tuple[str, ...]] = {
    "aws_kms": ("KMSInvalidStateException",),
    "azure_key_vault": ('"Conflict"',),
    "google_kms": ("FAILED_PRECONDITION",),
    "ibm_key_protect": ("KEY_ACTION_INVALID_STATE_ERR",),
}


@dataclass
class RejectionRecorder:
    """Wraps each running fake's request handler and keeps every error answer with its body.

    It sits outside the fakes' own middleware (the aiohttp ``Server``'s handler, installed before
    any client connects), so it sees exactly what the client is sent; a truncated answer carries
    no readable body and is kept with its status only.
    """

    rejections: list[Rejection] = field(default_factory=list)

    def install(self, cluster: FakeCluster) -> None:
        for kind in cluster:
            running = cluster[kind]
            server = running.runner.server
            assert server is not None
            server.request_handler = self._wrap(kind, running.fake, server.request_handler)

    def _wrap(
        self,
        kind: str,
        fake: ProviderFake,
        inner: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
    ) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
        async def handler(request: web.BaseRequest) -> web.StreamResponse:
            response = await inner(request)
            if response.status >= 400 and not request.path.startswith("/_fake/"):
                body = response.body if isinstance(response, web.Response) else None
                text = body.decode("utf-8", "replace") if isinstance(body, bytes) else ""
                operation = fake.operation_for(request)  # type: ignore[arg-type]
                self.rejections.append(Rejection(kind, operation, response.status, text[:800]))
            return response

        return handler

    def invalid_state(self) -> list[Rejection]:
        return [r for r in self.rejections if any(marker in r.body for marker in INVALID_STATE_MARKERS.get(r.kind, ()))]

    def codes(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for r in self.rejections:
            counts[f"{r.kind} {r.operation} {r.status}"] += 1
        return counts


async def start_world_fakes(workdir: Path) -> tuple[FakeCluster, dict[str, Path], RejectionRecorder]:
    """The four fakes on loopback, their credentials files, and a recorder of their error answers."""
    cluster = await start_fakes(KINDS)
    credentials = write_credentials(cluster, workdir / "credentials")
    recorder = RejectionRecorder()
    recorder.install(cluster)
    return cluster, credentials, recorder


def configure_faults(cluster: FakeCluster, seed: int, rules: Sequence[Mapping[str, Any]], *only: str) -> None:
    """The same fault rules in every fake (or only in the ``only`` ones), seeded."""
    from keyorch.fakes.faults import ProviderFaults

    for kind in only or tuple(cluster):
        cluster[kind].fake.faults.configure(ProviderFaults.model_validate({"seed": seed, "rules": list(rules)}))


def clear_faults(cluster: FakeCluster) -> None:
    from keyorch.fakes.faults import ProviderFaults

    for kind in cluster:
        cluster[kind].fake.faults.configure(ProviderFaults())


# -- the chaos tests' world in-process (the service layer), for fast setups ---------------------

#: the faults of the chaos tests: served instead of the answer, or (truncate) after the fake acted
CHAOS_FAULTS: list[Any] = [
    "error_500",
    "error_503",
    {"kind": "throttle", "retry_after_seconds": 1},
    {"kind": "hang", "hang_seconds": 20},
    "drop",
    "truncate",
]
#: keystore settings for the fakes in the chaos tests: hangs time out after 0.5 s; no pacing by the clouds' quotas
CHAOS_KEYSTORE_SETTINGS: dict[str, Any] = {
    "read_timeout_seconds": 0.5,
    "provider_quotas": False,
    "rate_per_second": 0,
    "max_concurrency": 96,
}


def connect_request(vault: str, kind: str, cluster: FakeCluster, credentials: Path) -> ConnectRequest:
    """The service's connect request for the fake ``kind``."""
    running = cluster[kind]
    doc = running.fake.credentials(running.url)
    extra: dict[str, Any] = {}
    if kind == "aws_kms":
        extra = {"region": AWS_REGION}
    elif kind == "google_kms":
        extra = {"project": doc["project_id"], "location": GOOGLE_LOCATION, "key_ring": GOOGLE_KEY_RING}
    elif kind == "ibm_key_protect":
        extra = {"region": IBM_REGION, "instance_id": doc["instance_id"]}
    return ConnectRequest(
        vault=vault,
        name=kind,
        type=kind,
        endpoint=running.url,
        credentials_file=str(credentials),
        allow_insecure_http=True,
        **extra,
    )


async def chaos_context(
    store: Store, cluster: FakeCluster, credentials: Mapping[str, Path], vault: str
) -> ServiceContext:
    """A migrated store with the vault ``vault`` and one keystore per fake (named by its kind, with
    :data:`CHAOS_KEYSTORE_SETTINGS`); the :class:`~keyorch.service.context.ServiceContext` acting on it."""
    await migrate(store.engine)
    ctx = ServiceContext(
        store=store, actor=Actor("chaos"), clock=SystemClock(), master_key=MasterKey.from_base64(generate_master_key())
    )
    await vaults.create_vault(ctx, vault)
    for kind in KINDS:
        await keystores.connect_keystore(ctx, connect_request(vault, kind, cluster, credentials[kind]))
    async with store.transaction() as tx:
        for ks in await tx.list_keystores():
            await tx.update_keystore(replace(ks, settings={**ks.settings, **CHAOS_KEYSTORE_SETTINGS}), ks.version)
    return ctx


# -- the CLI as a real subprocess ---------------------------------------------------------------


@dataclass(frozen=True)
class CliResult:
    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"keyorch {' '.join(self.args)} -> {self.code}\nstdout: {self.out[:3000]}\nstderr: {self.err[:3000]}"

    def json(self) -> Any:
        assert self.out.strip(), f"no JSON on stdout:\n{self}"
        return json.loads(self.out)


@dataclass
class AsyncCli:
    """``python -m keyorch --db sqlite:///… --output json ARGS`` run with asyncio, so the loop keeps serving."""

    workdir: Path
    master_key: str = field(default_factory=generate_master_key)
    user: str = "e2e"
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. KEYORCH_RECONCILE__CALL_TIMEOUT_SECONDS

    @property
    def db_path(self) -> Path:
        return self.workdir / "keyorch.db"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.db_path}"

    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.workdir),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "KEYORCH_MASTER_KEY": self.master_key,
            "KEYORCH_USER": self.user,
            **self.extra_env,
        }

    def argv(self, *args: str, output_json: bool = True) -> list[str]:
        prefix = ["--db", self.db_url] + (["--output", "json"] if output_json else [])
        return [sys.executable, "-m", "keyorch", *prefix, *args]

    async def spawn(self, *args: str, output_json: bool = True) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *self.argv(*args, output_json=output_json),
            cwd=self.workdir,
            env=self.env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def __call__(self, *args: str, output_json: bool = True, timeout: float = CLI_TIMEOUT_SECONDS) -> CliResult:
        proc = await self.spawn(*args, output_json=output_json)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError(f"keyorch {' '.join(args)} did not finish within {timeout} s") from None
        assert proc.returncode is not None
        result = CliResult(tuple(args), proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))
        assert "Traceback" not in result.out + result.err, f"traceback:\n{result}"
        return result

    async def ok(self, *args: str) -> Any:
        result = await self(*args)
        assert result.code == 0, str(result)
        return result.json()


async def setup_world(
    cli: AsyncCli, cluster: FakeCluster, credentials: Mapping[str, Path], *, template_state: str = "pre_active"
) -> dict[str, str]:
    """init, a vault, one keystore per fake, a template over all four; returns keystore name -> id."""
    assert (await cli("init")).code == 0
    await cli.ok("vault", "create", "main")
    ids: dict[str, str] = {}
    for kind in KINDS:
        args = connect_args(kind, cluster[kind], credentials[kind])
        doc = await cli.ok("keystore", "connect", "--vault", "main", "--name", kind, *args)
        ids[kind] = doc["id"]
    keystores = [arg for kind in KINDS for arg in ("--keystore", kind)]
    await cli.ok(
        "template",
        "create",
        "--vault",
        "main",
        "--name",
        "everywhere",
        *keystores,
        "--naming-scheme",
        "E2E-{label}",
        "--state",
        template_state,
    )
    return ids


@dataclass
class FakeWorld:
    """The CLI and the four fakes it was set up against (:func:`setup_world`)."""

    cli: AsyncCli
    cluster: FakeCluster
    keystores: dict[str, str]  # name (= kind) -> keystore id
    recorder: RejectionRecorder

    def snapshot(self, kind: str) -> dict[str, Any]:
        """The fake's own state (what ``/_fake/state`` answers)."""
        found: dict[str, Any] = self.cluster[kind].fake.state_snapshot()
        return found

    def clear_logs(self) -> None:
        for kind in self.cluster:
            self.cluster[kind].fake.log.clear()

    def mutating(self) -> dict[str, list[str]]:
        return {kind: mutating_calls(kind, self.cluster[kind].fake) for kind in self.cluster}


@asynccontextmanager
async def fake_world(workdir: Path, *, template_state: str = "pre_active") -> AsyncIterator[FakeWorld]:
    """The four fakes on loopback, a CLI set up against them; the fakes are stopped on leaving."""
    cluster, credentials, recorder = await start_world_fakes(workdir)
    try:
        cli = AsyncCli(workdir)
        keystores = await setup_world(cli, cluster, credentials, template_state=template_state)
        yield FakeWorld(cli, cluster, keystores, recorder)
    finally:
        await cluster.stop()
