"""Issue 12: the master key, as an operator meets it, on the real CLI (a subprocess) and a real SQLite file.

A wrong key is refused before anything is written; a key file is written 0600 and never overwritten;
`init` records the key and says where it must be kept; `master-key rotate` re-encrypts credentials and
continues the audit chain; an unknown id is bad input whatever the audit state; state files are 0600.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from keyorch.crypto import MasterKey, generate_master_key

if TYPE_CHECKING:
    from conftest import Cli


def key_file(cli: Cli, name: str, key: str | None = None) -> Path:
    path = cli.workdir / name
    path.write_text((key or generate_master_key()) + "\n", encoding="ascii")
    path.chmod(0o600)
    return path


def with_key(path: Path) -> dict[str, object]:
    return {"master_key": False, "env": {"KEYORCH_MASTER_KEY_FILE": str(path)}}


def audit_count(cli: Cli) -> int:
    with sqlite3.connect(cli.db_path) as conn:
        return int(conn.execute("SELECT count(*) FROM audit_log").fetchone()[0])


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_wrong_master_key_is_refused_before_anything_is_written(cli: Cli) -> None:
    right, wrong = key_file(cli, "right.key"), key_file(cli, "wrong.key")
    cli.ok("init", **with_key(right))
    cli.ok("vault", "create", "v1", **with_key(right))
    before = audit_count(cli)
    for args in (["vault", "create", "v2"], ["vault", "list"], ["audit", "verify"]):
        refused = cli.fails(2, *args, **with_key(wrong))
        assert refused.err.startswith("error: the configured master key") and refused.err.count("\n") == 1, refused
        assert "is not this database's" in refused.err and "nothing was done" in refused.err, refused
    assert audit_count(cli) == before
    assert [v["name"] for v in cli.ok("vault", "list", **with_key(right))] == ["v1"]
    assert cli.ok("audit", "verify", **with_key(right))["records_verified"] == before


def test_a_database_sealed_before_check_values_records_one_with_the_key_that_verifies_its_head(cli: Cli) -> None:
    right, wrong = key_file(cli, "right.key"), key_file(cli, "wrong.key")
    cli.ok("init", **with_key(right))
    cli.ok("vault", "create", "v1", **with_key(right))
    with sqlite3.connect(cli.db_path) as conn:  # as a database of schema 0004 was: no check value
        conn.execute("UPDATE audit_chain SET key_check = NULL")
    refused = cli.fails(2, "vault", "create", "v2", **with_key(wrong))
    assert "does not verify the seal of the audit chain's head" in refused.err, refused
    cli.ok("vault", "create", "v2", **with_key(right))
    with sqlite3.connect(cli.db_path) as conn:
        (check,) = conn.execute("SELECT key_check FROM audit_chain").fetchone()
    assert check == MasterKey.from_file(str(right)).check_value()
    assert cli.fails(2, "vault", "list", **with_key(wrong))
    assert cli.ok("audit", "verify", **with_key(right))["records_verified"] == 2


def test_an_unknown_id_is_bad_input_whatever_the_audit_state(cli: Cli) -> None:
    key = key_file(cli, "k.key")
    cli.ok("init", **with_key(key))
    cli.ok("vault", "create", "v1", **with_key(key))
    for args in (["vault", "delete", "no-such-vault"], ["key", "activate", "no-such-key"]):
        missing = cli.fails(2, *args, master_key=False)  # the chain is sealed with a key not configured here
        assert "no-such" in missing.err and "could not be audited" in missing.err, missing
    unsealed = cli.fails(2, "vault", "create", "v2", master_key=False)
    assert "KEYORCH_MASTER_KEY_FILE" in unsealed.err, unsealed


def test_generate_writes_a_new_private_file_and_never_overwrites_one(cli: Cli) -> None:
    out = cli.workdir / "master.key"
    doc = cli.ok("master-key", "generate", "--out", str(out), db=False)
    assert doc == {"master_key_file": str(out)}
    assert mode(out) == 0o600
    key = out.read_text(encoding="ascii")
    assert MasterKey.from_base64(key) is not None and key not in json.dumps(doc)
    again = cli.fails(2, "master-key", "generate", "--out", str(out), db=False)
    assert "already exists" in again.err and "never overwritten" in again.err, again
    assert out.read_text(encoding="ascii") == key


def test_init_records_the_key_and_says_where_it_must_be_kept(cli: Cli) -> None:
    key = key_file(cli, "k.key")
    doc = cli.ok("init", **with_key(key))
    assert str(key) in doc["master_key"] and "keep that file" in doc["master_key"], doc
    with sqlite3.connect(cli.db_path) as conn:
        assert (
            conn.execute("SELECT key_check FROM audit_chain").fetchone()[0]
            == MasterKey.from_file(str(key)).check_value()
        )
    bare = cli.ok("init", master_key=False)
    assert "no master key is configured" in bare["master_key"] and "KEYORCH_MASTER_KEY_FILE" in bare["master_key"]
    readable = key_file(cli, "readable.key")
    readable.chmod(0o644)
    warned = cli("vault", "list", **with_key(readable))
    assert "can be read by other users" in warned.err, warned


def test_rotate_reencrypts_credentials_and_continues_the_chain(cli: Cli) -> None:
    old, new = key_file(cli, "old.key"), key_file(cli, "new.key")
    creds = cli.workdir / "aws.json"
    creds.write_text(json.dumps({"access_key_id": "AKIAEXAMPLE", "secret_access_key": "s3cr3t"}))
    cli.ok("init", **with_key(old))
    cli.ok("vault", "create", "v1", **with_key(old))
    ks = cli.ok(*_connect("v1", "aws"), "--credentials-file", str(creds), **with_key(old))
    before = audit_count(cli)

    rotated = cli.ok("master-key", "rotate", "--new-key-file", str(new), **with_key(old))
    assert rotated["credentials_reencrypted"] == 1 and rotated["audit_seq"] == before + 1, rotated
    with sqlite3.connect(cli.db_path) as conn:
        (blob,) = conn.execute("SELECT credentials FROM keystores WHERE id = ?", (ks["id"],)).fetchone()
    assert json.loads(MasterKey.from_file(str(new)).decrypt(blob, ks["id"]))["secret_access_key"] == "s3cr3t"

    assert cli.fails(2, "vault", "create", "v2", **with_key(old))  # the old key is no longer this database's
    cli.ok("vault", "create", "v2", **with_key(new))
    verified = cli.ok("audit", "verify", **with_key(new))  # the new key alone verifies the whole chain
    assert verified["records_verified"] == before + 2 and verified["sealed_with_master_key"] == before + 2
    records = cli.ok("audit", "list", **with_key(new))
    assert records[before]["action"] == "master_key.rotate" and "re-encrypted" in records[before]["detail"]
    same = cli.fails(2, "master-key", "rotate", "--new-key-file", str(new), **with_key(new))
    assert "current master key" in same.err, same


def test_init_creates_the_database_file_private(cli: Cli) -> None:
    """The -wal and -shm files take the database file's mode: tests/daemon/test_master_key_startup.py sees all three."""
    old = os.umask(0o022)
    try:
        cli.ok("init")
    finally:
        os.umask(old)
    assert mode(cli.db_path) == 0o600


def _connect(vault: str, name: str) -> list[str]:
    return ["keystore", "connect", "--vault", vault, "--name", name, "--type", "aws_kms", "--region", "us-east-1"]
