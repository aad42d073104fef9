"""What `icgd identify` should find in a `one-step-gd` run: the trained layer is one step of
preconditioned GD with the optimal Γ* = Σ_w Σ (E[Ŝ Σ_w Ŝ] + (σ²/n) Σ)⁻¹ (Ahn et al. 2023,
Theorem 1, in the general form of `icgd.theory.optimal_one_layer_preconditioner`).

Approximate (`exact=False`): a trained model, within `identify`'s trained tolerances.
"""

from __future__ import annotations

from typing import Any

from icgd.experiments.one_step_gd.config import OneStepGDConfig
from icgd.theory import optimal_one_layer_preconditioner


def known_answer(config: OneStepGDConfig, metrics: dict, sub: str, task: Any) -> dict | None:
    """`preconditioned-gd`, k = 1, Γ = Γ* (the answer's fields: `sources.Expected`)."""
    if sub:
        return None
    gamma = optimal_one_layer_preconditioner(
        task.sigma.double().cpu(),
        config.n,
        noise_std=config.sigma_noise,
        weight_cov=task.weight_covariance.double().cpu(),
    )
    return {
        "algorithm": "preconditioned-gd",
        "steps": 1,
        "parameters": {"gamma": gamma},
        "why": "Γ* (Ahn et al. Thm 1)",
    }
