"""The registry of models: icgd's own and those of installed plugins (entry-point group
`icgd.models`), by name. Each built-in registers itself at the bottom of the module that defines
it (`MODELS.register("name", obj)`); a plugin declares an entry point in its `pyproject.toml`:

    [project.entry-points."icgd.models"]
    my-model = "my_package.module:object"

`icgd list models` prints them.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from icgd.core.registry import Registry

__all__ = ["MODELS"]


def _builtins() -> None:
    """Import every module of `icgd.models`: each registers its own models at its bottom, so a
    new model module needs no list edited anywhere."""
    package = importlib.import_module("icgd.models")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"icgd.models.{module.name}")


MODELS: Registry[Any] = Registry("model", "icgd.models", builtins=_builtins)
