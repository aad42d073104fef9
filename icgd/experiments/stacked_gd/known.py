"""What `icgd identify` should find in a `stacked-gd` model (Ahn et al. 2023, Theorem 3): L
stacked sparse layers run L steps of preconditioned GD with one preconditioner per layer,
Γ_l = a_l*·Σ⁻¹ at the optimum: the candidate `stacked-preconditioned-gd` with k = L (one layer:
`preconditioned-gd`, k = 1).

Only the algorithm and its steps are checked, not the Γ_l: they all commute in their products
with Ŝ, so the order of the layers is not identifiable (the experiment compares sorted scales
itself). The relaxed set (Theorem 4, GD++) moves the covariates too and has no answer here.
Approximate (`exact=False`): trained models.
"""

from __future__ import annotations

import re
from typing import Any

from icgd.experiments.stacked_gd.config import StackedGDConfig


def context_length(config: StackedGDConfig, sub: str) -> int | None:
    """The n of the model in `sub`: "" (main) and "sweep/L{k}" → config.n, "sweep/n{n}" → n;
    None for any other folder."""
    if sub == "" or re.fullmatch(r"sweep/L\d+", sub):
        return config.n
    match = re.fullmatch(r"sweep/n(\d+)", sub)
    return int(match.group(1)) if match else None


def known_answer(config: StackedGDConfig, metrics: dict, sub: str, task: Any) -> dict | None:
    """The answer's fields (`icgd.experiments.identify.sources.Expected`; module docstring)."""
    if config.parametrisation != "sparse":
        return None
    match = re.fullmatch(r"sweep/L(\d+)", sub)
    L = int(match.group(1)) if match else config.layers
    why = "Ahn et al. 2023 Thm 3: one preconditioner per layer, Γ_l = a_l*·Σ⁻¹"
    if L == 1:
        return {"algorithm": "preconditioned-gd", "steps": 1, "why": why}
    return {"algorithm": "stacked-preconditioned-gd", "steps": L, "why": why}
