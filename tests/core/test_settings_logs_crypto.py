"""Settings sources and their errors, the log renderers, and credential encryption."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from keyorch.crypto import MasterKey, generate_master_key
from keyorch.domain.errors import ConfigurationError
from keyorch.logs import configure_logging, get_logger
from keyorch.settings import load_settings


def test_defaults_file_env_and_flags_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KEYORCH_DATABASE_URL", "KEYORCH_RECONCILE__WORKERS", "KEYORCH_USER"):
        monkeypatch.delenv(name, raising=False)
    assert load_settings().database_url == "sqlite:///keyorch.db"
    config = tmp_path / "keyorch.yaml"
    config.write_text("database_url: sqlite:///from-file.db\nreconcile:\n  workers: 3\n  resync_interval_seconds: 60\n")
    s = load_settings(str(config))
    assert (s.database_url, s.reconcile.workers, s.reconcile.resync_interval_seconds) == (
        "sqlite:///from-file.db",
        3,
        60,
    )
    monkeypatch.setenv("KEYORCH_RECONCILE__WORKERS", "5")
    monkeypatch.setenv("KEYORCH_DATABASE_URL", "sqlite:///from-env.db")
    s = load_settings(str(config))
    assert (s.database_url, s.reconcile.workers) == ("sqlite:///from-env.db", 5)
    s = load_settings(str(config), database_url="postgresql://db/keyorch")
    assert s.database_url == "postgresql://db/keyorch"


def test_bad_settings_name_field_and_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYORCH_RECONCILE__WORKERS", "many")
    with pytest.raises(ConfigurationError, match=r"reconcile.workers \(env KEYORCH_RECONCILE__WORKERS\)"):
        load_settings()
    monkeypatch.delenv("KEYORCH_RECONCILE__WORKERS")
    bad = tmp_path / "bad.yaml"
    bad.write_text("reconcile: [unclosed\n")
    with pytest.raises(ConfigurationError, match="not valid YAML at line"):
        load_settings(str(bad))
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("databse_url: x\n")
    with pytest.raises(ConfigurationError, match="databse_url"):
        load_settings(str(unknown))
    with pytest.raises(ConfigurationError, match="cannot be read"):
        load_settings(str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigurationError, match="database_url"):
        load_settings(database_url="mysql://x")


def test_master_key_from_env_or_file(tmp_path: Path) -> None:
    key = generate_master_key()
    assert load_settings(master_key=key).load_master_key() is not None
    path = tmp_path / "mk"
    path.write_text(key + "\n")
    assert load_settings(master_key_file=str(path)).load_master_key() is not None
    with pytest.raises(ConfigurationError, match="decodes to 3 bytes"):
        load_settings(master_key="YWJj").load_master_key()
    with pytest.raises(ConfigurationError, match="not valid base64"):
        load_settings(master_key="!!!").load_master_key()
    assert "hidden" in repr(MasterKey.from_base64(key))
    assert key not in repr(load_settings(master_key=key))


def test_json_logs_when_not_a_tty_and_secrets_masked() -> None:
    stream = io.StringIO()
    configure_logging("auto", "info", stream=stream)
    get_logger(key_id="k1", keystore="aws").info("reconciled", client_secret="s3cr3t", reconcile_id="r1")
    get_logger().debug("hidden below info")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert doc["key_id"] == "k1" and doc["keystore"] == "aws" and doc["reconcile_id"] == "r1"
    assert doc["client_secret"] == "<hidden>" and "s3cr3t" not in lines[0]


def test_console_logs_when_asked() -> None:
    stream = io.StringIO()
    configure_logging("console", "debug", stream=stream)
    get_logger(key_id="k1").debug("hello")
    assert "hello" in stream.getvalue() and "key_id" in stream.getvalue()
    configure_logging("json", "info")
