"""Is the looped optimum a*·Σ⁻¹ a minimum or a saddle? The curvature along antisymmetric directions.

In whitened coordinates the looped loss is ``f(G) = E ‖(I − Gᵀ S̃)^L‖_F²`` (`icgd.theory.looped`),
with ``S̃ = GᵀG/n`` orthogonally invariant in law, so ``f(O G Oᵀ) = f(G)`` for every orthogonal O.
At ``G = a I`` the Hessian is therefore a quadratic form on the matrices invariant under
``K ↦ O K Oᵀ``. It has no cross term between symmetric and antisymmetric matrices (no invariant
pairing between those representations), and on the antisymmetric ones, an irreducible
representation of O(d) for d ≥ 3, it is a single multiple ``c · ‖K‖_F²``. So the sign of one number

    c(L, n, d) = d²/dt² f(a I + t K) at t = 0,   ‖K‖_F = 1, K = −Kᵀ (any such K),

says whether ``a*·Σ⁻¹`` is a local minimum along antisymmetric directions (c > 0) or a saddle
(c < 0), in which case the minimiser of the looped loss is not a multiple of Σ⁻¹ at all. Gatmiry et
al. (2024, Thm 3.2) bound the distance of the minimiser from a multiple of Σ⁻¹ by a constant that
is vacuous at small n, so a saddle there contradicts nothing they prove; it is what `looped-gd`
measures. (For d = 2, so(2) is one-dimensional and the same formula holds; d = 1 has no such K.)

Computed by central differences of the per-draw loss with common random numbers (the same S̃ for
t = −h, 0, +h), so the standard error is that of the second difference alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from icgd.core.rng import make_generator

_CHUNK = 8_192


@dataclass(frozen=True)
class SkewCurvature:
    """``c(L, n, d)`` at the scale ``a`` with its standard error (see the module docstring)."""

    L: int
    n: int
    d: int
    a: float
    curvature: float
    se: float


def skew_curvature(
    L: int,
    n: int,
    d: int,
    a: float,
    *,
    direction: torch.Tensor | None = None,
    n_samples: int = 50_000,
    seed: int = 0,
    step: float = 1e-3,
) -> SkewCurvature:
    """Second derivative of ``E ‖(I − (aI + tK)ᵀ S̃)^L‖_F²`` at t = 0 along a unit antisymmetric K.

    `a` is the scale to test (usually ``optimal_loop_scale(L, n, d).a``). `direction` (d, d) is
    made antisymmetric and unit-norm, ``K = (D − Dᵀ)/‖D − Dᵀ‖_F``; default ``(e₁e₂ᵀ − e₂e₁ᵀ)/√2``.
    By the invariance argument of the module docstring every K gives the same value.
    """
    if d < 2 or L < 1 or n < 1 or n_samples < 2:
        raise ValueError(f"need d >= 2, L >= 1, n >= 1, n_samples >= 2; got {L=}, {n=}, {d=}")
    eye = torch.eye(d, dtype=torch.float64)
    if direction is None:
        direction = torch.zeros(d, d, dtype=torch.float64)
        direction[0, 1] = 1.0
    K = direction.to(torch.float64) - direction.to(torch.float64).T
    if float(K.norm()) == 0.0:
        raise ValueError("direction has no antisymmetric part")
    K = K / K.norm()
    generator = make_generator(seed)

    def loss(G: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
        M = torch.linalg.matrix_power(eye - G.T @ S, L)  # (s, d, d)
        return M.square().sum(dim=(-1, -2))  # (s,)

    second_differences = []
    done = 0
    while done < n_samples:
        size = min(_CHUNK, n_samples - done)
        g = torch.randn(size, n, d, generator=generator, dtype=torch.float64)
        S = g.transpose(1, 2) @ g / n  # (s, d, d) whitened Wishart / n
        f_plus, f_zero = loss(a * eye + step * K, S), loss(a * eye, S)
        f_minus = loss(a * eye - step * K, S)
        second_differences.append((f_plus - 2 * f_zero + f_minus) / step**2)
        done += size
    values = torch.cat(second_differences)
    return SkewCurvature(
        L=L,
        n=n,
        d=d,
        a=float(a),
        curvature=float(values.mean()),
        se=float(values.std() / math.sqrt(values.numel())),
    )
