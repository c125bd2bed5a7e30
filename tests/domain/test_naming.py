"""Naming schemes: keyorch's ``{name}`` and UKO's ``<name>`` placeholders, checked in one place
(``domain/validation.py``), each refusal naming the field, the value and what is allowed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from keyorch.domain.errors import InvalidInput
from keyorch.domain.validation import NAMING_PLACEHOLDERS, check_naming_scheme, render_name

MADE = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("scheme", "name"),
    [
        ("{label}", "db"),
        ("app-{label}", "app-db"),
        ("<label>", "db"),
        ("APP-<label>-<date>", "APP-db-20260102"),
        ("{vault}/{template}/<label>_{time}", "pay/tmpl/db_030405"),
        ("{label}-{label}", "db-db"),
    ],
)
def test_each_placeholder_in_either_form_renders(scheme: str, name: str) -> None:
    assert check_naming_scheme(scheme) == scheme
    assert render_name(scheme, "db", made_at=MADE, template="tmpl", vault="pay") == name


@pytest.mark.parametrize(
    ("scheme", "why"),
    [
        ("{label", "'{' outside a placeholder"),
        ("{label:>99999999}", "outside a placeholder"),
        ("{label!r}", "'{label!r}' is not a placeholder"),
        ("{{label}}", "'{' outside a placeholder"),
        ("app-{env}-{label}", "'{env}' is not a placeholder"),
        ("<Environment>-{label}", "'<Environment>' is not a placeholder"),
        ("a>{label}", "'>' outside a placeholder"),
        ("fixed-name", "it holds no {label}"),
        ("{vault}-<date>", "it holds no {label}"),
        ("\x07{label}", "control character"),
        ("x" * 90 + "{label}", "at most 96 characters"),
    ],
)
def test_a_bad_scheme_is_refused_naming_the_field_the_value_and_what_is_allowed(scheme: str, why: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        check_naming_scheme(scheme)
    assert raised.value.target == "naming_scheme"
    assert why in raised.value.message
    assert "naming_scheme" in raised.value.message
    if "placeholder" in why or "{label}" in why:
        assert all(f"{{{name}}}" in raised.value.message for name in NAMING_PLACEHOLDERS)
