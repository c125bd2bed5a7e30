"""Issue 13: the PostgreSQL variant of the Kubernetes manifests (deploy/kubernetes-postgresql, a kustomize
overlay of the SQLite base deploy/kubernetes): 3 replicas, RollingUpdate, a PodDisruptionBudget keeping
2, the database URL from the Secret (it beats the ConfigMap's SQLite URL), no SQLite volume or claim,
readiness on /readyz (which reflects the database)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from keyorch.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
OVERLAY = ROOT / "deploy" / "kubernetes-postgresql"


def _load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((OVERLAY / name).read_text(encoding="utf-8"))
    return doc


def test_the_overlay_files_say_what_the_variant_is() -> None:
    kustomization = _load("kustomization.yaml")
    assert "../kubernetes" in kustomization["resources"] and "pdb.yaml" in kustomization["resources"]
    patch = _load("deployment-patch.yaml")
    assert patch["spec"]["replicas"] == 3 and patch["spec"]["strategy"]["type"] == "RollingUpdate"
    (container,) = patch["spec"]["template"]["spec"]["containers"]
    (env,) = container["env"]
    assert env["name"] == "KEYORCH_DATABASE_URL"
    assert env["valueFrom"]["secretKeyRef"] == {"name": "keyorch-secrets", "key": "database-url"}
    pdb = _load("pdb.yaml")
    assert pdb["kind"] == "PodDisruptionBudget" and pdb["spec"]["minAvailable"] == 2


def _rendered() -> dict[str, dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the overlay is checked file by file only")
    out = subprocess.run(
        [kubectl, "kustomize", str(OVERLAY)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return {doc["kind"]: doc for doc in yaml.safe_load_all(out) if doc}


def test_rendered_with_kustomize_it_is_three_replicas_on_postgresql(tmp_path: Path) -> None:
    docs = _rendered()
    assert "PersistentVolumeClaim" not in docs  # no SQLite file to share
    deployment = docs["Deployment"]
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1},
    }
    pod = deployment["spec"]["template"]["spec"]
    assert "data" not in {v["name"] for v in pod["volumes"]}
    (container,) = pod["containers"]
    assert "/var/lib/keyorch" not in {m["mountPath"] for m in container["volumeMounts"]}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    selector = docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    # what the process gets: the Secret's URL (env) over the ConfigMap's SQLite URL (file)
    config = tmp_path / "keyorch.yaml"
    config.write_text(docs["ConfigMap"]["data"]["keyorch.yaml"], encoding="utf-8")
    env_names = {e["name"] for e in container["env"]}
    assert "KEYORCH_DATABASE_URL" in env_names
    url = "postgresql://keyorch:pw@db.example:5432/keyorch"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KEYORCH_DATABASE_URL", url)
        assert load_settings(str(config)).database_url == url
