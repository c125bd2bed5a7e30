"""Where settings come from besides the defaults: a YAML file (``--config``) and ``KEYORCH_*`` variables."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from keyorch.domain.errors import ConfigurationError
from keyorch.settings_errors import SettingsSource, describe_not_json

ENV_PREFIX = "KEYORCH_"
ENV_NESTED_DELIMITER = "__"


class YamlSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def env_name(path: tuple[str, ...]) -> str:
    """The environment variable of a setting: ``("api", "listen")`` → ``KEYORCH_API__LISTEN``."""
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(part.upper() for part in path)


def _is_complex(annotation: Any) -> bool:
    """Whether an environment variable gives this setting as JSON (a list, a mapping or a group)."""
    if get_origin(annotation) is not None and get_origin(annotation) not in (list, dict, Literal):
        return any(_is_complex(arg) for arg in get_args(annotation) if arg is not type(None))
    is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
    return get_origin(annotation) in (list, dict) or is_model


class EnvSource(PydanticBaseSettingsSource):
    """``KEYORCH_*`` variables; a list, a mapping or a whole group as JSON. Variables of no setting
    (``KEYORCH_TOKEN``, ``KEYORCH_SERVER``: the CLI's own) are left alone; one inside a group that names no
    setting of it is passed on, so that it is refused as unknown."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.given: dict[tuple[str, ...], tuple[str, str]] = {}  # setting path -> (variable, value)
        self._data: dict[str, Any] = {}
        for name in sorted(environ):
            path = tuple(name[len(ENV_PREFIX) :].lower().split(ENV_NESTED_DELIMITER))
            if name.upper().startswith(ENV_PREFIX) and path[0] in self.settings_cls.model_fields and len(path) <= 2:
                self._add(path, name, environ[name])

    def _add(self, path: tuple[str, ...], name: str, raw: str) -> None:
        top = self.settings_cls.model_fields[path[0]].annotation
        group = top if isinstance(top, type) and issubclass(top, BaseModel) else None
        if len(path) == 2 and group is None:
            return  # below a setting that is no group: not a setting
        field = group.model_fields.get(path[1]) if group is not None and len(path) == 2 else None
        annotation = top if len(path) == 1 else (field.annotation if field is not None else str)
        value: Any = raw
        if _is_complex(annotation):
            try:
                value = json.loads(raw)
            except ValueError:
                raise ConfigurationError(
                    describe_not_json(self.settings_cls, path, SettingsSource.env(name), raw)
                ) from None
        self.given[path] = (name, raw)
        if len(path) == 1:
            if isinstance(value, dict) and isinstance(self._data.get(path[0]), dict):
                value = {**value, **self._data[path[0]]}
            self._data[path[0]] = value
        else:
            current = self._data.setdefault(path[0], {})
            if isinstance(current, dict):
                current[path[1]] = value

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def read_yaml(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"--config {path!r} cannot be read: {exc.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigurationError(f"--config {path!r} is not valid YAML{where}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigurationError(f"--config {path!r} must hold a mapping of settings at its top")
    return doc
