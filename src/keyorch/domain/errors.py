"""The error tree of keyorch's own rules and inputs (provider errors live in providers/).

Each error carries the process exit code the CLI uses and the HTTP status the API uses, so
both surfaces answer the same refusal the same way.
"""

from __future__ import annotations

from typing import Literal

#: Where the value an error names came from: a body field, a query parameter or a request header.
TargetType = Literal["field", "parameter", "header"]


class KeyorchError(Exception):
    """Base class: a clear, one-sentence message safe to show a user (never a secret).

    ``target`` names what the error is about; ``target_type`` says where it came from (None: a header if
    ``target`` is one of the API's request headers, else a field).
    """

    exit_code = 1
    http_status = 500
    code = "internal_error"

    def __init__(self, message: str, *, target: str | None = None, target_type: TargetType | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.target = target
        self.target_type = target_type


class InvalidInput(KeyorchError):
    """Bad input: names the field, the value and what is allowed."""

    exit_code = 2
    http_status = 400
    code = "invalid_input"


class NotFound(InvalidInput):
    exit_code = 2
    http_status = 404
    code = "not_found"


class Conflict(InvalidInput):
    """The input clashes with an existing object (a duplicate name, say)."""

    exit_code = 2
    http_status = 409
    code = "conflict"


class RuleViolation(KeyorchError):
    """Refused by a lifecycle rule: transition, disconnect, dual authorization."""

    exit_code = 3
    http_status = 409
    code = "rule_violation"


class StaleVersion(RuleViolation):
    """Optimistic concurrency: the object changed since the caller read it."""

    code = "stale_version"
    http_status = 412


class Forbidden(KeyorchError):
    """The caller may not do this: its role, or an operator's setting, does not allow it."""

    exit_code = 3
    http_status = 403
    code = "forbidden"


class ConfigurationError(KeyorchError):
    """keyorch's own configuration (database URL, master key, settings file) is unusable."""

    exit_code = 2
    http_status = 500
    code = "configuration_error"


class KeystoreUnreachable(KeyorchError):
    exit_code = 4
    http_status = 503
    code = "keystore_unreachable"
