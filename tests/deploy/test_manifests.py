"""The Kubernetes manifests and the example configuration parse and agree with keyorch's settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.deploy.settings_names import all_setting_paths, setting_path

from keyorch.crypto import generate_master_key
from keyorch.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
EXAMPLE = ROOT / "config" / "keyorch.example.yaml"


def docs() -> dict[str, dict[str, Any]]:
    """Every manifest document by kind (one of each kind)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBE.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert isinstance(doc, dict) and doc.get("apiVersion") and doc.get("kind"), path
            if doc["kind"] != "Kustomization":
                assert doc["metadata"]["name"], path
            assert doc["kind"] not in found, f"two {doc['kind']} documents"
            found[doc["kind"]] = doc
    return found


@pytest.fixture(scope="module")
def kube() -> dict[str, dict[str, Any]]:
    return docs()


@pytest.fixture(scope="module")
def container(kube: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (only,) = kube["Deployment"]["spec"]["template"]["spec"]["containers"]
    return dict(only)


@pytest.fixture(scope="module")
def configmap_settings(kube: dict[str, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Settings:
    path = tmp_path_factory.mktemp("cm") / "keyorch.yaml"
    path.write_text(kube["ConfigMap"]["data"]["keyorch.yaml"], encoding="utf-8")
    return load_settings(str(path))


def port_of(listen: str) -> int:
    return int(listen.rpartition(":")[2])


def test_every_kind_is_there_and_kustomization_lists_the_files(kube: dict[str, dict[str, Any]]) -> None:
    assert set(kube) == {"Deployment", "Service", "ConfigMap", "Secret", "PersistentVolumeClaim", "Kustomization"}
    resources = kube["Kustomization"]["resources"]
    assert all((KUBE / name).is_file() for name in resources)
    assert "secret.example.yaml" not in resources  # an example, never applied with real-looking values


def test_ports_agree_with_the_api_listen_setting(
    kube: dict[str, dict[str, Any]], container: dict[str, Any], configmap_settings: Settings
) -> None:
    port = port_of(configmap_settings.api.listen)
    (http,) = container["ports"]
    assert http["containerPort"] == port == 8080
    args = container["args"]
    assert args[args.index("--listen") + 1] == configmap_settings.api.listen == "0.0.0.0:8080"
    (service_port,) = kube["Service"]["spec"]["ports"]
    assert service_port["targetPort"] in (http["name"], port)
    assert kube["Service"]["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    assert (
        kube["Service"]["spec"]["selector"].items()
        <= kube["Deployment"]["spec"]["template"]["metadata"]["labels"].items()
    )


def test_probes_and_graceful_shutdown(container: dict[str, Any], kube: dict[str, dict[str, Any]]) -> None:
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] in ("http", 8080)
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    grace = Settings().api.grace_period_seconds
    assert grace == 30
    termination = kube["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert termination > int(pre_stop[1]) + grace


def test_sqlite_means_one_replica_recreated_on_the_claim(
    kube: dict[str, dict[str, Any]], configmap_settings: Settings, container: dict[str, Any]
) -> None:
    spec = kube["Deployment"]["spec"]
    assert configmap_settings.database_url == "sqlite:////var/lib/keyorch/keyorch.db"
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    claim = volumes[mounts["/var/lib/keyorch"]]["persistentVolumeClaim"]["claimName"]
    assert claim == kube["PersistentVolumeClaim"]["metadata"]["name"]
    assert volumes[mounts["/etc/keyorch"]]["configMap"]["name"] == kube["ConfigMap"]["metadata"]["name"]
    assert container["args"][:2] == ["--config", "/etc/keyorch/keyorch.yaml"]
    assert spec["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_every_env_name_is_a_real_setting_and_secrets_come_from_the_secret(
    container: dict[str, Any], kube: dict[str, dict[str, Any]]
) -> None:
    env = {e["name"]: e for e in container["env"]}
    commented = re.findall(r"#\s*- name: (KEYORCH_\w+)", (KUBE / "deployment.yaml").read_text(encoding="utf-8"))
    for name in [*env, *commented]:
        assert setting_path(name) is not None, f"{name} is not a keyorch setting"
    secret = kube["Secret"]
    for name in ("KEYORCH_MASTER_KEY", "KEYORCH_API__TOKENS"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]


def test_the_configmap_with_the_secret_values_loads(
    kube: dict[str, dict[str, Any]], container: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "keyorch.yaml"
    path.write_text(kube["ConfigMap"]["data"]["keyorch.yaml"], encoding="utf-8")
    values = dict(kube["Secret"]["stringData"], **{"master-key": generate_master_key()})
    for e in container["env"]:
        monkeypatch.setenv(e["name"], values[e["valueFrom"]["secretKeyRef"]["key"]])
    settings = load_settings(str(path))
    assert settings.load_master_key() is not None
    assert [t.user for t in settings.api.tokens] == ["alice"]
    assert settings.api.listen == "0.0.0.0:8080"  # the file's api.listen survives KEYORCH_API__TOKENS


def test_the_example_configuration_loads_and_documents_every_setting() -> None:
    settings = load_settings(str(EXAMPLE))
    assert [t.user for t in settings.api.tokens] == ["alice", "carol", "ci-pipeline"]
    assert settings.api.tokens[0].roles == {"*": "vault_administrator"}
    defaults = Settings()
    for group in ("log", "reconcile"):
        assert getattr(settings, group) == getattr(defaults, group), f"{group}: the example shows the defaults"
    assert settings.api.grace_period_seconds == defaults.api.grace_period_seconds
    assert settings.api.listen == defaults.api.listen
    text = EXAMPLE.read_text(encoding="utf-8")
    mentioned = set(re.findall(r"^[ #]*([a-z_]+):", text, flags=re.MULTILINE))
    missing = {path for path in all_setting_paths() if path[-1] not in mentioned}
    assert not missing, f"settings the example does not mention: {sorted(missing)}"
    assert not re.search(r"^\s*master_key:", text, flags=re.MULTILINE)  # never a key in the file


def test_setting_path_knows_real_and_unreal_names() -> None:
    assert setting_path("KEYORCH_API__LISTEN") == ("api", "listen")
    assert setting_path("KEYORCH_DATABASE_URL") == ("database_url",)
    assert setting_path("KEYORCH_API__NOPE") is None
    assert setting_path("KEYORCH_DATABASE_URL__X") is None
    assert setting_path("OTHER") is None
