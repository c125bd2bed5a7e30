"""The OpenAPI 3.1 document, generated from the route table and the pydantic models of bodies, queries and
answers (``api.models`` and ``api.responses``: the ones the handlers parse and check their answers with)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from keyorch.api.docs import ASSETS, ASSETS_PATH, DOCS_PATH
from keyorch.api.errors import TRACE_HEADER
from keyorch.api.routing import PREFIX, Route

OPENAPI_PATH = PREFIX + "/openapi.json"
_REF = "#/components/schemas/{model}"

_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "UKO's ApiError",
    "required": ["status_code", "trace", "errors"],
    "additionalProperties": False,
    "properties": {
        "status_code": {"type": "integer", "description": "the HTTP status of the answer"},
        "trace": {"type": "string", "description": f"the request's id, also its {TRACE_HEADER} header"},
        "errors": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["code", "message", "more_info", "message_params"],
                "additionalProperties": False,
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "more_info": {"type": "string", "description": "where to read about the error"},
                    "message_params": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "the values the message names (never a secret)",
                    },
                    "target": {
                        "type": "object",
                        "description": "what the error is about (absent when it is about no one value)",
                        "required": ["type", "name"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string", "enum": ["field", "parameter", "header"]},
                            "name": {"type": "string", "description": "the field (dotted), parameter or header"},
                        },
                    },
                },
            },
        },
    },
}

_STATUS_TEXT = {
    200: "OK",
    201: "Created (Location and ETag headers)",
    204: "Done, no content",
    400: "Invalid input: the field, the value given and what is allowed",
    401: "No valid bearer token",
    403: "The caller's role in the object's vault does not allow this",
    404: "No such object",
    408: "The request body did not arrive within api.body_timeout_seconds (the connection is closed)",
    409: "Refused by a rule (lifecycle, dual authorization, disconnect) or a clash with an existing object",
    412: "If-Match does not name the object's current ETag",
    413: "Request body too large",
    415: "The request body is not sent as application/json",
    428: "If-Match is required for a change to an existing object",
    502: "A keystore refused the read or answered with something that is not its API's answer",
    503: "Too many requests at once (api.max_concurrent_requests; see Retry-After), or a needed component "
    "(reconciler, keystore) is not available",
}


def _error(status: int) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "description": _STATUS_TEXT.get(status, "Error"),
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="Error")}}},
    }
    if status == 503:
        doc["headers"] = {
            "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}
        }
    return doc


def _statuses(route: Route) -> list[int]:
    found = {400, 401, 404, 503} if route.permission is not None else {503}
    if route.permission is not None:
        found.add(403)
    if route.body is not None:
        found |= {408, 413, 415}
    if route.if_match:
        found |= {412, 428}
    return sorted(found | set(route.refusals))


def _query_parameters(model: type[BaseModel], schemas: dict[str, Any]) -> list[dict[str, Any]]:
    params = []
    schema = schemas[model.__name__]
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        options = [p for p in prop.pop("anyOf", []) if p.get("type") != "null"]
        if options:
            prop.update(options[0])
        prop.pop("title", None)
        if prop.get("default", "") is None:  # "no filter" is the parameter left out, not a null
            del prop["default"]
        description = prop.pop("description", None)
        param: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": prop}
        if description:
            param["description"] = description
        params.append(param)
    return params


def _operation(route: Route, schemas: dict[str, Any]) -> dict[str, Any]:
    params: list[dict[str, Any]] = []
    if "{id}" in route.path:
        params.append({"name": "id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}})
    if route.if_match:
        params.append(
            {
                "name": "If-Match",
                "in": "header",
                "required": True,
                "description": "the object's current ETag, from GET",
                "schema": {"type": "string"},
            }
        )
    if route.query is not None:
        params.extend(_query_parameters(route.query, schemas))
    success: dict[str, Any] = {"description": _STATUS_TEXT[route.success]}
    if route.response is not None:
        success["content"] = {"application/json": {"schema": {"$ref": _REF.format(model=route.response.__name__)}}}
    responses: dict[str, Any] = {str(route.success): success}
    responses.update({str(s): _error(s) for s in _statuses(route)})
    op: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
        "parameters": params,
        "responses": responses,
    }
    if route.permission is None:
        op["security"] = []
    else:
        op["description"] = f"Needs the permission to {route.permission} in the object's vault."
    if route.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": _REF.format(model=route.body.__name__)}}},
        }
    return op


def _html_route(operation_id: str, summary: str) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["meta"],
        "security": [],
        "responses": {"200": {"description": summary, "content": {"*/*": {"schema": {"type": "string"}}}}},
    }
    if operation_id.endswith("asset"):
        schema = {"type": "string", "enum": sorted(ASSETS)}
        op["parameters"] = [{"name": "name", "in": "path", "required": True, "schema": schema}]
        op["responses"]["404"] = _error(404)
    return {"get": op}


def build_openapi(routes: Sequence[Route]) -> dict[str, Any]:
    models = {m for r in routes for m in (r.body, r.query, r.response) if m is not None}
    _, defs = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)], ref_template=_REF
    )
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    schemas["Error"] = _ERROR_SCHEMA
    paths: dict[str, Any] = {}
    for route in routes:
        paths.setdefault(route.full_path, {})[route.method.lower()] = _operation(route, schemas)
    paths[OPENAPI_PATH] = {
        "get": {
            "operationId": "get_openapi",
            "summary": "This document",
            "tags": ["meta"],
            "security": [],
            "responses": {
                "200": {"description": "The OpenAPI document", "content": {"application/json": {"schema": {}}}}
            },
        }
    }
    paths[DOCS_PATH] = _html_route("get_api_docs", "Interactive API documentation (Swagger UI, served by keyorch)")
    paths[ASSETS_PATH + "/{name}"] = _html_route("get_api_docs_asset", "A file of the API documentation page")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "keyorch API",
            "version": "4",
            "description": "Managed keys, vaults, keystores and templates on UKO's v4 resource model. Every change "
            "to an existing object needs If-Match with its current ETag; errors are "
            '{"status_code", "trace", "errors": [{"code", "message", "more_info", "message_params", '
            f'"target": {{"type", "name"}}}}]}}; trace is also the {TRACE_HEADER} header of the answer.',
        },
        "servers": [{"url": "/"}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }
