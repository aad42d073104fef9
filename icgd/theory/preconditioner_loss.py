"""Expected test loss of L steps of preconditioned GD with arbitrary (L, d, d) preconditioners.

Setting (SPEC §1): ``x_i, x_q ~ N(0, Σ)``, ``w* ~ N(0, Σ_w)``, ``y = Xw* + σε``,
``w_{l+1} = w_l − Γ_l (Ŝ w_l − Xᵀy/n)``, ``w_0 = 0``, prediction ``x_qᵀ w_L``. Since
``Xᵀy/n = Ŝ w* + v`` with ``v = (σ/n) Xᵀ ε``, the error ``e_l = w_l − w*`` obeys
``e_{l+1} = (I − Γ_l Ŝ) e_l + Γ_l v``, ``e_0 = −w*``, so

    e_L = −M w* + K v,   M = (I − Γ_{L−1}Ŝ)…(I − Γ_0 Ŝ),   K = Σ_l [Π_{m>l} (I − Γ_m Ŝ)] Γ_l,

(recursively ``M ← (I − Γ_l Ŝ) M``, ``K ← (I − Γ_l Ŝ) K + Γ_l``). With ``Cov(v | X) = (σ²/n) Ŝ``,
the loss conditional on X (Rao–Blackwellised over w*, ε, x_q, ε_q) is

    E[(x_qᵀ w_L − y_q)² | X] = tr(Σ M Σ_w Mᵀ) + (σ²/n) tr(Σ K Ŝ Kᵀ) + σ².

We average it over ``n_samples`` draws of X (batched in chunks) and report its SE.
``weight_cov`` defaults to the identity (w* ~ N(0, I)); pass ``Σ⁻¹`` for the Gatmiry setting.
"""

from __future__ import annotations

import torch

from icgd.core.rng import make_generator

_CHUNK = 4_096  # X draws per batch; fixed so that a seed fixes the numbers


def preconditioner_loss(
    preconditioners: torch.Tensor,
    sigma: torch.Tensor,
    n: int,
    *,
    weight_cov: torch.Tensor | None = None,
    noise_std: float = 0.0,
    n_samples: int = 20_000,
    seed: int = 0,
) -> tuple[float, float]:
    """``(loss, SE)`` of L steps of PGD; ``preconditioners`` is (L, d, d), Γ_0 applied first."""
    gammas = torch.as_tensor(preconditioners, dtype=torch.float64)
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    if gammas.ndim != 3 or gammas.shape[1:] != sigma.shape or sigma.shape[0] != sigma.shape[1]:
        raise ValueError(
            f"preconditioners must be (L, d, d) and sigma (d, d); got {tuple(gammas.shape)}, "
            f"{tuple(sigma.shape)}"
        )
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2, got {n_samples}")
    d = sigma.shape[0]
    eye = torch.eye(d, dtype=torch.float64)
    cov_w = eye if weight_cov is None else torch.as_tensor(weight_cov, dtype=torch.float64)
    chol = torch.linalg.cholesky(sigma)  # Σ = C Cᵀ, x = C g
    s2 = float(noise_std) ** 2
    generator = make_generator(seed)
    values = []
    done = 0
    while done < n_samples:
        size = min(_CHUNK, n_samples - done)
        g = torch.randn(size, n, d, generator=generator, dtype=torch.float64)  # (s, n, d)
        x = g @ chol.T  # (s, n, d), rows x_iᵀ = (C g_i)ᵀ
        s_hat = x.transpose(1, 2) @ x / n  # (s, d, d)
        m = eye.expand(size, d, d)
        k = torch.zeros(size, d, d, dtype=torch.float64)
        for gamma in gammas:  # loop over layers only
            step = eye - gamma @ s_hat  # (s, d, d)
            m = step @ m
            k = step @ k + gamma
        bias = torch.einsum("ij,sjk,kl,sil->s", sigma, m, cov_w, m)  # tr(Σ M Σ_w Mᵀ)
        val = bias + s2
        if s2 > 0:
            val = val + s2 / n * torch.einsum("ij,sjk,skl,sil->s", sigma, k, s_hat, k)
        values.append(val)
        done += size
    vals = torch.cat(values)  # (S,)
    return float(vals.mean()), float(vals.std() / vals.shape[0] ** 0.5)
