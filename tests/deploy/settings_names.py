"""Map a KEYORCH_* environment name to the setting it sets (None if it sets none)."""

from __future__ import annotations

from pydantic import BaseModel

from keyorch.settings import Settings


def setting_path(env_name: str) -> tuple[str, ...] | None:
    if not env_name.startswith("KEYORCH_"):
        return None
    parts = tuple(part.lower() for part in env_name.removeprefix("KEYORCH_").split("__"))
    model: type[BaseModel] = Settings
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return None
        if i == len(parts) - 1:
            return parts
        nested = field.annotation
        if not (isinstance(nested, type) and issubclass(nested, BaseModel)):
            return None
        model = nested
    return None


def all_setting_paths() -> set[tuple[str, ...]]:
    paths: set[tuple[str, ...]] = set()
    for name, field in Settings.model_fields.items():
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            paths |= {(name, sub) for sub in nested.model_fields}
        else:
            paths.add((name,))
    return paths
