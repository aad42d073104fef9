"""The loss plateaus of one-step preconditioned GD learned one principal direction at a time.

Setting (SPEC §1): `x_i, x_q ~ N(0, Σ)`, `Σ = U Λ Uᵀ` with `Λ = diag(λ_1 > … > λ_d)`,
`w* ~ N(0, I)`, `y = X w* + σ ε`, `y_q = x_qᵀ w* + σ ε_q`. A rank-one-head model predicts
`ŷ = x_qᵀ Γ h` with `h = (1/n) Xᵀ y = Ŝ w* + (σ/n) Xᵀ ε` (`icgd.models.rank_one_attention`).

Derivation. Averaging over x_q, w*, ε and X in turn,

    L(Γ) = E(ŷ − y_q)² = tr Λ + σ² − 2 tr(Γ Σ²) + tr(Γᵀ Σ Γ M),
    M = E[Ŝ²] + (σ²/n) Σ = ((n+1)/n) Σ² + ((tr Σ + σ²)/n) Σ,

from `E[Ŝ] = Σ`, the Wishart moment `E[Ŝ²] = ((n+1)/n) Σ² + (tr Σ/n) Σ` (Isserlis:
`E[x xᵀ x xᵀ] = 2Σ² + tr(Σ) Σ`) and `E[(1/n²) Xᵀ ε εᵀ X] = (σ²/n) Σ`. In the eigenbasis,
`G = Uᵀ Γ U`, Σ and M are diagonal (`m_j = ((n+1)/n) λ_j² + ((tr Λ + σ²)/n) λ_j`), so

    L = tr Λ + σ² + Σ_j (G_jj² λ_j m_j − 2 G_jj λ_j²) + Σ_{i≠j} G_ij² λ_i m_j.

Off-diagonal entries only add loss, and the diagonal ones decouple: component j alone is optimal at
`γ*_j = λ_j / m_j = 1 / (((n+1)/n) λ_j + (tr Λ + σ²)/n)` (Ahn et al.'s Γ* in the eigenbasis) and
lowers the loss by `Δ_j = λ_j² γ*_j`. With the k largest components learned optimally and the rest
zero, `Γ_k = Σ_{j≤k} γ*_j u_j u_jᵀ`, the loss is

    L_k = tr Λ + σ² − Σ_{j≤k} λ_j² / (((n+1)/n) λ_j + (tr Λ + σ²)/n),     k = 0 … d.

`Γ_k` is a fixed point of gradient flow on the heads (k heads on u_1 … u_k, the others at 0, where
every factor's gradient vanishes): the plateau after the k-th drop, when the drops come in
decreasing eigenvalue order. It is also the lowest loss of any Γ of rank k (k rank-one heads):
with `Γ' = Σ^½ Γ M^½` the loss is `‖Γ' − T‖_F² + const`, `T = diag(λ_j^{3/2} m_j^{−½})`, so the
best rank-k Γ' keeps the k largest `T_jj² = Δ_j` (Eckart–Young), and `Δ_j` grows with λ_j.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _sorted(eigenvalues: Sequence[float] | torch.Tensor) -> torch.Tensor:
    lam = torch.as_tensor(eigenvalues, dtype=torch.float64).flatten()
    return torch.sort(lam, descending=True).values


def component_gains(
    eigenvalues: Sequence[float] | torch.Tensor, n: int, noise_std: float = 0.0
) -> torch.Tensor:
    """`γ*_j = 1 / (((n+1)/n) λ_j + (tr Λ + σ²)/n)` (d,), float64, λ in decreasing order."""
    lam = _sorted(eigenvalues)
    return 1.0 / ((n + 1) / n * lam + (lam.sum() + noise_std**2) / n)


def component_reductions(
    eigenvalues: Sequence[float] | torch.Tensor, n: int, noise_std: float = 0.0
) -> torch.Tensor:
    """`Δ_j = λ_j² γ*_j` (d,): the loss removed by learning component j, λ in decreasing order."""
    lam = _sorted(eigenvalues)
    return lam**2 * component_gains(lam, n, noise_std)


def plateau_losses(
    eigenvalues: Sequence[float] | torch.Tensor, n: int, noise_std: float = 0.0
) -> torch.Tensor:
    """`L_k`, k = 0 … d (d+1,), float64: the loss with the k largest components learned
    optimally (module docstring); `L_0 = tr Λ + σ²`, `L_d` the one-layer optimum."""
    lam = _sorted(eigenvalues)
    start = lam.sum() + noise_std**2
    drops = torch.cumsum(component_reductions(lam, n, noise_std), 0)
    return torch.cat([start.reshape(1), start - drops])
