"""Experiments: one module per paper's claim check, registered by name.

`load_all()` imports every experiment module so the registry is filled; `import icgd` does not.
`papers()`: each registered experiment's name → the paper it reproduces (its `paper`).
"""

from __future__ import annotations

import importlib

MODULES = (
    "icgd.experiments.decision_lists",
    "icgd.experiments.function_classes",
    "icgd.experiments.gd_vs_transformer",
    "icgd.experiments.in_context_td",
    "icgd.experiments.looped_gd",
    "icgd.experiments.looped_transformer",
    "icgd.experiments.one_step_gd",
    "icgd.experiments.optimal_transport",
    "icgd.experiments.softmax_heads",
    "icgd.experiments.stacked_gd",
    "icgd.experiments.which_algorithm",
)


def load_all() -> None:
    for module in MODULES:
        importlib.import_module(module)


def papers() -> dict[str, str]:
    """Experiment name → the paper whose claims it checks, for every registered experiment."""
    from icgd.core.registry import get, names

    load_all()
    return {name: str(get(name).paper) for name in names()}  # type: ignore[attr-defined]
