"""Optimal scale of a looped linear transformer = L steps of GD with preconditioner ``a Σ⁻¹``.

Setting (Gatmiry et al. 2024, Thm 3.2; SPEC §1.2): ``x ~ N(0, Σ)``, ``w* ~ N(0, Σ⁻¹)``, σ = 0,
``L`` loops of preconditioned GD ``w_{l+1} = w_l − Γ(Ŝ w_l − Xᵀy/n)``, ``w_0 = 0``. The error is
``w_L − w* = −(I − ΓŜ)^L w*``, so the population loss ``E[(x_qᵀ w_L − y_q)²]`` is

    E tr(Σ (I − ΓŜ)^L Σ⁻¹ (I − ΓŜ)^{L ᵀ}) = E ‖(I − Ãᵀ S̃)^L‖_F²,   Ã = Σ^{1/2} A Σ^{1/2}, Γ = Aᵀ,

which does not depend on Σ. For ``Γ = a Σ⁻¹`` (``Ã = a I``) it is

    ℓ_L(a) = E Σ_j (1 − a λ_j(S̃))^{2L} = Σ_{k=0}^{2L} C(2L, k) (−a)^k m_k,

a polynomial of degree 2L in ``a`` in the Wishart moments ``m_k`` (see `icgd.theory.wishart`).
It is strictly convex in ``a`` (a sum of convex functions), so it has one minimiser ``a*``; we find
it as the real root of ``ℓ'_L`` with the smallest ``ℓ_L`` (roots of a polynomial, then Newton
polishing). ``ℓ_L(0) = d``; for L = 1, ``a* = m_1/m_2 = n/(n + d + 1)`` and
``ℓ_1(a*) = d − m_1²/m_2 = d (d + 1)/(n + d + 1)``.

Standard error of ``a*``: delta method. ``a*`` solves ``ℓ̂'(a) = 0``; to first order
``a* − a₀ = −(ℓ̂'(a₀) − ℓ'(a₀)) / ℓ''(a₀)``, so ``SE(a*) = SD_s(f'_s(a*)) / (√S ℓ̂''(a*))`` with
``f_s`` the per-draw loss polynomial. (Checked against batch means over 32 chunks in the tests.)
The per-draw values involve ``λ_max^{2L−1}``, which is heavy-tailed, so at large L the SE
estimate is itself noisy (checked: over 40 seeds at S = 10⁵, L = 4, the delta SE ranged
0.0015–0.0028 around a seed-to-seed SD of 0.0017). Evaluating the polynomial in the moment basis
cancels terms up to ~10⁴ times the result at L = 4 (float64 keeps ~12 digits); fine for L ≲ 8.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

import numpy as np
import torch

from icgd.theory.wishart import WishartMoments, moments_for_loops


@dataclass(frozen=True)
class LoopedOptimum:
    """Minimiser ``a*`` of ``ℓ_L(a) = E Σ_j (1 − a λ_j(S̃))^{2L}`` with standard errors."""

    L: int
    n: int
    d: int
    a: float
    a_se: float
    loss: float
    loss_se: float


def looped_loss_coefficients(L: int) -> torch.Tensor:
    """``(2L+1,)`` coefficients ``c_k`` with ``(1 − a λ)^{2L} = Σ_k c_k(a) λ^k`` evaluated at a = 1.

    I.e. ``c_k = C(2L, k) (−1)^k``; multiply entry k by ``a^k`` for another ``a``.
    """
    values = [comb(2 * L, k) * (-1.0) ** k for k in range(2 * L + 1)]
    return torch.tensor(values, dtype=torch.float64)


def looped_loss(
    a: float,
    L: int,
    n: int,
    d: int,
    *,
    moments: WishartMoments | None = None,
    n_samples: int = 200_000,
    seed: int = 0,
) -> tuple[float, float]:
    """``(ℓ_L(a), SE)``: loss of L GD steps with preconditioner ``a Σ⁻¹`` (w* ~ N(0, Σ⁻¹), σ = 0).

    ``moments`` (order >= 2L, same n, d) is reused if given, else drawn with ``n_samples, seed``.
    """
    moments = moments_for_loops(L, n, d, moments, n_samples, seed)
    powers = torch.arange(2 * L + 1, dtype=torch.float64)
    return moments.expectation(looped_loss_coefficients(L) * float(a) ** powers)


def optimal_loop_scale(
    L: int,
    n: int,
    d: int,
    *,
    moments: WishartMoments | None = None,
    n_samples: int = 200_000,
    seed: int = 0,
) -> LoopedOptimum:
    """``a*(L, n, d) = argmin_a ℓ_L(a)`` from one Monte Carlo of the Wishart moments.

    Minimises the degree-2L polynomial exactly (all real roots of its derivative, the one with the
    smallest value, then Newton polishing). ``a_se`` by the delta method (module docstring),
    ``loss_se`` = SD of the per-draw loss at ``a*`` over ``√S``.
    """
    moments = moments_for_loops(L, n, d, moments, n_samples, seed)
    base = looped_loss_coefficients(L) * moments.moments[: 2 * L + 1]  # coefficient of a^k
    poly = np.polynomial.Polynomial(base.numpy())
    deriv = poly.deriv()
    roots = deriv.roots()
    real = roots[np.abs(roots.imag) <= 1e-7 * np.maximum(1.0, np.abs(roots))].real
    if real.size == 0:  # cannot happen for an odd-degree derivative; guard anyway
        raise RuntimeError("loss derivative has no real root")
    a = float(real[np.argmin(poly(real))])
    second = poly.deriv(2)
    for _ in range(20):  # Newton polishing on ℓ' = 0 (ℓ is strictly convex)
        step = float(deriv(a) / second(a))
        a -= step
        if abs(step) <= 1e-15 * max(1.0, abs(a)):
            break
    powers = torch.arange(2 * L + 1, dtype=torch.float64)
    coeffs = looped_loss_coefficients(L)
    loss, loss_se = moments.expectation(coeffs * a**powers)
    # per-draw derivative f'_s(a) = Σ_k k c_k a^{k-1} t_{s,k}
    dcoeffs = coeffs * powers * torch.where(powers > 0, a ** (powers - 1), torch.zeros(()))
    dvals = moments.per_draw(dcoeffs)
    a_se = float(dvals.std() / dvals.shape[0] ** 0.5) / float(second(a))
    return LoopedOptimum(L=L, n=n, d=d, a=a, a_se=a_se, loss=loss, loss_se=loss_se)
