"""What keyorch runs with in the Deployment: the image's ENV, the ConfigMap's file and the Secret's variables,
put together as Kubernetes does, and asked of a real ``keyorch config show`` process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.deploy.dockerfile import DOCKERFILE, ROOT, parse

from keyorch.crypto import generate_master_key

KUBE = ROOT / "deploy" / "kubernetes"
POSTGRES_URL = "postgresql://keyorch@db.example.internal:5432/keyorch"


def manifests() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBE.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            found[doc["kind"]] = doc
    return found


def image_env() -> dict[str, str]:
    """The runtime stage's ENV, as the container starts with it ($PATH as this machine's)."""
    runtime = parse(DOCKERFILE.read_text(encoding="utf-8"))[-1]
    return {k: v.replace("$PATH", os.environ.get("PATH", "")) for k, v in runtime.env().items() if k != "PATH"}


def commented_postgres_env() -> list[dict[str, Any]]:
    """deployment.yaml's commented-out 'PostgreSQL instead of SQLite' env entry, uncommented."""
    text = (KUBE / "deployment.yaml").read_text(encoding="utf-8")
    block = re.search(r"# PostgreSQL instead of SQLite:\n((?:\s*#.*\n)+)", text)
    assert block, "deployment.yaml documents the PostgreSQL env entry"
    lines = [re.sub(r"^(\s*)# ?", r"\1", line) for line in block.group(1).splitlines()]
    entries = yaml.safe_load("\n".join(lines))
    assert isinstance(entries, list)
    return entries


def secret_env(entries: list[dict[str, Any]], secret: dict[str, str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in entries:
        ref = entry["valueFrom"]["secretKeyRef"]
        env[entry["name"]] = secret[ref["key"]]
    return env


def effective(tmp_path: Path, configmap_file: str, extra_env: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """``keyorch config show`` as the Deployment's container runs it."""
    kube = manifests()
    (container,) = kube["Deployment"]["spec"]["template"]["spec"]["containers"]
    config = tmp_path / "keyorch.yaml"
    config.write_text(configmap_file, encoding="utf-8")
    secret = dict(kube["Secret"]["stringData"], **{"master-key": generate_master_key()})
    secret["database-url"] = "postgresql://keyorch:s3cr3t-pw@db-from-secret.internal:5432/keyorch"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    env.update(image_env())
    env.update(secret_env([*container["env"], *(extra_env or [])], secret))
    args = list(container["args"])
    assert args[:2] == ["--config", "/etc/keyorch/keyorch.yaml"]
    command = [sys.executable, "-m", "keyorch", "--config", str(config), "--output", "json", "config", "show"]
    run = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert "s3cr3t-pw" not in run.stdout and secret["master-key"] not in run.stdout
    doc = json.loads(run.stdout)
    assert isinstance(doc, dict)
    return doc


def leaves(doc: dict[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    found: dict[tuple[str, ...], Any] = {}
    for name, value in doc.items():
        if isinstance(value, dict) and name != "roles":
            found |= leaves(value, (*prefix, name))
        else:
            found[(*prefix, name)] = value
    return found


@pytest.fixture
def configmap() -> dict[str, Any]:
    data = yaml.safe_load(manifests()["ConfigMap"]["data"]["keyorch.yaml"])
    assert isinstance(data, dict)
    return data


def test_every_setting_the_configmap_gives_is_what_the_process_gets(tmp_path: Path, configmap: dict[str, Any]) -> None:
    doc = effective(tmp_path, manifests()["ConfigMap"]["data"]["keyorch.yaml"])
    got = leaves(doc)
    assert not configmap["database_url"].startswith("postgresql")  # compared as is: no user-info to mask
    for path, value in leaves(configmap).items():
        assert got[path] == value, f"{'.'.join(path)}: the ConfigMap says {value!r}, keyorch runs with {got[path]!r}"
    assert doc["master_key"] == "***"
    assert [t["user"] for t in doc["api"]["tokens"]] == ["alice"]


def test_switching_to_postgresql_in_the_configmap_is_what_the_process_gets(
    tmp_path: Path, configmap: dict[str, Any]
) -> None:
    changed = dict(configmap, database_url=POSTGRES_URL, log={**configmap["log"], "format": "console"})
    doc = effective(tmp_path, yaml.safe_dump(changed))
    assert doc["database_url"] == "postgresql://***@db.example.internal:5432/keyorch"  # user-info never shown
    assert doc["log"]["format"] == "console"


def test_the_database_url_from_the_secret_wins_and_is_shown_without_its_password(
    tmp_path: Path, configmap: dict[str, Any]
) -> None:
    doc = effective(tmp_path, yaml.safe_dump(configmap), commented_postgres_env())
    assert doc["database_url"] == "postgresql://***@db-from-secret.internal:5432/keyorch"
