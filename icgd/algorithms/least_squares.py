"""Closed-form linear predictors: OLS, ridge and the Bayes posterior mean, batched over prompts.

The reference predictors against which Akyürek et al. 2023 ("What learning algorithm is in-context
learning? Investigations with linear models") compare trained transformers: depth moves a trained
model from one-step-GD-like to ridge-like to OLS-like. Each returns `ŵ` (B, d); the prediction on a
query is `x_qᵀ ŵ`.

Shapes: X (B, n, d) with rows `x_iᵀ`, y (B, n).
"""

from __future__ import annotations

import torch
from torch import Tensor

from icgd.algorithms.plugins import ALGORITHMS


def _check_data(X: Tensor, y: Tensor) -> None:
    if X.ndim != 3 or y.shape != X.shape[:2]:
        raise ValueError(
            f"expected X (B, n, d) and y (B, n), got {tuple(X.shape)} and {tuple(y.shape)}"
        )


def ols(X: Tensor, y: Tensor) -> Tensor:
    """Ordinary least squares, `ŵ = X⁺ y` (Moore–Penrose pseudo-inverse), for each prompt.

    For `n ≥ d` with full column rank this is `(XᵀX)⁻¹ Xᵀ y`, the minimiser of `‖X w − y‖²`; for
    `n < d` it is the minimum-norm interpolant `Xᵀ (X Xᵀ)⁻¹ y` (in the row space of X). Singular
    values below the default relative cut-off of `torch.linalg.pinv` are treated as zero.

    X: (B, n, d), y: (B, n) → ŵ: (B, d).
    """
    _check_data(X, y)
    return (torch.linalg.pinv(X) @ y.unsqueeze(-1)).squeeze(-1)  # (B, d, n) @ (B, n, 1)


def ridge(X: Tensor, y: Tensor, lam: float | Tensor) -> Tensor:
    """Ridge regression `ŵ = (XᵀX + λ I_d)⁻¹ Xᵀ y`, the minimiser of `‖X w − y‖² + λ ‖w‖²`.

    Note the unnormalised `XᵀX` (not `Ŝ = XᵀX / n`): `λ` is on Akyürek et al.'s scale.
    X: (B, n, d), y: (B, n), lam: λ ≥ 0, a number or a (B,) tensor (one per prompt) → ŵ: (B, d).

    When `n < d` the equal dual form `ŵ = Xᵀ (X Xᵀ + λ I_n)⁻¹ y` is solved instead (an n×n system,
    well conditioned for small λ, where the d×d one has d − n eigenvalues equal to λ). With λ = 0
    this needs X of full rank and gives OLS (the min-norm interpolant when n < d).
    """
    _check_data(X, y)
    n, d = X.shape[-2:]
    lam_t = torch.as_tensor(lam, dtype=X.dtype, device=X.device)
    if (lam_t < 0).any():
        raise ValueError("ridge: lam must be >= 0")
    lam_t = lam_t.reshape(-1, 1, 1)  # broadcasts over (B, k, k)
    if n < d:
        eye_n = torch.eye(n, dtype=X.dtype, device=X.device)
        K = X @ X.transpose(1, 2) + lam_t * eye_n  # (B, n, n)
        alpha = torch.linalg.solve(K, y.unsqueeze(-1)).squeeze(-1)  # (B, n)
        return torch.einsum("bnd,bn->bd", X, alpha)  # Xᵀ α
    eye_d = torch.eye(d, dtype=X.dtype, device=X.device)
    A = X.transpose(1, 2) @ X + lam_t * eye_d  # (B, d, d)
    rhs = torch.einsum("bnd,bn->bd", X, y).unsqueeze(-1)  # (B, d, 1): Xᵀ y
    return torch.linalg.solve(A, rhs).squeeze(-1)


def bayes_posterior_mean(X: Tensor, y: Tensor, noise_std: float, prior_cov: Tensor) -> Tensor:
    """Posterior mean `E[w | X, y]` for `w ~ N(0, Σ_w)`, `y = X w + σ ε`, `ε ~ N(0, I_n)`:

        ŵ = Σ_w Xᵀ (X Σ_w Xᵀ + σ² I_n)⁻¹ y   ( = (XᵀX + σ² Σ_w⁻¹)⁻¹ Xᵀ y for σ > 0 ).

    With `Σ_w = τ² I` this is ridge with `λ = σ²/τ²` (Akyürek et al. 2023). σ = 0 is the limit
    σ → 0: the interpolant of minimum `Σ_w⁻¹`-norm when n ≤ d, and the OLS solution when n > d.

    Computed in whitened coordinates: with `Σ_w = C Cᵀ` (Cholesky) and `A = X C`,
    `ŵ = C · ridge(A, y, σ²)` for σ > 0 and `ŵ = C · A⁺ y` for σ = 0 (the same formula, since
    `Aᵀ (A Aᵀ + σ² I)⁻¹ = (AᵀA + σ² I)⁻¹ Aᵀ`; `ridge` solves whichever of the n×n and d×d systems
    is smaller).

    X: (B, n, d), y: (B, n), noise_std: σ ≥ 0, prior_cov: (d, d) or (B, d, d) symmetric positive
    definite Σ_w → ŵ: (B, d).
    """
    _check_data(X, y)
    if noise_std < 0:
        raise ValueError(f"bayes_posterior_mean: noise_std must be >= 0, got {noise_std}")
    prior_cov = prior_cov.to(dtype=X.dtype, device=X.device)
    C = torch.linalg.cholesky(prior_cov)  # (d, d) or (B, d, d), lower triangular
    A = X @ C  # (B, n, d)
    v = ridge(A, y, noise_std**2) if noise_std > 0 else ols(A, y)  # (B, d)
    return torch.einsum("...ij,...j->...i", C, v) if C.ndim == 3 else v @ C.T


ALGORITHMS.register("ols", ols)
ALGORITHMS.register("ridge", ridge)
ALGORITHMS.register("bayes", bayes_posterior_mean)
