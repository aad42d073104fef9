"""The registry of tasks: icgd's own and those of installed plugins (entry-point group
`icgd.tasks`), by name. Each built-in registers itself at the bottom of the module that defines
it (`TASKS.register("name", obj)`); a plugin declares an entry point in its `pyproject.toml`:

    [project.entry-points."icgd.tasks"]
    my-task = "my_package.module:object"

`icgd list tasks` prints them.
"""

from __future__ import annotations

import importlib
from typing import Any

from icgd.core.registry import Registry

__all__ = ["TASKS"]


def _builtins() -> None:
    importlib.import_module("icgd.tasks")  # every module registers its own tasks


TASKS: Registry[Any] = Registry("task", "icgd.tasks", builtins=_builtins)
