"""`registered(what)`: one line per registered experiment, task, model or algorithm (`icgd list`),
icgd's own and plugins' (marked with the distribution that provides them)."""

from __future__ import annotations

from icgd.core.errors import InputError
from icgd.experiments.api import EXPERIMENTS

KINDS = ("experiments", "tasks", "models", "algorithms")


def _registries() -> dict:
    from icgd.algorithms.plugins import ALGORITHMS
    from icgd.models.plugins import MODELS
    from icgd.tasks.plugins import TASKS

    return {"experiments": EXPERIMENTS, "tasks": TASKS, "models": MODELS, "algorithms": ALGORITHMS}


def registered(what: str = "experiments") -> list[str]:
    """`name  summary` for experiments, `name  module.object: first docstring line` otherwise."""
    if what not in KINDS:
        raise InputError("list", f"unknown kind {what!r}; allowed: {', '.join(KINDS)}")
    registry, lines = _registries()[what], []
    for name, obj in registry.items():
        origin = registry.origin(name)
        tail = f"  [plugin: {origin}]" if origin != "icgd" else ""
        if what == "experiments":
            lines.append(f"{name:<20} {obj.summary}{tail}")
            continue
        doc = (getattr(obj, "__doc__", None) or "").strip().split("\n")[0]
        where = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', '?')}"
        lines.append(f"{name:<22} {where}: {doc}{tail}")
    return lines
