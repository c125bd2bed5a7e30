"""Which fake serves which keystore type, and how to run several of them as one product.

``FAKE_TYPES`` maps a keystore type to a factory for its fake (imported lazily, so a missing or
broken provider module fails with a sentence naming it instead of breaking every other fake).
:func:`start_fakes` starts the chosen fakes on the running loop, one port each;
:func:`connect_args` gives the ``keyorch keystore connect`` options that point a keystore at a
running fake; :func:`describe` builds the document ``keyorch fakes serve`` prints.

Ports: with ``port_base=None`` (or 0) every fake gets a free port from the system; with
``port_base=N`` the AWS fake listens on N, Azure on N+1, Google on N+2 and IBM on N+3 (fixed
offsets, whichever subset runs).
"""

from __future__ import annotations

import asyncio
import errno
import importlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the heavy imports wait until a fake is made or started (keeps the CLI quick)
    from keyorch.fakes.base import ProviderFake, RunningFake
    from keyorch.fakes.faults import FaultsFile
    from keyorch.fakes.seed import SeedDocument
    from keyorch.fakes.tls import TlsMaterial

FakeFactory = Callable[..., "ProviderFake"]

#: every keystore type with a fake, in port-offset order
FAKE_KINDS: tuple[str, ...] = ("aws_kms", "azure_key_vault", "google_kms", "ibm_key_protect")
PORT_OFFSETS: dict[str, int] = {kind: offset for offset, kind in enumerate(FAKE_KINDS)}
_LOCATIONS: dict[str, tuple[str, str]] = {
    "aws_kms": ("keyorch.fakes.aws", "AwsKmsFake"),
    "azure_key_vault": ("keyorch.fakes.azure", "AzureKeyVaultFake"),
    "google_kms": ("keyorch.fakes.gcp", "GoogleKmsFake"),
    "ibm_key_protect": ("keyorch.fakes.ibm", "KeyProtectFake"),
}

#: where the connect options place a keystore inside each fake
AWS_REGION = "us-east-1"
GOOGLE_PROJECT = "keyorch-fake"
GOOGLE_LOCATION = "us-east1"
GOOGLE_KEY_RING = "keyorch"
IBM_REGION = "us-south"

#: constructor options of the fakes as `fakes serve` and the demo run them: the Azure fake acts as a
#: Managed HSM so that it holds AES (oct-HSM) keys, as templates targeting all four providers need
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {"azure_key_vault": {"managed_hsm": True}}

#: how long a stopping fake lets requests in flight finish before cancelling them
SHUTDOWN_GRACE_SECONDS = 1.0


class FakeUnavailableError(RuntimeError):
    """A provider fake's module cannot be imported (or lacks its class)."""


class UnknownProviderError(ValueError):
    """A keystore type that has no fake."""


class FakeStartError(RuntimeError):
    """A fake could not start listening (port in use, address not available, ...)."""


def _lazy_factory(kind: str) -> FakeFactory:
    module_name, class_name = _LOCATIONS[kind]

    def make(**kwargs: Any) -> ProviderFake:
        from keyorch.fakes.base import ProviderFake

        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise FakeUnavailableError(
                f"The {kind} fake is not available: module {module_name} cannot be imported ({exc})."
            ) from exc
        cls = getattr(module, class_name, None)
        if not (isinstance(cls, type) and issubclass(cls, ProviderFake)):
            raise FakeUnavailableError(
                f"The {kind} fake is not available: {module_name} has no ProviderFake class {class_name}."
            )
        fake: ProviderFake = cls(**{**DEFAULT_OPTIONS.get(kind, {}), **kwargs})
        return fake

    make.__name__ = make.__qualname__ = class_name
    make.__doc__ = f"Create a {class_name} (imported from {module_name} on first use)."
    return make


FAKE_TYPES: dict[str, FakeFactory] = {kind: _lazy_factory(kind) for kind in FAKE_KINDS}


def parse_kinds(kinds: Iterable[str], allowed: Iterable[str] = FAKE_KINDS) -> list[str]:
    """Validate and de-duplicate keystore types, keeping their order."""
    allowed = list(allowed)
    chosen: list[str] = []
    for raw in kinds:
        kind = raw.strip()
        if not kind:
            continue
        if kind not in allowed:
            raise UnknownProviderError(f"Unknown provider {kind!r}; allowed values are: {', '.join(allowed)}.")
        if kind not in chosen:
            chosen.append(kind)
    if not chosen:
        raise UnknownProviderError(f"No provider given; allowed values are: {', '.join(allowed)}.")
    return chosen


@dataclass
class FakeCluster:
    """The fakes one ``start_fakes`` call started, keyed by keystore type."""

    running: dict[str, RunningFake] = field(default_factory=dict)
    tls: TlsMaterial | None = None

    def __getitem__(self, kind: str) -> RunningFake:
        return self.running[kind]

    def __iter__(self) -> Any:
        return iter(self.running)

    async def stop(self, grace_seconds: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Stop every fake: stop listening, give requests in flight ``grace_seconds``, then cancel them.

        The bound matters because a ``hang`` fault holds its request for up to a day.
        """
        fakes = list(self.running.values())
        self.running = {}
        await asyncio.gather(*(_stop_running(running, grace_seconds) for running in fakes), return_exceptions=True)


async def _stop_running(running: RunningFake, grace_seconds: float) -> None:
    runner = running.runner
    for site in list(runner.sites):
        await site.stop()
    server = runner.server
    if server is not None:
        server.pre_shutdown()
        await server.shutdown(grace_seconds)
    await running.stop()


def _port_for(kind: str, port_base: int | None) -> int:
    if not port_base:
        return 0
    return port_base + PORT_OFFSETS.get(kind, 0)


def _start_error(kind: str, host: str, port: int, exc: OSError) -> FakeStartError:
    where = f"{host}:{port}" if port else host
    if exc.errno == errno.EADDRINUSE:
        return FakeStartError(
            f"Cannot start the {kind} fake: port {port} on {host} is already in use; "
            "choose another --port-base or omit it to use free ports."
        )
    if exc.errno == errno.EACCES:
        return FakeStartError(f"Cannot start the {kind} fake: no permission to listen on {where}.")
    reason = exc.strerror or str(exc)
    return FakeStartError(f"Cannot start the {kind} fake on {where}: {reason}.")


async def start_fakes(
    kinds: Iterable[str],
    host: str = "127.0.0.1",
    port_base: int | None = None,
    faults_file: FaultsFile | None = None,
    tls: TlsMaterial | None = None,
    *,
    types: Mapping[str, FakeFactory] | None = None,
    seed: SeedDocument | None = None,
) -> FakeCluster:
    """Start the fakes for ``kinds`` on the running loop and return them once all listen.

    Each fake gets its own clock, its provider's rules from ``faults_file`` and its keys from ``seed`` (keys made
    outside keyorch, held from the start). On any failure the fakes already started are stopped again before the
    error propagates.
    """
    from keyorch.fakes.base import start_fake
    from keyorch.fakes.seed import SeedError

    factories = FAKE_TYPES if types is None else types
    chosen = parse_kinds(kinds, allowed=factories)
    ssl_context = tls.server_context() if tls is not None else None
    cluster = FakeCluster(tls=tls)
    try:
        for kind in chosen:
            fake = factories[kind]()
            port = _port_for(kind, port_base)
            try:
                running = cluster.running[kind] = await start_fake(fake, host, port, ssl_context=ssl_context)
            except OSError as exc:
                raise _start_error(kind, host, port, exc) from exc
            running.url = _reachable_url(running.url, host)
            await _prepare(kind, running, tls)
            if seed is not None and seed.providers.get(kind):
                try:
                    fake.seed(seed.providers[kind], f"providers.{kind}")
                except SeedError as exc:
                    raise FakeStartError(f"Cannot seed the {kind} fake: {exc}.") from exc
            # Faults apply from the first client request on; the preparation is not logged.
            if faults_file is not None:
                fake.faults.configure(faults_file.for_provider(kind))
            fake.log.clear()
    except BaseException:
        await cluster.stop()
        raise
    return cluster


def _reachable_url(url: str, host: str) -> str:
    """A wildcard listen address is no address to connect to: advertise loopback instead."""
    loopback = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(host)  # noqa: S104
    if loopback is None:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{loopback}:{rest.rsplit(':', 1)[1]}"


async def _prepare(kind: str, running: RunningFake, tls: TlsMaterial | None) -> None:
    """Create what the connect options name but a fresh fake lacks: Google's key ring."""
    if kind != "google_kms":
        return
    import aiohttp

    token, _ = running.fake.tokens.issue("ya29")
    project = _google_project(running)
    url = f"{running.url}/v1/projects/{project}/locations/{GOOGLE_LOCATION}/keyRings"
    ssl_context = tls.client_context() if tls is not None else None
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.post(
            url,
            params={"keyRingId": GOOGLE_KEY_RING},
            json={},
            headers={"Authorization": f"Bearer {token}"},
            ssl=ssl_context if ssl_context is not None else True,
        ) as response,
    ):
        if response.status not in (200, 409):
            detail = (await response.text())[:300]
            raise FakeStartError(
                f"Cannot prepare the google_kms fake: creating key ring {GOOGLE_KEY_RING!r} answered "
                f"HTTP {response.status} ({' '.join(detail.split())})."
            )


def _google_project(running: RunningFake) -> str:
    project = running.fake.credentials(running.url).get("project_id")
    return project if isinstance(project, str) and project else GOOGLE_PROJECT


def _ibm_instance_id(running: RunningFake) -> str:
    doc = running.fake.credentials(running.url)
    for name in ("instance_id", "instance", "bluemix_instance"):
        value = doc.get(name)
        if isinstance(value, str) and value:
            return value
    value = getattr(running.fake, "instance_id", None)
    if isinstance(value, str) and value:
        return value
    raise ValueError("The ibm_key_protect fake exposes no instance id (credentials 'instance_id').")


def connect_args(
    kind: str,
    running: RunningFake,
    credentials_path: Path | str,
    ca_path: Path | str | None = None,
) -> list[str]:
    """The ``keyorch keystore connect --vault V --name N …`` options that target ``running``.

    An ``https`` fake needs ``ca_path`` (the CA that signed its certificate); a plain ``http``
    fake gets ``--allow-insecure-http``.
    """
    url = running.url
    args = ["--type", kind, "--endpoint", url]
    if kind == "aws_kms":
        args += ["--region", AWS_REGION]
    elif kind == "google_kms":
        args += ["--project", _google_project(running), "--location", GOOGLE_LOCATION, "--key-ring", GOOGLE_KEY_RING]
    elif kind == "ibm_key_protect":
        args += ["--region", IBM_REGION, "--instance-id", _ibm_instance_id(running)]
    elif kind != "azure_key_vault":
        raise UnknownProviderError(f"Unknown provider {kind!r}; allowed values are: {', '.join(FAKE_KINDS)}.")
    args += ["--credentials-file", str(credentials_path)]
    if url.startswith("https://"):
        if ca_path is None:
            raise ValueError(f"The {kind} fake serves HTTPS; give the CA certificate path for --ca-file.")
        args += ["--ca-file", str(ca_path)]
    else:
        args.append("--allow-insecure-http")
    # The fakes enforce no request quotas: do not pace requests by the real providers' ones.
    args += ["--no-provider-quotas", "--rate-per-second", "0"]
    return args


def write_private_json(path: Path, doc: Mapping[str, Any]) -> Path:
    """Write ``doc`` as JSON readable by the owner only (mode 0600, also when the file existed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        json.dump(doc, handle, indent=2)
        handle.write("\n")
    return path


def write_credentials(cluster: FakeCluster, directory: Path) -> dict[str, Path]:
    """Write each fake's credentials document to ``directory/<kind>.json`` (mode 0600)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    return {
        kind: write_private_json(directory / f"{kind}.json", running.fake.credentials(running.url))
        for kind, running in cluster.running.items()
    }


def describe(
    cluster: FakeCluster,
    credentials_files: Mapping[str, Path],
    ca_path: Path | None = None,
) -> dict[str, dict[str, Any]]:
    """The document ``keyorch fakes serve`` prints: per keystore type its endpoint, connect options, admin URL."""
    return {
        kind: {
            "endpoint": running.url,
            "connect": connect_args(kind, running, credentials_files[kind], ca_path),
            "admin": running.url + "/_fake/",
        }
        for kind, running in cluster.running.items()
    }
