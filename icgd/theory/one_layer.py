"""Exact one-layer (one step of preconditioned GD) losses and optima; no Monte Carlo.

Setting (SPEC §1.2): ``x_i, x_q ~ N(0, Σ)``, ``w* ~ N(0, Σ_w)``, ``y = Xw* + σε``,
``y_q = x_qᵀw* + σε_q``.
One layer predicts ``ŷ = x_qᵀ Γ (1/n) Xᵀ y = x_qᵀ Γ (Ŝ w* + v)``, ``v = (σ/n) Xᵀ ε`` with
``Cov(v | X) = (σ²/n) Ŝ``. The population loss is

    E(ŷ − y_q)² = tr(Σ Γ E[Ŝ Σ_w Ŝ] Γᵀ) − 2 tr(Σ Γ Σ Σ_w) + tr(Σ Σ_w)
                  + (σ²/n) tr(Σ Γ Σ Γᵀ) + σ²,

using ``E[Ŝ] = Σ`` and, for Gaussian x and symmetric M (Isserlis:
``E[x xᵀ M x xᵀ] = 2 Σ M Σ + tr(MΣ) Σ``),

    E[Ŝ M Ŝ] = ((n+1)/n) Σ M Σ + (1/n) tr(M Σ) Σ.

Setting the gradient in Γ to zero gives ``Γ* = Σ_w Σ E_w⁻¹`` with
``E_w = E[Ŝ Σ_w Ŝ] + (σ²/n) Σ``; for ``Σ_w = I`` this is Ahn et al. (2023) Thm 1,
``Γ* = (((n+1)/n) Σ + ((tr Σ + σ²)/n) I)⁻¹``, and for ``Σ = I`` the step
``n / (n + d + 1 + σ²)`` (Mahankali et al. 2023).
"""

from __future__ import annotations

import torch


def _as64(t) -> torch.Tensor:
    return torch.as_tensor(t, dtype=torch.float64)


def expected_s_m_s(sigma: torch.Tensor, m: torch.Tensor, n: int) -> torch.Tensor:
    """``E[Ŝ M Ŝ] = ((n+1)/n) Σ M Σ + (1/n) tr(MΣ) Σ`` for Gaussian x and symmetric ``M`` (d, d)."""
    sigma, m = _as64(sigma), _as64(m)
    return (n + 1) / n * sigma @ m @ sigma + torch.trace(m @ sigma) / n * sigma


def ahn_optimal_preconditioner(sigma: torch.Tensor, n: int, noise_std: float = 0.0) -> torch.Tensor:
    """``Γ* = (((n+1)/n) Σ + ((tr Σ + σ²)/n) I)⁻¹`` (Ahn et al. 2023 Thm 1; w* ~ N(0, I))."""
    sigma = _as64(sigma)
    eye = torch.eye(sigma.shape[0], dtype=torch.float64)
    return torch.linalg.inv((n + 1) / n * sigma + (torch.trace(sigma) + noise_std**2) / n * eye)


def optimal_one_layer_preconditioner(
    sigma: torch.Tensor, n: int, noise_std: float = 0.0, weight_cov: torch.Tensor | None = None
) -> torch.Tensor:
    """General one-step optimum ``Γ* = Σ_w Σ (E[Ŝ Σ_w Ŝ] + (σ²/n) Σ)⁻¹`` (``Σ_w`` default I)."""
    sigma = _as64(sigma)
    d = sigma.shape[0]
    cov_w = torch.eye(d, dtype=torch.float64) if weight_cov is None else _as64(weight_cov)
    e_w = expected_s_m_s(sigma, cov_w, n) + noise_std**2 / n * sigma
    # Γ E_w = Σ_w Σ  →  E_wᵀ Γᵀ = (Σ_w Σ)ᵀ
    return torch.linalg.solve(e_w.T, (cov_w @ sigma).T).T


def optimal_one_step_scale(n: int, d: int, noise_std: float = 0.0) -> float:
    """Optimal GD step ``n / (n + d + 1 + σ²)`` for isotropic x, w* ~ N(0, I) (Mahankali et al.)."""
    return n / (n + d + 1 + noise_std**2)


def one_layer_loss(
    gamma: torch.Tensor,
    sigma: torch.Tensor,
    n: int,
    noise_std: float = 0.0,
    weight_cov: torch.Tensor | None = None,
) -> float:
    """Exact ``E(x_qᵀ Γ (1/n) Xᵀ y − y_q)²`` (formula in the module docstring); ``Σ_w`` default I.

    ``gamma`` (d, d) may be any matrix (not necessarily symmetric).
    """
    gamma, sigma = _as64(gamma), _as64(sigma)
    d = sigma.shape[0]
    cov_w = torch.eye(d, dtype=torch.float64) if weight_cov is None else _as64(weight_cov)
    s2 = noise_std**2
    loss = (
        torch.trace(sigma @ gamma @ expected_s_m_s(sigma, cov_w, n) @ gamma.T)
        - 2 * torch.trace(sigma @ gamma @ sigma @ cov_w)
        + torch.trace(sigma @ cov_w)
        + s2 / n * torch.trace(sigma @ gamma @ sigma @ gamma.T)
        + s2
    )
    return float(loss)
