"""Run `python -m keyorch` as a real subprocess against a real SQLite file.

Every call gets a clean environment: PATH, a private HOME, KEYORCH_MASTER_KEY (a fresh key per
database, unless a call drops it) and KEYORCH_USER (per call). Every call is checked for the
promise "nothing a user can type produces a traceback".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from keyorch.crypto import generate_master_key

CALL_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"keyorch {' '.join(self.args)!r} -> {self.code}\nstdout: {self.out[:2000]}\nstderr: {self.err[:2000]}"

    def json(self) -> Any:
        """stdout parsed as exactly one JSON document (json.loads refuses trailing data)."""
        assert self.out.strip(), f"no JSON on stdout:\n{self}"
        try:
            return json.loads(self.out)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"stdout is not exactly one JSON document ({exc}):\n{self}") from None


@dataclass
class Cli:
    """One database, one master key; ``cli(...)`` runs ``keyorch --db URL ARGS…``."""

    workdir: Path
    db_path: Path
    master_key: str = field(default_factory=generate_master_key)
    default_user: str = "alice"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.db_path}"

    def env(
        self, user: str | None, extra_env: Mapping[str, str] | None = None, master_key: bool = True
    ) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.workdir),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
        }
        if master_key:
            env["KEYORCH_MASTER_KEY"] = self.master_key
        if user is not None:
            env["KEYORCH_USER"] = user
        env.update(extra_env or {})
        return env

    def __call__(
        self,
        *args: str,
        user: str | None = "",
        env: Mapping[str, str] | None = None,
        master_key: bool = True,
        db: bool = True,
        output_json: bool = True,
    ) -> Result:
        """Run keyorch; ``user=""`` means the default user, ``None`` means no KEYORCH_USER at all."""
        prefix: list[str] = ["--db", self.db_url] if db else []
        if output_json:
            prefix += ["--output", "json"]
        argv = (*prefix, *args)
        proc = subprocess.run(
            [sys.executable, "-m", "keyorch", *argv],
            cwd=self.workdir,
            env=self.env(self.default_user if user == "" else user, env, master_key),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=CALL_TIMEOUT_SECONDS,
            check=False,
        )
        result = Result(tuple(argv), proc.returncode, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stdout + proc.stderr, f"traceback:\n{result}"
        return result

    def ok(self, *args: str, **kwargs: Any) -> Any:
        """Run with --output json, expect exit 0, return the parsed document."""
        result = self(*args, **kwargs)
        assert result.code == 0, str(result)
        return result.json()

    def fails(self, code: int, *args: str, **kwargs: Any) -> Result:
        """Run, expect exit ``code`` with one error on stderr and nothing on stdout."""
        result = self(*args, **kwargs)
        assert result.code == code, str(result)
        assert result.err.strip(), f"no error message on stderr:\n{result}"
        assert not result.out.strip(), f"a refused command printed on stdout:\n{result}"
        return result

    def many(self, calls: Iterable[Sequence[str]], **kwargs: Any) -> list[Result]:
        """Run independent calls concurrently (each call is mostly Python start-up); results in order."""
        return self.many_with([(argv, kwargs) for argv in calls])

    def many_with(self, calls: Iterable[tuple[Sequence[str], Mapping[str, Any]]]) -> list[Result]:
        """Like ``many``, with options (env, master_key, db, user) per call."""
        with ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 2))) as pool:
            return list(pool.map(lambda call: self(*call[0], **call[1]), calls))

    def audit(self, object_id: str | None = None) -> list[dict[str, Any]]:
        args = ["audit", "list"] + (["--object", object_id] if object_id else [])
        records: list[dict[str, Any]] = self.ok(*args)
        return records


@dataclass
class World:
    """An initialized database with a vault, two keystores and a template over both."""

    cli: Cli
    vault: dict[str, Any]
    keystores: list[dict[str, Any]]
    template: dict[str, Any]

    def connect_args(self, name: str, kind: str = "aws_kms") -> list[str]:
        return connect_args(self.vault["name"], name, kind)

    def new_key(self, label: str, state: str = "active") -> dict[str, Any]:
        key: dict[str, Any] = self.cli.ok(
            "key", "create", "--template", self.template["id"], "--label", label, "--state", state
        )
        return key


def make_cli(directory: Path) -> Cli:
    directory.mkdir(parents=True, exist_ok=True)
    return Cli(workdir=directory, db_path=directory / "k.db")


def connect_args(vault: str, name: str, kind: str = "aws_kms") -> list[str]:
    per_type = {
        "aws_kms": ["--region", "us-east-1"],
        "azure_key_vault": ["--endpoint", "https://kv-test.vault.azure.net"],
        "google_kms": ["--project", "my-project-1", "--location", "global", "--key-ring", "ring"],
        "ibm_key_protect": ["--region", "us-south", "--instance-id", "0a1b2c3d-inst"],
    }
    return ["keystore", "connect", "--vault", vault, "--name", name, "--type", kind, *per_type[kind]]


def build_world(cli: Cli, *, dual_auth: bool = False) -> World:
    assert cli("init").code == 0
    vault = cli.ok("vault", "create", "v-dual" if dual_auth else "v-main", *(["--dual-auth"] if dual_auth else []))
    stores = [
        cli.ok(*connect_args(vault["name"], name, kind), "--credentials-from-environment")
        for name, kind in (("ks-aws", "aws_kms"), ("ks-ibm", "ibm_key_protect"))
    ]
    template = cli.ok(
        "template",
        "create",
        "--vault",
        vault["name"],
        "--name",
        "tmpl",
        *[arg for ks in stores for arg in ("--keystore", ks["name"])],
        "--naming-scheme",
        "T-{label}",
        "--state",
        "active",
    )
    return World(cli=cli, vault=vault, keystores=stores, template=template)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """A fresh, not yet initialized database of its own."""
    return make_cli(tmp_path)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """One initialized database shared by the tests (each test uses its own names and labels)."""
    return build_world(make_cli(tmp_path_factory.mktemp("world")))


@pytest.fixture(scope="session")
def dual_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """A shared database whose vault enables dual authorization."""
    return build_world(make_cli(tmp_path_factory.mktemp("dual")), dual_auth=True)
