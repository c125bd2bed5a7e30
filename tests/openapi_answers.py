"""Answers checked against the OpenAPI document: the schema it documents for a success, and validation of a
served body against it (JSON Schema 2020-12, the dialect of OpenAPI 3.1), ``$ref``s resolved in the document."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator


def documented_success(doc: dict[str, Any], method: str, path: str, status: int) -> dict[str, Any]:
    """The schema the document gives for ``status`` of ``method path`` (a templated path, e.g. /vaults/{id})."""
    response = doc["paths"][path][method.lower()]["responses"][str(status)]
    schema: dict[str, Any] = response["content"]["application/json"]["schema"]
    return schema


def check_answer(doc: dict[str, Any], method: str, path: str, status: int, body: Any) -> str:
    """Validate a served body against its documented schema, which must name a model of the components (a
    bare ``{"type": "object"}`` documents nothing); the model's name."""
    schema = documented_success(doc, method, path, status)
    ref = schema.get("$ref", "")
    assert ref.startswith("#/components/schemas/"), f"{method} {path} {status}: no model documented ({schema})"
    name = ref.removeprefix("#/components/schemas/")
    assert doc["components"]["schemas"][name].get("additionalProperties") is False, name
    validator = Draft202012Validator({**schema, "components": doc["components"]})
    problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]
    assert problems == [], f"{method} {path} {status} does not match {name}: {problems[:5]}"
    return name
