"""Importing this module registers the four keystore adapters with ``keyorch.providers.base``."""

from __future__ import annotations

import importlib

ADAPTER_MODULES = (
    "keyorch.providers.aws",
    "keyorch.providers.azure",
    "keyorch.providers.google",
    "keyorch.providers.ibm",
)


def load_all() -> list[str]:
    """Import every adapter module that is present; return the ones that loaded."""
    loaded = []
    for name in ADAPTER_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        loaded.append(name)
    return loaded


load_all()
