"""Error JSON for every 4xx/5xx answer, and the middleware that makes it so.

The shape is UKO's (``ApiError`` of IBM's UKO v4 SDK): ``{"status_code": 404, "trace": "<request id>",
"errors": [{"code", "message", "more_info", "message_params": [...], "target": {"type", "name"}}]}``,
``target.type`` one of ``field`` (a body field), ``parameter`` (a query parameter) or ``header``; an error
about no one value has no ``target``. ``trace`` is the request's id, also sent as the ``X-Correlation-Id``
header of every answer and bound into the request's log lines. keyorch's own
refusals (``KeyorchError``) carry their HTTP status; aiohttp's own answers (unknown route, 405, 413)
and validation errors are converted here. Nothing a client sends may produce a 5xx: only a fault of
keyorch itself does, and its message never includes internals.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from typing import Any, NamedTuple

import structlog
from aiohttp import web
from pydantic import ValidationError

from keyorch.domain.errors import Conflict, InvalidInput, KeyorchError, TargetType
from keyorch.domain.errors import Forbidden as Forbidden  # a refusal of domain.errors, re-exported for the API
from keyorch.domain.validation import check_text, shown

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The largest request body the API reads (a larger one is answered 413).
MAX_BODY_BYTES = 1024 * 1024

#: Body fields whose values are never echoed back in an error message.
SECRET_FIELDS = frozenset({"credentials"})

#: The response header that carries a request's trace id (the ``trace`` of its error bodies).
TRACE_HEADER = "X-Correlation-Id"

#: The request headers an error may name; a ``KeyorchError`` targeting one of these is about that header.
REQUEST_HEADERS = frozenset({"If-Match", "Content-Type", "Authorization", "UKO-Vault"})

_TRACE: ContextVar[str | None] = ContextVar("keyorch_request_trace", default=None)
TRACE_KEY = web.RequestKey("keyorch_trace", str)

_HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    411: "length_required",
    412: "precondition_failed",
    413: "request_too_large",
    415: "unsupported_media_type",
    428: "precondition_required",
    431: "request_header_fields_too_large",
}


# The exit codes are those `keyorch --server` exits with when the API answers so.


class Unauthorized(KeyorchError):
    exit_code = 2  # unusable configuration: the token
    http_status = 401
    code = "unauthorized"


class PreconditionRequired(KeyorchError):
    exit_code = 2
    http_status = 428
    code = "precondition_required"


class ServiceUnavailable(KeyorchError):
    exit_code = 4  # a needed component could not be reached
    http_status = 503
    code = "service_unavailable"


class UnsupportedMediaType(KeyorchError):
    http_status = 415
    code = "unsupported_media_type"


class MasterKeyMissing(Conflict):
    code = "master_key_missing"


class InvalidJson(InvalidInput):
    code = "invalid_json"


class Target(NamedTuple):
    """What an error is about: ``type`` says where the value came from, ``name`` is the field (dotted),
    query parameter or header."""

    type: TargetType
    name: str


class Problem(NamedTuple):
    """One entry of an error body; ``params`` are the values named in ``message`` (never a secret)."""

    code: str
    message: str
    target: Target | None = None
    params: tuple[str, ...] = ()


def new_trace() -> str:
    return str(uuid.uuid4())


def current_trace() -> str:
    """The trace id of the request being handled (a new one outside a request)."""
    return _TRACE.get() or new_trace()


def more_info(code: str) -> str:
    """Where to read about an error: keyorch's API docs (served by keyorch itself), which list each
    operation's error answers."""
    from keyorch.api.docs import DOCS_PATH  # imported here: keyorch.api.docs imports a module importing this one

    return DOCS_PATH


def error_body(status: int, errors: Iterable[Problem], trace: str | None = None) -> dict[str, Any]:
    """The one place the error document is made."""
    entries: list[dict[str, Any]] = []
    for problem in errors:
        entry: dict[str, Any] = {
            "code": problem.code,
            "message": problem.message,
            "more_info": more_info(problem.code),
            "message_params": list(problem.params),
        }
        if problem.target is not None:
            entry["target"] = {"type": problem.target.type, "name": problem.target.name}
        entries.append(entry)
    return {"status_code": status, "trace": trace or current_trace(), "errors": entries}


def error_response(status: int, errors: Iterable[Problem], headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(error_body(status, errors), status=status, headers=headers)


def validation_errors(exc: ValidationError, where: str) -> list[Problem]:
    """One entry per problem, naming the field, the value given and what is allowed; ``where`` is ``body``
    (its fields) or ``query`` (its parameters)."""
    kind: TargetType = "parameter" if where == "query" else "field"
    found: list[Problem] = []
    for err in exc.errors(include_url=False)[:20]:
        loc = ".".join(str(p) for p in err["loc"])
        secret = bool(err["loc"]) and err["loc"][0] in SECRET_FIELDS
        params: tuple[str, ...] = (loc,) if loc else ()
        if err["type"] == "missing":
            message = f"{where} field {loc} is required"
        elif err["type"] == "extra_forbidden":
            message = f"{where} field {loc} is not allowed here"
        else:
            got = shown(err.get("input"))
            value = "" if secret else f" (got {got})"
            params = params if secret else (*params, got)
            message = f"{where} field {loc or '(document)'} is not valid{value}: {err['msg']}"
        # a query parameter is named as sent (``state``), not by its place in a comma list (``state.0``)
        name = str(err["loc"][0]) if kind == "parameter" and err["loc"] else loc
        found.append(Problem("invalid_input", message, Target(kind, name) if name else None, params))
    return found


def problem_of(exc: KeyorchError) -> Problem:
    if exc.target is None:
        target = Target("header", "Authorization") if isinstance(exc, Unauthorized) else None
    else:
        kind = exc.target_type or ("header" if exc.target in REQUEST_HEADERS else "field")
        target = Target(kind, exc.target)
    return Problem(exc.code, exc.message, target, (target.name,) if target else ())


def keyorch_error_response(exc: KeyorchError) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="keyorch"'} if isinstance(exc, Unauthorized) else None
    return error_response(exc.http_status, [problem_of(exc)], headers)


def _http_exception_response(exc: web.HTTPException, request: web.Request) -> web.StreamResponse:
    if exc.status < 400:
        raise exc
    code = _HTTP_CODES.get(exc.status, "internal_error" if exc.status >= 500 else "bad_request")
    params: tuple[str, ...] = ()
    if exc.status == 404:
        message = f"no such resource: {request.method} {request.path}"
        params = (request.method, request.path)
    elif exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        message = f"method {request.method} is not allowed on {request.path}; allowed: {allowed or 'none'}"
        params = (request.method, request.path, allowed)
    elif exc.status == 413:
        message = f"the request body is too large (the limit is {MAX_BODY_BYTES} bytes)"
        params = (str(MAX_BODY_BYTES),)
    else:
        message = exc.reason
    headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "WWW-Authenticate")}
    return error_response(exc.status, [Problem(code, message, None, params)], headers)


@web.middleware
async def trace_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give the request its trace id: in its error bodies, its ``X-Correlation-Id`` header (added by
    :func:`add_trace_header`) and every log line written while it is handled; an answer of 4xx/5xx is
    logged with it, so an operator finds the request from a client's error."""
    trace = new_trace()
    request[TRACE_KEY] = trace
    token = _TRACE.set(trace)
    try:
        with structlog.contextvars.bound_contextvars(trace=trace):
            response = await handler(request)
            if response.status >= 400:
                log.info("api.error_answer", method=request.method, path=request.path, status=response.status)
            return response
    finally:
        _TRACE.reset(token)


async def add_trace_header(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every answer, an error sent early included, carries the request's trace."""
    trace = request.get(TRACE_KEY)
    if trace is not None:
        response.headers[TRACE_HEADER] = trace


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except KeyorchError as exc:
        if exc.http_status >= 500:
            log.warning("api.refused", path=request.path, code=exc.code, status=exc.http_status)
        return keyorch_error_response(exc)
    except web.HTTPException as exc:
        return _http_exception_response(exc, request)
    except Exception:
        log.exception("api.internal_error", method=request.method, path=request.path)
        return error_response(500, [Problem("internal_error", "keyorch failed to handle this request; see its log")])


def parse_json(raw: bytes) -> Any:
    """Parse a request body; refuse malformed, non-UTF-8, NaN/Infinity and over-deep JSON as 400, and strings
    no store can hold (NUL, unpaired surrogates) as 400 naming the field."""

    def _refuse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not allowed")

    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        detail = str(exc).split("\n")[0][:120] if isinstance(exc, ValueError) else "nested too deeply"
        raise InvalidJson(f"the request body is not valid JSON: {detail}", target="body") from None
    check_strings(doc, "body", ())
    return doc


def check_strings(value: Any, where: str, path: tuple[str, ...]) -> None:
    """Every string of a parsed body or query, names included, passes ``validation.check_text``; the error
    names the field by its path (and never shows the value of a secret field)."""
    if isinstance(value, str):
        field = f"{where} field {'.'.join(path)}" if path else where
        kind: TargetType = "parameter" if where == "query" else "field"
        try:
            check_text(field, value)
        except InvalidInput as exc:
            if path and path[0] in SECRET_FIELDS:
                raise InvalidInput(
                    f"{field} is not valid text (NUL or unpaired surrogate)", target=path[-1], target_type=kind
                ) from None
            raise InvalidInput(exc.message, target=path[-1] if path else where, target_type=kind) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            check_strings(key, where, (*path, "(name)"))
            check_strings(item, where, (*path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_strings(item, where, (*path, str(index)))
