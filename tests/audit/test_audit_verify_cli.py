"""`keyorch audit verify` as a real subprocess on a SQLite file: a real history verifies; a record
edited or deleted with sqlite3 is named; a change whose audit record cannot be written is refused."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from keyorch.crypto import generate_master_key


class Keyorch:
    def __init__(self, db: Path, master_key: str | None) -> None:
        self.db = db
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(db.parent), "KEYORCH_USER": "alice"}
        if master_key:
            self.env["KEYORCH_MASTER_KEY"] = master_key

    def __call__(self, *args: str, db: Path | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "keyorch", "--db", f"sqlite:///{db or self.db}", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    def ok(self, *args: str) -> str:
        proc = self(*args)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout


@pytest.fixture(scope="module", params=["master_key", "stored_key"])
def history(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Keyorch:
    """Six audit records written by the CLI: four changes and two refusals."""
    workdir = tmp_path_factory.mktemp("audit")
    k = Keyorch(workdir / "k.db", generate_master_key() if request.param == "master_key" else None)
    k.ok("init")
    k.ok("vault", "create", "payments")
    k.ok("keystore", "connect", "--vault", "payments", "--name", "aws", "--type", "aws_kms", "--region", "us-east-1",
         "--credentials-from-environment")  # fmt: skip
    k.ok("template", "create", "--vault", "payments", "--name", "t", "--keystore", "aws", "--naming-scheme",
         "T-{label}", "--state", "active")  # fmt: skip
    k.ok("key", "create", "--template", "t", "--label", "k1")
    assert k("key", "destroy", "k1").returncode == 3
    assert k("vault", "delete", "no-such-vault").returncode == 2
    assert json.loads(k.ok("--output", "json", "audit", "list"))[-1]["seq"] == 6
    return k


def tampered(k: Keyorch, tmp_path: Path, statement: str) -> Path:
    copy = tmp_path / "tampered.db"
    shutil.copyfile(k.db, copy)
    with sqlite3.connect(copy) as conn:
        conn.execute(statement)
    return copy


def test_a_real_history_verifies(history: Keyorch) -> None:
    out = history.ok("audit", "verify")
    assert out.startswith("6 records verified"), out
    assert "--output" not in out


def test_json_output(history: Keyorch) -> None:
    doc = json.loads(history.ok("--output", "json", "audit", "verify"))
    assert doc["records_verified"] == 6 and doc["last_seq"] == 6


def test_an_edited_record_fails(history: Keyorch, tmp_path: Path) -> None:
    copy = tampered(history, tmp_path, "UPDATE audit_log SET user = 'mallory' WHERE seq = 4")
    proc = history("audit", "verify", db=copy)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.startswith("error: audit record 4 fails verification: it was edited"), proc.stderr
    assert not proc.stdout


def test_a_deleted_record_fails(history: Keyorch, tmp_path: Path) -> None:
    copy = tampered(history, tmp_path, "DELETE FROM audit_log WHERE seq = 3")
    proc = history("audit", "verify", db=copy)
    assert proc.returncode == 3, proc.stderr
    assert "audit record 4 fails verification" in proc.stderr and "were deleted" in proc.stderr, proc.stderr


def test_a_truncated_tail_fails(history: Keyorch, tmp_path: Path) -> None:
    copy = tampered(history, tmp_path, "DELETE FROM audit_log WHERE seq = 6")
    proc = history("audit", "verify", db=copy)
    assert proc.returncode == 3 and "audit records after seq 5 were deleted" in proc.stderr, proc.stderr


def test_a_change_whose_audit_record_cannot_be_written_is_refused(history: Keyorch, tmp_path: Path) -> None:
    copy = tampered(
        history,
        tmp_path,
        "CREATE TRIGGER audit_full BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit disk full'); END",
    )
    proc = history("vault", "create", "refunds", db=copy)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip() == (
        "error: the audit record of this vault.create could not be written (audit disk full), "
        "so it was refused and nothing was changed"
    )
    with sqlite3.connect(copy) as conn:
        assert conn.execute("SELECT count(*) FROM vaults WHERE name = 'refunds'").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone() == (6,)
    assert history("audit", "verify", db=copy).returncode == 0
