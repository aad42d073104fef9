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

import math

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


def optimal_prefix_step_scale(n_max: int, d: int, noise_std: float = 0.0) -> float:
    """Optimal one-step η of ``ŷ = (η/n_max) x_qᵀ Σ_{i≤k} y_i x_i`` when the number of points k is
    uniform on 1 … n_max (prompts zero-padded to n_max, as `which-algorithm` trains; isotropic x,
    w* ~ N(0, I), label noise σ).

    With ``g_k = x_qᵀ X_kᵀ y``: ``E[g_k y_q] = k d`` and ``E[g_k²] = k d (k + d + 1 + σ²)``
    (Wishart: ``E tr((X_kᵀX_k)²) = k d (k + d + 1)``), and the loss is quadratic in η, so

        η* = n_max Σ_k k / Σ_k k (k + d + 1 + σ²).

    At a single k = n it is `optimal_one_step_scale`.
    """
    ks = range(1, n_max + 1)
    return n_max * sum(ks) / sum(k * (k + d + 1 + noise_std**2) for k in ks)


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


# --- Test length M ≠ n, covariate shift, kept training scale (Zhang, Frei, Bartlett 2024 §4.1) ---
#
# Trained at length n with w* ~ N(0, I), the layer's gradient-flow limit (ZFB) predicts
# ``ŷ = x_qᵀ Γ⁻¹ (c/M) Σ_{i≤M} y_i x_i`` with ``Γ = (1 + 1/n) Λ + ((tr Λ + σ²)/n) I``, i.e.
# ``Γ⁻¹ = ahn_optimal_preconditioner(Λ, n, σ)``; ``c = 1`` (scale 1/M) or ``c = M/n`` (the training
# scale 1/n kept). Test inputs scaled by α (context and query, labels ``y = wᵀ(αx) + σε``) have
# covariance ``Λ' = α²Λ``. For any preconditioner G the risk is `one_layer_loss` with
# ``(G, Σ, n) → (cG, Λ', M)``; with ``S = (1/M) Σ x_i x_iᵀ``, ``E[S] = Λ'``,
# ``E[S B S] = Λ'BΛ' + (Λ'BᵀΛ' + tr(BΛ')Λ')/M``, so it is affine in 1/M:
#
#   R(M) = σ² + tr(Σ_w (cGΛ' − I)ᵀ Λ' (cGΛ' − I))
#          + (c²/M) [tr(Λ' G Λ' Σ_w Λ' Gᵀ) + (tr(Σ_w Λ') + σ²) tr(Λ' G Λ' Gᵀ)].
#
# For ZFB's G = Γ⁻¹ and Σ_w = I everything is diagonal in Λ's eigenbasis: with eigenvalues λ_j,
# ``g_j = 1/((1 + 1/n)λ_j + (tr Λ + σ²)/n)``, ``μ_j = α²λ_j``, ``a_j = c g_j``,
#
#   R(M) = σ² + Σ_j μ_j (1 − μ_j a_j)² + (1/M) Σ_j μ_j² a_j² (μ_j + Σ_k μ_k + σ²),
#
# and as M → ∞ (c = 1) the floor ``σ² + Σ_j μ_j (1 − μ_j g_j)²`` stays; at α = 1,
# ``1 − λ_j g_j = (λ_j + tr Λ + σ²)/((n+1)λ_j + tr Λ + σ²)`` > 0, so the floor exceeds σ² by
# ``Σ_j λ_j ((λ_j + tr Λ + σ²)/((n+1)λ_j + tr Λ + σ²))²`` (isotropic: ``d ((d+1+σ²)/(n+d+1+σ²))²``).


def zfb_gamma(sigma: torch.Tensor, n: int, noise_std: float = 0.0) -> torch.Tensor:
    """ZFB's ``Γ = (1 + 1/n) Λ + ((tr Λ + σ²)/n) I``; its inverse is Ahn et al.'s Γ*."""
    sigma = _as64(sigma)
    eye = torch.eye(sigma.shape[0], dtype=torch.float64)
    return (1 + 1 / n) * sigma + (torch.trace(sigma) + noise_std**2) / n * eye


def one_layer_risk(
    gamma: torch.Tensor,
    sigma: torch.Tensor,
    m: float,
    noise_std: float = 0.0,
    weight_cov: torch.Tensor | None = None,
    *,
    alpha: float = 1.0,
    scale: float = 1.0,
) -> float:
    """Exact risk of ``ŷ = x_qᵀ (scale·Γ) (1/m) Σ_{i≤m} y_i x_i`` at test length ``m`` with inputs
    ``α x``, ``x ~ N(0, Σ)``, ``w* ~ N(0, Σ_w)`` (default I), any (d, d) ``gamma``.

    ``m = math.inf`` gives the limit (the 1/m terms vanish); formula in the block above.
    """
    gamma, sigma = _as64(gamma), _as64(sigma)
    d = sigma.shape[0]
    cov_w = torch.eye(d, dtype=torch.float64) if weight_cov is None else _as64(weight_cov)
    lam = alpha**2 * sigma
    g = scale * gamma
    if math.isinf(m):
        e = g @ lam - torch.eye(d, dtype=torch.float64)
        return float(torch.trace(cov_w @ e.T @ lam @ e) + noise_std**2)
    return one_layer_loss(g, lam, m, noise_std=noise_std, weight_cov=cov_w)


def risk_at_test_length(
    m: float,
    sigma: torch.Tensor,
    n: int,
    noise_std: float = 0.0,
    *,
    alpha: float = 1.0,
    keep_train_scale: bool = False,
) -> float:
    """ZFB's R(M): the risk at test length ``m`` of the layer trained at length ``n``
    (``w* ~ N(0, I)``, preconditioner ``Γ⁻¹``), test inputs scaled by ``alpha``; with
    ``keep_train_scale`` the prediction uses 1/n instead of 1/m (× m/n).
    ``m = math.inf``: the floor.

    Closed form in Λ's eigenvalues (block above); `one_layer_risk` is the matrix form.
    """
    if math.isinf(m) and keep_train_scale:
        raise ValueError("with the training scale kept the risk grows without bound as m → ∞")
    sigma = _as64(sigma)
    lam = torch.linalg.eigvalsh(sigma)
    s2 = noise_std**2
    g = 1 / ((1 + 1 / n) * lam + (lam.sum() + s2) / n)
    mu = alpha**2 * lam
    a = g * (m / n if keep_train_scale else 1.0)
    risk = s2 + (mu * (1 - mu * a) ** 2).sum()
    if not math.isinf(m):
        risk = risk + (mu**2 * a**2 * (mu + mu.sum() + s2)).sum() / m
    return float(risk)


def risk_floor(sigma: torch.Tensor, n: int, noise_std: float = 0.0, alpha: float = 1.0) -> float:
    """``lim_{M→∞} R(M) = σ² + Σ_j α²λ_j (1 − α²λ_j g_j)²`` (> σ²: the floor does not vanish)."""
    return risk_at_test_length(math.inf, sigma, n, noise_std, alpha=alpha)
