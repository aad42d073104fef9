"""What `icgd identify` should find in a `looped-gd` run: in Gatmiry et al.'s setting the looped
model runs L steps of preconditioned GD with Γ = a*·Σ⁻¹ (their Theorem; SPEC §6).

Approximate (`exact=False`): a trained model, within `identify`'s trained tolerances. Where the
antisymmetric curvature c(L, n, d) is negative, a*·Σ⁻¹ is a saddle of the looped loss and the
minimiser rotates away from it (`looped-landscape`), so the Γ claim may fail honestly; the answer
says so. Only the main (looped) model has a known answer; the `stacked` one has none.
"""

from __future__ import annotations

from typing import Any

from icgd.experiments.looped_gd.config import LoopedGDConfig


def known_answer(config: LoopedGDConfig, metrics: dict, sub: str, task: Any) -> dict | None:
    """`preconditioned-gd`, k = L, Γ = a*·Σ⁻¹ (the answer's fields: `sources.Expected`)."""
    if sub or not config.in_theorem_setting:
        return None
    gamma = metrics["alpha_theory"] * task.sigma_inv.double().cpu()
    why = "a*·Σ⁻¹ (Gatmiry et al.)"
    if metrics.get("skew_curvature", 1.0) < 0:
        why += "; c(L, n, d) < 0 here, so the minimiser rotates away from it"
    return {
        "algorithm": "preconditioned-gd",
        "steps": config.loops,
        "parameters": {"gamma": gamma},
        "why": why,
    }
