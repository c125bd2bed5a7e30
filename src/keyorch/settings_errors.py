"""A bad setting in one sentence: which setting, where it was given, the value, and what is allowed.

``setting reconcile.workers (env KEYORCH_RECONCILE__WORKERS) is 'many': give a whole number from 1 to 256``.
What is allowed comes from the settings model itself (its types, ranges, choices, descriptions and validators'
messages), so a new setting is described without a word written here. A secret's value is never shown, a
URL's only without its user-info (:func:`keyorch.urls.redact_url`).
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic_core import ErrorDetails

from keyorch.domain.validation import shown
from keyorch.urls import redact_url, redact_urls


class _UrlValue:
    """Marks a setting that holds a URL (``Annotated[str, URL_VALUE]``)."""

    def __repr__(self) -> str:
        return "URL_VALUE"


URL_VALUE = _UrlValue()


@dataclass(frozen=True)
class SettingsSource:
    """Where a setting was given, as an error names it."""

    label: str

    @classmethod
    def env(cls, name: str) -> SettingsSource:
        return cls(f"env {name}")

    @classmethod
    def file(cls, path: str) -> SettingsSource:
        return cls(f"in --config {path}")

    @classmethod
    def command_line(cls) -> SettingsSource:
        return cls("on the command line")


@dataclass
class _Place:
    """Where in the settings model a location of an error leads."""

    setting: list[str]
    inner: list[str]
    annotation: Any
    metadata: list[Any]
    description: str | None
    parent: type[BaseModel] | None


def _unwrap(annotation: Any, metadata: list[Any]) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation, *extra = get_args(annotation)
            metadata.extend(extra)
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _place(model: type[BaseModel], loc: tuple[int | str, ...]) -> _Place:
    place = _Place([], [], model, [], None, None)
    in_setting = True  # still walking the groups of the settings themselves, not inside a value
    for part in loc:
        current = _unwrap(place.annotation, place.metadata)
        if _is_model(current) and isinstance(part, str):
            if part not in current.model_fields:
                place.parent = current
                (place.setting if in_setting else place.inner).append(part)
                place.annotation = None
                break
            field = current.model_fields[part]
            place.parent, place.annotation = current, field.annotation
            place.metadata, place.description = list(field.metadata), field.description
            (place.setting if in_setting else place.inner).append(part if in_setting else f"field {part}")
            in_setting = in_setting and _is_model(_unwrap(field.annotation, []))
        elif get_origin(current) is list and isinstance(part, int):
            in_setting = False
            place.metadata, place.description = [], None
            place.annotation = _unwrap(get_args(current)[0], place.metadata)
            place.inner.append(f"item {part}")
        elif get_origin(current) is dict and isinstance(part, str):
            in_setting = False
            place.metadata, place.description = [], None
            place.annotation = _unwrap(get_args(current)[1], place.metadata)
            place.inner.append(f"key {shown(part, 40)}")
        else:
            break  # a union member's tag, or a validator's name: nothing more to say
        if in_setting and not _is_model(_unwrap(place.annotation, [])):
            in_setting = False
    return place


def _number(value: float) -> str:
    return f"{value:g}"


def _range(metadata: list[Any]) -> str:
    low = next((m for m in metadata if isinstance(m, annotated_types.Ge | annotated_types.Gt)), None)
    high = next((m for m in metadata if isinstance(m, annotated_types.Le | annotated_types.Lt)), None)
    low_text = None
    if isinstance(low, annotated_types.Ge):
        low_text = _number(float(low.ge))  # type: ignore[arg-type]
    elif isinstance(low, annotated_types.Gt):
        low_text = f"more than {_number(float(low.gt))}"  # type: ignore[arg-type]
    high_text = None
    if isinstance(high, annotated_types.Le):
        high_text = _number(float(high.le))  # type: ignore[arg-type]
    elif isinstance(high, annotated_types.Lt):
        high_text = f"less than {_number(float(high.lt))}"  # type: ignore[arg-type]
    if low_text and high_text:
        return f" from {low_text} to {high_text}"
    if low_text:
        return f" of at least {low_text}"
    if high_text:
        return f" of at most {high_text}"
    return ""


def _listed(model: type[BaseModel]) -> str:
    names = list(model.model_fields)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _allowed(place: _Place, err: ErrorDetails) -> str:
    """What the setting (or the part of it the error is about) may be: ``give …`` or ``choose …``."""
    if err["type"] == "value_error" and "error" in err.get("ctx", {}):
        return str(err["ctx"]["error"])
    if err["type"] == "missing" and place.parent is not None:
        return f"each needs {_listed(place.parent)}"
    if err["type"] == "extra_forbidden" and place.parent is not None:
        return f"the settings there are {_listed(place.parent)}"
    annotation = _unwrap(place.annotation, place.metadata)
    name = (place.setting or [""])[-1]
    if get_origin(annotation) is Literal:
        return f"choose one of: {', '.join(str(a) for a in get_args(annotation))}"
    if annotation is bool:
        return "give true or false"
    if annotation is int:
        return f"give a whole number{_range(place.metadata)}"
    if annotation is float:
        unit = " of seconds" if name.endswith("_seconds") else ""
        return f"give a number{unit}{_range(place.metadata)}"
    if place.description:
        return place.description
    if _is_model(annotation):
        return f"give a mapping of its settings: {', '.join(annotation.model_fields)}"
    if get_origin(annotation) is list:
        return "give a list"
    if get_origin(annotation) is dict:
        return "give a mapping"
    if annotation is SecretStr:
        return "give text"
    if annotation is str:
        return "give text"
    return err["msg"]


def _given(place: _Place, value: Any) -> str:
    """The value as an error may show it: a secret's never, a URL's without its user-info."""
    if _unwrap(place.annotation, []) is SecretStr or isinstance(value, SecretStr):
        return "a value that is not shown (it is a secret)"
    if URL_VALUE in place.metadata and isinstance(value, str):
        if "://" not in value and "@" in value:
            return "a value that is not shown (it is not a URL, and may hold a password)"
        return shown(redact_url(value))
    if isinstance(value, str):
        return shown(value)
    if isinstance(value, bool | int | float):
        return repr(value)
    text = redact_urls(repr(value))  # a list or a mapping: as Python shows it
    return text if len(text) <= 80 else text[:77] + "..."


def _sentence(
    model: type[BaseModel], loc: tuple[int | str, ...], source: Callable[[tuple[str, ...]], SettingsSource]
) -> tuple[_Place, str]:
    place = _place(model, loc)
    setting = ".".join(place.setting) or "(the settings)"
    where = source(tuple(place.setting)).label
    inner = " ".join(place.inner)
    return place, f"setting {setting} ({where}){' ' + inner if inner else ''}"


def describe_invalid(
    model: type[BaseModel], err: ErrorDetails, source: Callable[[tuple[str, ...]], SettingsSource]
) -> str:
    """One pydantic error of loading the settings as one sentence."""
    place, head = _sentence(model, tuple(err["loc"]), source)
    if err["type"] == "missing":
        return f"{head} is missing: {_allowed(place, err)}"
    if err["type"] == "extra_forbidden":
        return f"{head} is not a keyorch setting; {_allowed(place, err)}"
    return f"{head} is {_given(place, err.get('input'))}: {_allowed(place, err)}"


def describe_not_json(model: type[BaseModel], path: tuple[str, ...], source: SettingsSource, raw: str) -> str:
    """A list, a mapping or a group given in the environment as something that is not JSON."""
    place, head = _sentence(model, path, lambda _: source)
    allowed = _allowed(place, {"type": "json_invalid", "loc": path, "msg": "", "input": raw})
    return f"{head} is {_given(place, raw)}, which is not JSON: {allowed} (as JSON)"
