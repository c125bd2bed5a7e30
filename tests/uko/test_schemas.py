"""Self-check of the UKO SDK schemas in tests/uko/schemas/ and of tests.uko.contract.validate_uko.

Positive examples are reduced transcriptions of the mock response bodies in IBM/ibm-hpcs-uko-sdk
ukov4/uko_v4_test.go (commit 02831ebafacaaa3da6f8dcfb14bbc1d3024f0bf2); where that file serves an
inconsistent body (a keystore of type ibm_cloud_kms carrying aws_* fields), the body is corrected
per keystore type and the original is kept as a negative case (see schemas/README.md).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.uko.contract import SCHEMA_DIR, schemas, validate_uko, violations

HREF = "https://uko.us-south.hs-crypto.cloud.ibm.com:9549/api/v4/managed_keys/c2d8d0ee-c333-414f-8e64-af47320e5a46"
UUID = "5295ad47-2ce9-43c3-b9e7-e5a9482c362b"
VAULT_REF = {"id": UUID, "name": "Vault-1", "href": HREF}
STAMPS = {
    "created_at": "2022-02-22T10:27:08.000Z",
    "updated_at": "2022-02-22T10:27:08.000Z",
    "created_by": "IBMid-1308197YB4",
    "updated_by": "IBMid-1308197YB4",
    "href": HREF,
}

MANAGED_KEY: dict[str, Any] = {
    "id": UUID,
    "vault": VAULT_REF,
    "template": {"id": UUID, "name": "AWS-KMS-TEMPLATE", "href": HREF},
    "description": "Managed key description",
    "label": "IBM CLOUD KEY",
    "state": "active",
    "size": "256",
    "algorithm": "aes",
    "verification_patterns": [{"method": "enc-zero", "value": "U3dhZ2dlciByb2Nrcw=="}],
    "activation_date": "2020-12-11",
    "expiration_date": "2030-11-12",
    "tags": [{"name": "Name", "value": "Value"}],
    **STAMPS,
    "referenced_keystores": [{"id": UUID, "name": "ibm-cloud", "type": "ibm_cloud_kms", "href": HREF}],
    "instances": [
        {
            "id": UUID,
            "label_in_keystore": "IBM CLOUD KEY",
            "type": "private_key",
            "keystore": {"group": "Group", "type": "ibm_cloud_kms"},
        }
    ],
}

MANAGED_KEY_LIST = {
    "total_count": 1,
    "limit": 1,
    "offset": 0,
    "first": {"href": HREF},
    "last": {"href": HREF},
    "previous": {"href": HREF},
    "next": {"href": HREF},
    "managed_keys": [MANAGED_KEY],
}

TEMPLATE = {
    "vault": VAULT_REF,
    "id": UUID,
    "version": 1,
    "name": "AWS-TEMPLATE",
    "key": {
        "size": "256",
        "algorithm": "aes",
        "activation_date": "P5Y1M1W2D",
        "expiration_date": "P1Y2M1W4D",
        "state": "active",
    },
    "description": "The description of the template",
    **STAMPS,
    "keystores": [{"group": "Production", "type": "ibm_cloud_kms"}],
}

VAULT = {"id": UUID, "name": "Vault-1", "description": "The description of the vault", **STAMPS}

KEYSTORE_COMMON = {
    "vault": VAULT_REF,
    "id": UUID,
    "name": "Accounting",
    "location": "us-south",
    "description": "keystore for testing",
    "groups": ["Production"],
    **STAMPS,
}
KEYSTORES: dict[str, dict[str, Any]] = {
    "aws_kms": {
        **KEYSTORE_COMMON,
        "type": "aws_kms",
        "aws_region": "af_south_1",
        "aws_access_key_id": "BSDFWERUANLKJDN54AAS",
        "aws_secret_access_key": "6HSz234KBjMrASFasfg5PasAFGNasg87asdgQzgs",
    },
    "azure_key_vault": {
        **KEYSTORE_COMMON,
        "type": "azure_key_vault",
        "azure_service_name": "key-vault",
        "azure_resource_group": "resource-group",
        "azure_location": "asia_east",
        "azure_service_principal_client_id": "91018db0-7c73-4d4b-8c2c-0d1fbb6e63f4",
        "azure_service_principal_password": "password",
        "azure_tenant": "b8e1b6d4-1b41-4e24-9e6f-0d9d0b9e7f3c",
        "azure_subscription_id": "a98ab0c8-0a0b-4f3f-a2ec-3a0b0b0b0b0b",
        "azure_environment": "azure",
    },
    "google_kms": {
        **KEYSTORE_COMMON,
        "type": "google_kms",
        "google_credentials": "eyJ0eXBlIjogInNlcnZpY2VfYWNjb3VudCJ9",
        "google_location": "europe-central2",
        "google_project_id": "demo-project",
        "google_private_key_id": "f871b60d0617f9b6d5ab6c5e12d5e1b2",
        "google_key_ring": "my-key-ring",
    },
    "ibm_cloud_kms": {
        **KEYSTORE_COMMON,
        "type": "ibm_cloud_kms",
        "ibm_api_endpoint": "https://us-south.kms.cloud.ibm.com",
        "ibm_iam_endpoint": "https://iam.cloud.ibm.com/identity/token",
        "ibm_api_key": "apikey",
        "ibm_instance_id": "9a1a8a8a-1a1a-4a1a-8a1a-1a1a1a1a1a1a",
        "ibm_variant": "key_protect",
        "ibm_key_ring": "IBM-Cloud-KMS-Internal",
    },
}

API_ERROR = {
    "status_code": 400,
    "trace": "9daee671-916a-4678-850b-10b9110236d",
    "errors": [
        {
            "code": "missing_field",
            "message": "The algorithm field is required",
            "more_info": "https://cloud.ibm.com/apidocs/uko#create-managed-key",
            "message_params": ["My Key Template"],
            "target": {"type": "field", "name": "first_name"},
        }
    ],
}

KEYSTORE_STATUS = {
    "last_heartbeat": "2019-01-01T12:00:00.000Z",
    "health_status": "ok",
    "message": "Ping executed successfully.",
}

EXAMPLES: list[tuple[str, object]] = [
    ("ManagedKey", MANAGED_KEY),
    ("ManagedKeyList", MANAGED_KEY_LIST),
    ("Template", TEMPLATE),
    ("TemplateList", {"total_count": 1, "limit": 1, "offset": 0, "templates": [TEMPLATE]}),
    ("Vault", VAULT),
    ("VaultList", {"total_count": 1, "limit": 1, "offset": 0, "vaults": [VAULT]}),
    *(("Keystore", body) for body in KEYSTORES.values()),
    ("KeystoreList", {"total_count": 4, "limit": 10, "offset": 0, "keystores": list(KEYSTORES.values())}),
    ("KeystoreStatus", KEYSTORE_STATUS),
    ("ApiError", API_ERROR),
]


@pytest.mark.parametrize("name", sorted(schemas()))
def test_every_schema_is_a_valid_draft_2020_12_schema(name: str) -> None:
    document = schemas()[name]
    Draft202012Validator.check_schema(document)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["$id"].endswith(f"/{name}.json")


def test_every_ref_names_a_schema_file() -> None:
    def refs(node: object) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return found + [r for value in node.values() for r in refs(value)]
        if isinstance(node, list):
            return [r for value in node for r in refs(value)]
        return []

    files = {path.name for path in SCHEMA_DIR.glob("*.json")}
    dangling = {(name, ref) for name, doc in schemas().items() for ref in refs(doc) if ref not in files}
    assert not dangling


@pytest.mark.parametrize(("model", "body"), EXAMPLES, ids=[f"{m}-{i}" for i, (m, _) in enumerate(EXAMPLES)])
def test_sdk_example_bodies_validate(model: str, body: object) -> None:
    validate_uko(model, body)


def _rejected(model: str, body: object, *expected: str) -> str:
    with pytest.raises(AssertionError) as caught:
        validate_uko(model, body)
    text = str(caught.value)
    for fragment in expected:
        assert fragment in text, text
    return text


def test_vault_as_a_bare_id_string_is_rejected() -> None:
    _rejected("ManagedKey", {**MANAGED_KEY, "vault": UUID}, "$.vault:", "is not of type 'object'")


def test_size_as_an_integer_is_rejected() -> None:
    _rejected("ManagedKey", {**MANAGED_KEY, "size": 256}, "$.size:", "256 is not of type 'string'")


def test_state_outside_the_enum_is_rejected() -> None:
    _rejected("ManagedKey", {**MANAGED_KEY, "state": "enabled"}, "$.state:", "'enabled' is not one of")


def test_error_target_as_a_string_is_rejected() -> None:
    body = copy.deepcopy(API_ERROR)
    body["errors"][0]["target"] = "algorithm"  # type: ignore[index]
    _rejected("ApiError", body, "$.errors[0].target:", "is not of type 'object'")


@pytest.mark.parametrize(
    ("model", "body", "field"),
    [
        ("ManagedKey", MANAGED_KEY, "instances"),
        ("ManagedKey", MANAGED_KEY, "referenced_keystores"),
        ("ManagedKeyList", MANAGED_KEY_LIST, "total_count"),
        ("Template", TEMPLATE, "keystores"),
        ("Vault", VAULT, "description"),
        ("ApiError", API_ERROR, "errors"),
        ("Keystore", KEYSTORES["aws_kms"], "aws_region"),
        ("Keystore", KEYSTORES["azure_key_vault"], "azure_tenant"),
        ("Keystore", KEYSTORES["google_kms"], "google_key_ring"),
        ("Keystore", KEYSTORES["ibm_cloud_kms"], "ibm_variant"),
        ("Keystore", KEYSTORES["aws_kms"], "type"),
    ],
)
def test_a_missing_required_field_is_rejected(model: str, body: dict[str, Any], field: str) -> None:
    reduced = {key: value for key, value in body.items() if key != field}
    _rejected(model, reduced, f"'{field}' is a required property")


def test_every_violation_is_listed_with_its_path() -> None:
    body = {**MANAGED_KEY, "vault": UUID, "size": 256, "state": "enabled"}
    del body["label"]
    found = violations("ManagedKey", body)
    assert [line.split(":", 1)[0] for line in found] == ["$", "$.size", "$.state", "$.vault"]
    text = _rejected("ManagedKey", body, "4 violation(s)")
    assert "'label' is a required property" in text


def test_nested_violations_name_the_nested_path() -> None:
    body = copy.deepcopy(MANAGED_KEY_LIST)
    body["managed_keys"][0]["instances"][0]["keystore"]["type"] = "vault"  # type: ignore[index]
    _rejected("ManagedKeyList", body, "$.managed_keys[0].instances[0].keystore.type:", "'vault' is not one of")


def test_keystore_type_selects_the_subtype() -> None:
    # The SDK test's own UpdateKeystore mock body: type ibm_cloud_kms with aws_* fields only.
    sdk_mock = {
        **KEYSTORE_COMMON,
        "type": "ibm_cloud_kms",
        **{k: v for k, v in KEYSTORES["aws_kms"].items() if k.startswith("aws_")},
    }
    _rejected("Keystore", sdk_mock, "'ibm_api_endpoint' is a required property", "'ibm_variant' is a required property")
    _rejected("Keystore", {**KEYSTORES["aws_kms"], "type": "hsm"}, "$.type:", "'hsm' is not one of")
    _rejected(
        "Keystore", {**KEYSTORES["aws_kms"], "aws_region": "us-east-1"}, "$.aws_region:", "'us-east-1' is not one of"
    )


def test_dates_and_timestamps_are_checked() -> None:
    _rejected("ManagedKey", {**MANAGED_KEY, "activation_date": "11/12/2020"}, "$.activation_date:", "is not a 'date'")
    _rejected("Vault", {**VAULT, "created_at": "yesterday"}, "$.created_at:", "is not a 'date-time'")


def test_extra_fields_are_allowed() -> None:
    validate_uko("ManagedKey", {**MANAGED_KEY, "keyorch_generation": 7})


def test_status_in_keystore_requires_the_sync_flags() -> None:
    # The SDK test's GetKeyDistributionStatusForKeystores mock omits the fields the struct marks required.
    body = {
        "status_in_keystores": [
            {"keystore": {"id": UUID, "type": "ibm_cloud_kms"}, "status": "active", "error": API_ERROR}
        ]
    }
    _rejected("StatusInKeystores", body, "'keystore_sync_flag' is a required property")
    body["status_in_keystores"][0] |= {
        "keystore_sync_flag": "ok",
        "keystore_sync_flag_detail": "active_key_is_active_in_keystore",
    }
    validate_uko("StatusInKeystores", body)


def test_unknown_model_name_is_refused() -> None:
    with pytest.raises(ValueError, match="no UKO schema named 'ManagedKeys'"):
        validate_uko("ManagedKeys", {})
