"""Test-time looping of a looped model: run K ≠ L loops and measure per-prompt errors.

Gatmiry et al. (2024): a looped model trained at L loops keeps improving for K > L loops in the
median, while the mean can blow up because the prompts whose preconditioned GD diverges
(spectral radius of `I − Γ Ŝ` above 1) dominate it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


@torch.no_grad()
def loop_squared_errors(model, Z: Tensor, y_q: Tensor, loops: Sequence[int]) -> Tensor:
    """Per-prompt squared error `(ŷ_K − y_q)²` for every loop count K.

    Z: (B, d+1, n+1), y_q: (B,) → (len(loops), B).

    One pass of max(loops) loops, reading the prediction after each loop from the hook cache, so
    the cost is that of the longest run only.
    """
    K_max = max(loops)
    _, cache = model.run_with_cache(
        Z, n_loops=K_max, names_filter=lambda name: name.startswith("hook_z.")
    )
    predictions = torch.stack([-cache[f"hook_z.{k}"][:, -1, -1] for k in loops])  # (K, B)
    return (predictions - y_q) ** 2


def divergence_fraction(gamma: Tensor, X: Tensor) -> float:
    """Fraction of prompts on which the iteration `w ← w − Γ ∇R(w)` diverges: `ρ(I − Γ Ŝ) > 1`.

    gamma: (d, d) preconditioner; X: (B, n, d) contexts, Ŝ = XᵀX/n per prompt.
    """
    n, d = X.shape[-2], X.shape[-1]
    S_hat = X.transpose(1, 2) @ X / n  # (B, d, d)
    iteration = torch.eye(d, dtype=X.dtype, device=X.device) - gamma.to(X.dtype) @ S_hat
    radius = torch.linalg.eigvals(iteration.double()).abs().amax(-1)  # (B,)
    return float((radius > 1).double().mean())
