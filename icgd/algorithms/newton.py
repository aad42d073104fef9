"""Iterative Newton (Newton–Schulz) for the in-context least-squares solution.

For one prompt with inputs `X ∈ R^{n×d}` (rows `x_iᵀ`) and labels `y ∈ R^n` put

    Ŝ = (1/n) XᵀX,     b = (1/n) Xᵀ y,

so that the least-squares weights solve `Ŝ w = b`. The Newton–Schulz iteration for `Ŝ⁻¹` is

    M_0 = α Ŝ,     M_{k+1} = M_k (2I − Ŝ M_k),     w_k = M_k b,     ŷ_k = x_qᵀ w_k.

Why it converges, and how fast. Every `M_k` is a polynomial in `Ŝ` (by induction), so it commutes
with `Ŝ` and acts on each eigenvalue `λ` of `Ŝ` by a number `μ_k(λ)`. The residual
`e_k(λ) = 1 − λ μ_k(λ)` obeys `e_{k+1} = 1 − λ μ_k (2 − λ μ_k) = e_k²`, hence

    I − Ŝ M_k = (I − α Ŝ²)^{2^k}:

quadratic convergence. It converges iff `|1 − α λ²| < 1` for every non-zero eigenvalue, i.e.
`0 < α < 2 / ‖Ŝ‖₂²`; on the null space of `Ŝ` (n < d) `μ_k = 0` throughout, so `M_k → Ŝ⁺` and
`w_k → Ŝ⁺ b = X⁺ y`, the (minimum-norm) OLS solution of `icgd.algorithms.ols`. The error
`w_k − w_∞ = −(I − α Ŝ²)^{2^k} w_∞` shrinks like `(1 − α λ_min²)^{2^k}`: about
`log₂(κ² log(1/ε))` iterations reach accuracy ε, with `κ = λ_max/λ_min` the condition number.

Choice of α (ours, documented): by default `α = 1/‖Ŝ‖₂² = 1/λ_max(Ŝ)²` for each prompt, from one
symmetric eigen-decomposition per prompt. It is safely inside the stable range (every
`1 − α λ²` lies in `[0, 1)`, no sign flips); the best single α for the first contraction would be
`2/(λ_max² + λ_min²)`. A number α (shared by every prompt) or a (B,) tensor may be given instead,
as a trained transformer would use a fixed one; the iteration diverges for `α ≥ 2/‖Ŝ‖₂²`.

References: Schulz 1933 / Ben-Israel 1965 (the iteration); Fu, Chen, Jia, Sharan 2024,
"Transformers learn to achieve second-order convergence rates for in-context linear regression"
(trained transformers track iterative Newton; k iterations in k + O(1) layers); Giannou, Yang,
Wang, Papailiopoulos, Lee 2024, "How well can transformers emulate in-context Newton's method?"
(linear attention implements a Newton step); `icgd.constructions.lsa_from_newton_schulz`.

Every function works on a batch of B prompts: X (B, n, d), y (B, n).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from icgd.algorithms.plugins import ALGORITHMS


@dataclass(frozen=True)
class NewtonResult:
    """Every iterate of iterative Newton.

    weights: (K+1, B, d), `weights[k] = w_k = M_k b`.
    inverses: (K+1, B, d, d), `inverses[k] = M_k`, the k-th approximation of `Ŝ⁻¹` (`Ŝ⁺`).
    alpha: (B,), the α of `M_0 = α Ŝ` used for each prompt.
    """

    weights: Tensor
    inverses: Tensor
    alpha: Tensor

    @property
    def final(self) -> Tensor:
        """The last iterate `w_K`: (B, d)."""
        return self.weights[-1]

    def predict(self, x_q: Tensor) -> Tensor:
        """Predictions `x_qᵀ w_k` of every iterate: x_q (B, d) → (K+1, B)."""
        return torch.einsum("kbd,bd->kb", self.weights, x_q)


def _check_data(X: Tensor, y: Tensor) -> None:
    if X.ndim != 3 or y.shape != X.shape[:2]:
        raise ValueError(
            f"expected X (B, n, d) and y (B, n), got {tuple(X.shape)} and {tuple(y.shape)}"
        )


def newton_alpha(S_hat: Tensor) -> Tensor:
    """The default `α = 1/‖Ŝ‖₂²` per prompt: S_hat (B, d, d) symmetric → (B,).

    `‖Ŝ‖₂ = λ_max(Ŝ)` (Ŝ is positive semi-definite). A prompt with `Ŝ = 0` gets α = 1 (then
    `M_k = 0` whatever α is).
    """
    lam_max = torch.linalg.eigvalsh(S_hat)[..., -1].clamp_min(0)  # (B,)
    safe = torch.where(lam_max > 0, lam_max, torch.ones_like(lam_max))
    return 1.0 / safe.square()


def _alpha(alpha: float | Tensor | None, S_hat: Tensor) -> Tensor:
    """α as a (B,) tensor: the default `newton_alpha`, or a given number / (B,) tensor (> 0)."""
    B = S_hat.shape[0]
    if alpha is None:
        return newton_alpha(S_hat)
    a = torch.as_tensor(alpha, dtype=S_hat.dtype, device=S_hat.device)
    if a.ndim == 0:
        a = a.expand(B)
    if a.shape != (B,):
        raise ValueError(f"alpha must be a number or a ({B},) tensor, got {tuple(a.shape)}")
    if not (torch.isfinite(a).all() and (a > 0).all()):
        raise ValueError("alpha must be finite and > 0 (convergence needs α < 2/‖Ŝ‖₂²)")
    return a


def iterative_newton(
    X: Tensor, y: Tensor, n_steps: int, alpha: float | Tensor | None = None
) -> NewtonResult:
    """K = `n_steps` Newton–Schulz steps `M_{k+1} = M_k (2I − Ŝ M_k)` from `M_0 = α Ŝ`, and
    `w_k = M_k (1/n) Xᵀ y` for k = 0…K (module docstring).

    X: (B, n, d), y: (B, n). alpha: None (default, `1/‖Ŝ‖₂²` per prompt), a number shared by
    every prompt, or a (B,) tensor; convergence needs `0 < α < 2/‖Ŝ‖₂²`.
    Returns a `NewtonResult`: weights (K+1, B, d), inverses (K+1, B, d, d), alpha (B,).
    `w_k` converges quadratically to the OLS solution `X⁺ y`.
    """
    _check_data(X, y)
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 0:
        raise ValueError(f"n_steps must be a non-negative integer, got {n_steps!r}")
    n, d = X.shape[1], X.shape[2]
    S_hat = X.transpose(1, 2) @ X / n  # (B, d, d)
    b = torch.einsum("bnd,bn->bd", X, y) / n  # (B, d) = (1/n) Xᵀ y
    a = _alpha(alpha, S_hat)  # (B,)
    two_eye = 2 * torch.eye(d, dtype=X.dtype, device=X.device)
    M = a[:, None, None] * S_hat  # (B, d, d): M_0 = α Ŝ
    inverses = [M]
    for _ in range(n_steps):  # a loop over the K steps only
        M = M @ (two_eye - S_hat @ M)  # (B, d, d)
        inverses.append(M)
    stacked = torch.stack(inverses)  # (K+1, B, d, d)
    weights = torch.einsum("kbij,bj->kbi", stacked, b)  # (K+1, B, d): w_k = M_k b
    return NewtonResult(weights=weights, inverses=stacked, alpha=a)


ALGORITHMS.register("iterative-newton", iterative_newton)
