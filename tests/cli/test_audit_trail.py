"""Issue 12: the audit trail against someone who can write the database (the real CLI, a real SQLite file).

Erasing every record and re-sealing an empty head is found with the master key; a rollback (an old head
row put back after the tail was cut) is found with an anchor kept outside the database, which every change
logs and `audit anchor` prints; the clock cannot be shifted from the environment, and time never runs
backwards along the chain.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from keyorch.store.audit_keys import head_seal

if TYPE_CHECKING:
    from conftest import Cli

YEAR_SECONDS = 366 * 86_400


def anchor_logged(result: Any) -> str:
    lines = [json.loads(line) for line in result.err.splitlines() if line.startswith("{")]
    anchors = [line["anchor"] for line in lines if line.get("event") == "audit chain head"]
    assert len(anchors) == 1, result
    return str(anchors[0])


def erase_everything(db: Path) -> None:
    """What a database writer who can read the stored key can do: delete every record, re-seal an empty head."""
    with sqlite3.connect(db) as conn:
        (stored,) = conn.execute("SELECT stored_key FROM audit_chain").fetchone()
        conn.execute("DELETE FROM audit_log")
        conn.execute(
            "UPDATE audit_chain SET last_seq = 0, last_hmac = '', chain_key = 'stored_key', head_hmac = ?",
            (head_seal(bytes(stored), 0, ""),),
        )
        if "key_check" in {row[1] for row in conn.execute("PRAGMA table_info(audit_chain)")}:
            conn.execute("UPDATE audit_chain SET key_check = NULL")  # the check value too, as they can


def test_erasing_the_whole_trail_is_found_with_the_master_key(cli: Cli) -> None:
    cli.ok("init")
    cli.ok("vault", "create", "erased")
    erase_everything(cli.db_path)
    broken = cli.fails(3, "audit", "verify")
    assert "not sealed with the configured master key" in broken.err, broken
    assert cli.ok("audit", "verify", master_key=False)["records_verified"] == 0  # only the key tells


@pytest.mark.parametrize("master_key", [True, False], ids=["master_key", "stored_key"])
def test_a_rolled_back_trail_is_found_with_an_anchor(cli: Cli, tmp_path: Path, master_key: bool) -> None:
    cli.ok("init", master_key=master_key)
    cli.ok("vault", "create", "r1", master_key=master_key)
    backup = tmp_path / "backup.db"
    shutil.copyfile(cli.db_path, backup)  # an older, consistent state
    created = cli("--output", "json", "vault", "create", "r2", output_json=False, master_key=master_key)
    assert created.code == 0, created
    logged = anchor_logged(created)
    printed = cli.ok("audit", "anchor", master_key=master_key)
    assert printed == {"anchor": logged, "last_seq": 2}
    assert cli.ok("audit", "verify", "--anchor", logged, master_key=master_key)["anchor"] == logged

    shutil.copyfile(backup, cli.db_path)  # rolled back: the record of r2 and the head after it are gone
    for suffix in ("-wal", "-shm"):
        Path(f"{cli.db_path}{suffix}").unlink(missing_ok=True)
    assert cli.ok("audit", "verify", master_key=master_key)["records_verified"] == 1  # consistent on its own
    broken = cli.fails(3, "audit", "verify", "--anchor", logged, master_key=master_key)
    assert "no longer holds record 2" in broken.err, broken

    shutil.copyfile(tmp_path / "backup.db", cli.db_path)
    cli.ok("vault", "create", "other", master_key=master_key)  # a different record 2 (a rewritten tail)
    rewritten = cli.fails(3, "audit", "verify", "--anchor", logged, master_key=master_key)
    assert "is not the one anchored" in rewritten.err, rewritten


def test_an_anchor_that_is_not_seq_hmac_is_bad_input(cli: Cli) -> None:
    cli.ok("init")
    for bad in ("", "x:y", "0:" + "a" * 64, "3:" + "A" * 64, "3:abc", "-1:" + "a" * 64):
        refused = cli.fails(2, "audit", "verify", "--anchor", bad)
        assert "--anchor" in refused.err and "SEQ:HMAC" in refused.err, refused


def test_the_clock_is_not_shifted_from_the_environment(cli: Cli) -> None:
    cli.ok("init")
    cli.ok("vault", "create", "now")
    cli.ok("vault", "create", "backdated", env={"KEYORCH_CLOCK_OFFSET_SECONDS": str(-YEAR_SECONDS)})
    records = cli.audit()
    assert records[1]["at"] >= records[0]["at"], records  # ISO-8601 UTC strings order like times
    assert cli.ok("audit", "verify")["records_verified"] == 2


def test_verify_names_a_record_dated_before_its_predecessor(cli: Cli) -> None:
    """A backdated record sealed with the master key, as keyorch wrote it when the clock could be shifted."""
    from keyorch.crypto import MasterKey
    from keyorch.store.audit_chain import record_hmac
    from keyorch.store.audit_keys import chain_key_bytes

    cli.ok("init")
    cli.ok("vault", "create", "first")
    cli.ok("vault", "create", "second")
    key = chain_key_bytes(MasterKey.from_base64(cli.master_key))
    with sqlite3.connect(cli.db_path) as conn:
        conn.row_factory = sqlite3.Row
        first, second = (dict(r) for r in conn.execute("SELECT * FROM audit_log ORDER BY seq"))
    from datetime import UTC, datetime, timedelta

    def when(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)

    backdated = when(first["at"]) - timedelta(days=366)
    row = {**second, "at": backdated}
    digest = record_hmac(key, row, first["hmac"])
    with sqlite3.connect(cli.db_path) as conn:
        conn.execute(
            "UPDATE audit_log SET at = ?, hmac = ? WHERE seq = 2",
            (backdated.replace(tzinfo=None).isoformat(sep=" "), digest),
        )
        conn.execute("UPDATE audit_chain SET last_hmac = ?, head_hmac = ?", (digest, head_seal(key, 2, digest)))
    broken = cli.fails(3, "audit", "verify")
    assert "audit record 2 is dated" in broken.err and "before record 1" in broken.err, broken
