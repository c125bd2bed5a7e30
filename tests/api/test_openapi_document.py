"""The OpenAPI document as served: valid by openapi-spec-validator, and every success it documents has a
schema made from the model its handler checks its answer with."""

from __future__ import annotations

from typing import Any

from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator

from keyorch.api.app import ROUTES
from keyorch.api.openapi import OPENAPI_PATH
from tests.api.conftest import Api
from tests.openapi_answers import documented_success


async def _document(api: Api) -> dict[str, Any]:
    resp = await api.client.get(OPENAPI_PATH)
    assert resp.status == 200
    doc: dict[str, Any] = await resp.json()
    return doc


async def test_the_served_document_passes_openapi_spec_validator(api: Api) -> None:
    doc = await _document(api)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in OpenAPIV31SpecValidator(doc).iter_errors()]
    assert errors == []
    validate(doc)  # raises on the first error, as a user's CI would run it


async def test_no_parameter_has_a_null_default(api: Api) -> None:
    doc = await _document(api)
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for param in op.get("parameters", []):
                assert param["schema"].get("default", "") is not None, (method, path, param["name"])


async def test_every_success_has_the_schema_of_its_handlers_model(api: Api) -> None:
    doc = await _document(api)
    for route in ROUTES:
        op = doc["paths"][route.full_path][route.method.lower()]
        successes = {code: r for code, r in op["responses"].items() if code.startswith("2")}
        assert list(successes) == [str(route.success)], route.operation_id
        if route.success == 204:
            assert route.response is None and "content" not in successes["204"]
            continue
        assert route.response is not None, route.operation_id
        schema = documented_success(doc, route.method, route.full_path, route.success)
        assert schema == {"$ref": f"#/components/schemas/{route.response.__name__}"}, route.operation_id
        component = doc["components"]["schemas"][route.response.__name__]
        assert set(component["properties"]) == set(route.response.model_fields), route.operation_id
        # a field with a default is one the answer leaves out where it has no value (UKO's schemas take no null)
        required = {name for name, field in route.response.model_fields.items() if field.is_required()}
        assert set(component.get("required", [])) == required, route.operation_id
        assert component["additionalProperties"] is False, route.operation_id
