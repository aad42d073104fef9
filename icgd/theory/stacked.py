"""Optimal per-layer scales of a stacked linear transformer, ``A_l = a_l Σ⁻¹`` (Ahn et al. Thm 3).

Setting as in `icgd.theory.looped` (``w* ~ N(0, Σ⁻¹)``, σ = 0) but with a different scale per
layer. The error after L steps is ``−Π_l (I − a_l Σ⁻¹ Ŝ) w*`` and the loss is

    ℓ(a_1..a_L) = E Σ_j p(λ_j(S̃))²,     p(λ) = Π_l (1 − a_l λ) = Σ_{k=0}^L c_k λ^k,  c_0 = 1.

With the Hankel matrix ``H_{km} = m_{k+m}`` of Wishart moments, ``ℓ = cᵀ H c``. Minimising over
all degree-L polynomials with ``p(0) = 1`` is a linear solve ``H[1:,1:] c[1:] = −H[1:,0]``; the
minimiser is the kernel (Christoffel–Darboux) polynomial ``K_L(λ, 0)/K_L(0, 0)`` of the eigenvalue
measure, whose roots are real and lie inside the support (here ``(0, ∞)``). The layer scales are
the reciprocals of the roots; only the *set* is identifiable (layers commute in this model), so we
return them sorted ascending. Every polynomial with ``p(0) = 1`` factors over the complex numbers,
so this is the global optimum over real (and complex) scales.

For L = 1 the optimum equals the looped L = 1 optimum ``a = m_1/m_2``; for any L it is no worse
than the looped optimum (``a_l = a`` is a special case).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from icgd.theory.wishart import WishartMoments, moments_for_loops


@dataclass(frozen=True)
class StackedOptimum:
    """Optimal per-layer scales (sorted ascending) and the loss there with its SE."""

    L: int
    n: int
    d: int
    scales: tuple[float, ...]
    loss: float
    loss_se: float


def _square_coeffs(c: np.ndarray) -> torch.Tensor:
    """Coefficients of ``p(λ)²`` from those of ``p`` (ascending powers)."""
    return torch.from_numpy(np.convolve(c, c)).to(torch.float64)


def stacked_loss(
    scales: Sequence[float],
    n: int,
    d: int,
    *,
    moments: WishartMoments | None = None,
    n_samples: int = 200_000,
    seed: int = 0,
) -> tuple[float, float]:
    """``(E Σ_j Π_l (1 − a_l λ_j)², SE)`` for per-layer preconditioners ``a_l Σ⁻¹``."""
    scales = [float(a) for a in scales]
    L = len(scales)
    moments = moments_for_loops(L, n, d, moments, n_samples, seed)
    c = np.array([1.0])
    for a in scales:
        c = np.convolve(c, [1.0, -a])  # multiply by (1 − a λ)
    return moments.expectation(_square_coeffs(c))


def optimal_layer_scales(
    L: int,
    n: int,
    d: int,
    *,
    moments: WishartMoments | None = None,
    n_samples: int = 200_000,
    seed: int = 0,
) -> StackedOptimum:
    """Best per-layer scales ``a_1 ≤ … ≤ a_L`` for L stacked layers ``A_l = a_l Σ⁻¹``.

    Raises ``RuntimeError`` if the optimal polynomial has non-real roots (impossible in exact
    arithmetic for a positive measure; it would signal an ill-conditioned Hankel solve).
    """
    moments = moments_for_loops(L, n, d, moments, n_samples, seed)
    m = moments.moments.numpy()
    H = np.array([[m[k + j] for j in range(L + 1)] for k in range(L + 1)])  # (L+1, L+1)
    c = np.empty(L + 1)
    c[0] = 1.0
    c[1:] = np.linalg.solve(H[1:, 1:], -H[1:, 0])
    roots = np.polynomial.Polynomial(c).roots()
    if np.any(np.abs(roots.imag) > 1e-8 * np.abs(roots)) or np.any(roots.real <= 0):
        raise RuntimeError(f"optimal polynomial has non-real or non-positive roots: {roots}")
    scales = tuple(sorted(float(1.0 / r) for r in roots.real))
    loss, loss_se = moments.expectation(_square_coeffs(c))
    return StackedOptimum(L=L, n=n, d=d, scales=scales, loss=loss, loss_se=loss_se)
