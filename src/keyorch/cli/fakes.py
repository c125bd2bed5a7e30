"""`keyorch fakes …`: run the bundled fake provider services."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import yaml
from pydantic import ValidationError
from pydantic_core import InitErrorDetails

from keyorch.fakes.faults import Fault, FaultsFile
from keyorch.fakes.registry import (
    FAKE_KINDS,
    FakeStartError,
    FakeUnavailableError,
    UnknownProviderError,
    describe,
    parse_kinds,
    start_fakes,
    write_credentials,
)
from keyorch.fakes.seed import SeedDocument
from keyorch.fakes.seed import error_sentence as seed_error_sentence

if TYPE_CHECKING:
    from keyorch.fakes.tls import TlsMaterial

MAX_FAULTS_FILE_BYTES = 1024 * 1024
MAX_SEED_FILE_BYTES = 16 * 1024 * 1024


class ServeError(click.ClickException):
    """A one-sentence error on stderr, exit code 2 (bad input to the command)."""

    exit_code = 2


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def _validation_sentence(source: str, exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    first = errors[0]
    message = str(first["msg"]).removeprefix("Value error, ").rstrip(".")
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return _one_line(f"Invalid faults file {source}: field {_field_path(first['loc'])}: {message}{more}.")


def _parse_problem(exc: Exception) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return _one_line(f"{exc.problem or exc.context} at line {mark.line + 1}, column {mark.column + 1}")
    text = str(exc).strip()
    return _one_line(text.splitlines()[0] if text else type(exc).__name__)


def _relocated(exc: ValidationError, where: tuple[int | str, ...]) -> list[InitErrorDetails]:
    details: list[InitErrorDetails] = []
    for error in exc.errors(include_url=False):
        detail = InitErrorDetails(type=error["type"], loc=(*where, *error["loc"]), input=error["input"])
        if "ctx" in error:
            detail["ctx"] = error["ctx"]
        details.append(detail)
    return details


def _check_fault_lists(doc: dict[Any, Any]) -> None:
    """Validate each listed fault on its own, so an error names its exact position."""
    providers = doc.get("providers")
    if not isinstance(providers, dict):
        return
    for name, rules in providers.items():
        for index, rule in enumerate(rules if isinstance(rules, list) else []):
            for key in ("sequence", "faults"):
                items = rule.get(key) if isinstance(rule, dict) else None
                for position, item in enumerate(items if isinstance(items, list) else []):
                    try:
                        Fault.parse(item)
                    except ValidationError as exc:
                        where = ("providers", name, index, key, position)
                        raise ValidationError.from_exception_data("FaultsFile", _relocated(exc, where)) from None


def _read_document(path: Path, what: str, limit: int) -> Any:
    """A YAML or JSON file's document (``.json``: JSON, else YAML); any problem becomes a one-sentence ServeError."""
    source = str(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as exc:
        raise ServeError(f"Cannot read {what} {source}: {exc.strerror or exc}.") from None
    if len(raw) > limit:
        raise ServeError(f"{what.capitalize()} {source} is larger than {limit} bytes.")
    try:
        text = raw.decode("utf-8")
        doc: Any = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
        raise ServeError(f"{what.capitalize()} {source} is not valid {kind}: {_parse_problem(exc)}.") from None
    return {} if doc is None else doc


def load_faults_file(path: Path) -> FaultsFile:
    """Read a faults file (YAML or JSON); any problem becomes a one-sentence ServeError."""
    source = str(path)
    doc = _read_document(path, "faults file", MAX_FAULTS_FILE_BYTES)
    if not isinstance(doc, dict):
        raise ServeError(f"Invalid faults file {source}: the top level must be a mapping with 'seed' and 'providers'.")
    try:
        _check_fault_lists(doc)
        faults = FaultsFile.model_validate(doc)
    except ValidationError as exc:
        raise ServeError(_validation_sentence(source, exc)) from None
    unknown = sorted(set(faults.providers) - set(FAKE_KINDS))
    if unknown:
        raise ServeError(
            f"Invalid faults file {source}: field providers.{unknown[0]}: unknown provider; "
            f"allowed values are: {', '.join(FAKE_KINDS)}."
        )
    return faults


def load_seed_file(path: Path, kinds: list[str]) -> SeedDocument:
    """Read a seed file (YAML or JSON: keys made outside keyorch, per keystore type; docs/migrating-from-uko.md);
    any problem becomes a one-sentence ServeError naming the field."""
    source = str(path)
    doc = _read_document(path, "seed file", MAX_SEED_FILE_BYTES)
    if not isinstance(doc, dict):
        raise ServeError(f"Invalid seed file {source}: the top level must be a mapping with 'providers'.")
    try:
        seed = SeedDocument.model_validate(doc)
    except ValidationError as exc:
        raise ServeError(f"Invalid seed file {source}: {seed_error_sentence(exc)}.") from None
    for kind in seed.providers:
        if kind not in FAKE_KINDS:
            raise ServeError(
                f"Invalid seed file {source}: field providers.{kind}: unknown provider; "
                f"allowed values are: {', '.join(FAKE_KINDS)}."
            )
        if kind not in kinds and seed.providers[kind]:
            raise ServeError(
                f"Invalid seed file {source}: field providers.{kind}: that fake is not served (--providers "
                f"{','.join(kinds)})."
            )
    return seed


def _event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def _log(message: str) -> None:
    click.echo(f"keyorch fakes: {message}", err=True)


async def _serve(
    kinds: list[str],
    host: str,
    port_base: int | None,
    faults: FaultsFile | None,
    tls: TlsMaterial | None,
    ca_out: Path | None,
    credentials_dir: Path,
    seed: SeedDocument | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        cluster = await start_fakes(kinds, host, port_base, faults, tls, seed=seed)
    except (FakeStartError, FakeUnavailableError, UnknownProviderError) as exc:
        raise ServeError(str(exc)) from None
    try:
        try:
            if tls is not None and ca_out is not None:
                tls.write_ca(ca_out)
            files = write_credentials(cluster, credentials_dir)
        except OSError as exc:
            where = exc.filename or credentials_dir
            raise ServeError(f"Cannot write {where}: {exc.strerror or exc}.") from None
        document = describe(cluster, files, ca_out)
        sys.stdout.write(json.dumps(document, separators=(",", ":")) + "\n")
        sys.stdout.flush()
        _log(f"serving {', '.join(kinds)}; credentials in {credentials_dir}; stop with Ctrl-C or SIGTERM.")
        await stop.wait()
        _log("stopping.")
    finally:
        await cluster.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


@click.group(name="fakes")
def fakes() -> None:
    """Local (no --server): fake AWS KMS, Azure Key Vault, Google Cloud KMS and IBM Key Protect services."""


@fakes.command(name="serve")
@click.option(
    "--providers",
    default=",".join(FAKE_KINDS),
    show_default=True,
    metavar="TYPE[,TYPE…]",
    help="Keystore types to fake, comma-separated.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port-base",
    type=click.IntRange(0, 65535 - len(FAKE_KINDS) + 1),
    default=None,
    help="AWS listens on N, Azure on N+1, Google on N+2, IBM on N+3 (default or 0: free ports).",
)
@click.option(
    "--faults",
    "faults_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Fault plan (YAML or JSON): seed, and per provider a list of sequence/rate rules.",
)
@click.option(
    "--seed",
    "seed_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Keys made outside keyorch (YAML or JSON): per provider, names, tags, states, versions, creation dates.",
)
@click.option("--tls", is_flag=True, help="Serve HTTPS with a throw-away CA generated at start.")
@click.option(
    "--ca-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="With --tls: where to write the CA certificate (default: ca.pem in the credentials directory).",
)
@click.option(
    "--credentials-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write each fake's credentials file, mode 0600 (default: a new temporary directory).",
)
def serve(
    providers: str,
    host: str,
    port_base: int | None,
    faults_path: Path | None,
    seed_path: Path | None,
    tls: bool,
    ca_out: Path | None,
    credentials_dir: Path | None,
) -> None:
    """Run the fakes, one port each, until SIGINT or SIGTERM.

    Once every fake accepts connections, prints one JSON line on stdout: for each keystore
    type its "endpoint", the "connect" options for `keyorch keystore connect --vault V --name N`,
    and its "admin" URL (faults, requests, clock, state, reset, seed, credentials, tokens).
    """
    try:
        kinds = parse_kinds(providers.split(","))
    except UnknownProviderError as exc:
        raise ServeError(f"Invalid value for --providers: {exc}") from None
    if ca_out is not None and not tls:
        raise ServeError("--ca-out is only meaningful with --tls.")
    faults = load_faults_file(faults_path) if faults_path is not None else None
    seed = load_seed_file(seed_path, kinds) if seed_path is not None else None

    made_dir = credentials_dir is None
    directory = Path(tempfile.mkdtemp(prefix="keyorch-fakes-")) if credentials_dir is None else credentials_dir
    material: TlsMaterial | None = None
    if tls:
        from keyorch.fakes.tls import generate_tls, server_names

        material = generate_tls(server_names(host))
    if material is not None and ca_out is None:
        ca_out = directory / "ca.pem"
    try:
        with asyncio.Runner(loop_factory=_event_loop_factory()) as runner:
            runner.run(_serve(kinds, host, port_base, faults, material, ca_out, directory, seed))
    finally:
        if made_dir:
            with contextlib.suppress(OSError):
                shutil.rmtree(directory)
