"""Check a document against the JSON Schemas derived from IBM's UKO Go SDK (tests/uko/schemas/).

``validate_uko("ManagedKey", body)`` raises AssertionError listing every violation as
``<JSON path>: <message>``; the model names are the schema file names (see schemas/README.md).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SCHEMA_DIR = Path(__file__).parent / "schemas"


@cache
def schemas() -> dict[str, dict[str, Any]]:
    """Every schema in SCHEMA_DIR by model name (the file name without .json)."""
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(SCHEMA_DIR.glob("*.json"))}


@cache
def _registry() -> Registry[Any]:
    resources = [
        (doc["$id"], Resource.from_contents(doc, default_specification=DRAFT202012)) for doc in schemas().values()
    ]
    return Registry().with_resources(resources)


@cache
def _validator(model_name: str) -> Draft202012Validator:
    known = schemas()
    if model_name not in known:
        raise ValueError(f"no UKO schema named {model_name!r}; known: {', '.join(sorted(known))}")
    return Draft202012Validator(
        known[model_name], registry=_registry(), format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def violations(model_name: str, document: object) -> list[str]:
    """Every violation of the model's schema by the document, as '<JSON path>: <message>', sorted by path."""
    errors = _validator(model_name).iter_errors(document)
    return [f"{path}: {message}" for path, message in sorted((e.json_path, e.message) for e in errors)]


def validate_uko(model_name: str, document: object) -> None:
    """Raise AssertionError naming every place where the document breaks the UKO SDK's model."""
    found = violations(model_name, document)
    if found:
        listing = "\n".join(f"  - {line}" for line in found)
        raise AssertionError(f"not a valid UKO {model_name} ({len(found)} violation(s)):\n{listing}")
