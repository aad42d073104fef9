"""The registry of algorithms: icgd's own and those of installed plugins (entry-point group
`icgd.algorithms`), by name. Each built-in registers itself at the bottom of the module that defines
it (`ALGORITHMS.register("name", obj)`); a plugin declares an entry point in its `pyproject.toml`:

    [project.entry-points."icgd.algorithms"]
    my-algorithm = "my_package.module:object"

`icgd list algorithms` prints them.
"""

from __future__ import annotations

import importlib
from typing import Any

from icgd.core.registry import Registry

__all__ = ["ALGORITHMS"]


def _builtins() -> None:
    importlib.import_module("icgd.algorithms")  # every module registers its own algorithms


ALGORITHMS: Registry[Any] = Registry("algorithm", "icgd.algorithms", builtins=_builtins)
