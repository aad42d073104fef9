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


# ------------------------------------------------------------------ the same number, in closed form
#
# In the eigenbasis of one draw, S̃ = VΛVᵀ, M₀ = I − aS̃ = V diag(μ) Vᵀ (μ_i = 1 − aλ_i) commutes
# with S̃. With K̃ = VᵀKV, N = KS̃ and f(t) = ‖(M₀ − tN)^L‖_F²:
#   d/dt (M₀ − tN)^L     = −Σ_k M₀^k N M₀^{L−1−k}           → entries −K̃_ij λ_j h₁(μ_i, μ_j),
#   d²/dt² (M₀ − tN)^L   = 2 Σ_{p+q+r=L−2} M₀^p N M₀^q N M₀^r,
# with h₁(x, y) = Σ_{k<L} x^k y^{L−1−k} and h₂(x, y) = Σ_{q≤L−2} (L−1−q) x^{L−2−q} y^q. Since
# f'' = 2‖D₁‖² + 2 tr(M₀^L D₂) and K̃_ji = −K̃_ij,
#   f''(0) = 2 Σ_{i≠j} K̃_ij² (λ_j² h₁(μ_i, μ_j)² − 2 μ_i^L λ_i λ_j h₂(μ_i, μ_j)).
# V is Haar and independent of Λ, so K̃ is a uniformly rotated unit antisymmetric matrix and
# E[K̃_ij²] = 1/(d(d−1)) for i ≠ j: averaging over V exactly leaves an expectation over the
# eigenvalues alone (lower variance than the finite differences above, and independent of them).


def _divided_sums(x: torch.Tensor, y: torch.Tensor, L: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``h₁(x, y)`` and ``h₂(x, y)`` of the comment above, elementwise (no division)."""
    h1 = sum(x**k * y ** (L - 1 - k) for k in range(L))
    h2 = sum((L - 1 - q) * x ** (L - 2 - q) * y**q for q in range(L - 1)) if L >= 2 else 0 * x
    return h1, h2


def _pair_average(terms: torch.Tensor) -> torch.Tensor:
    """``2/(d(d−1)) Σ_{i≠j} terms_ij`` per draw, terms (S, d, d)."""
    d = terms.shape[-1]
    off = ~torch.eye(d, dtype=torch.bool)
    return 2 * (terms * off).sum(dim=(-1, -2)) / (d * (d - 1))


def skew_curvature_from_eigenvalues(L: int, a: float, eigenvalues: torch.Tensor) -> SkewCurvature:
    """``c(L, n, d)`` at scale ``a`` from (S, d) eigenvalues of ``S̃`` (`whitened_eigenvalues`),
    exact over the eigenvectors (comment above); SE over the draws. ``n`` is reported as 0."""
    S, d = eigenvalues.shape
    if d < 2 or L < 1:
        raise ValueError(f"need d >= 2 and L >= 1; got {L=}, {d=}")
    lam = eigenvalues.to(torch.float64)
    mu = 1.0 - a * lam
    h1, h2 = _divided_sums(mu[:, :, None], mu[:, None, :], L)
    li, lj = lam[:, :, None], lam[:, None, :]
    values = _pair_average(lj**2 * h1**2 - 2 * mu[:, :, None] ** L * li * lj * h2)
    return SkewCurvature(
        L=L,
        n=0,
        d=d,
        a=float(a),
        curvature=float(values.mean()),
        se=float(values.std() / math.sqrt(S)),
    )


def skew_curvature_limit(
    L: int, d: int, *, n_samples: int = 100_000, seed: int = 0
) -> tuple[float, float]:
    """``(C, SE)`` with ``n^{L−1} c(L, n, d) → C(L, d)`` as n → ∞ at fixed L, d.

    For large n, ``√n (S̃ − I) → W`` (symmetric, ``W_ii ~ N(0, 2)``, ``W_ij ~ N(0, 1)``), ``a* =
    1 + O(1/n)``, so ``μ_i = −g_i/√n + O(1/n)`` with g the eigenvalues of W, and by homogeneity of
    h₁ (degree L−1) and μ^L h₂ (degree 2L−2) the formula above becomes ``n^{−(L−1)}`` times
    ``E 2/(d(d−1)) Σ_{i≠j} (h₁(g_i, g_j)² − 2 g_i^L h₂(g_i, g_j))``. For L = 2 this is exactly
    ``2/(d(d−1)) · 2 E[(tr W)² − ‖W‖_F²] = −4`` (``E(tr W)² = 2d``, ``E‖W‖_F² = d(d+1)``), so the
    saddle persists for all large n (for L = 1 the loss is quadratic and c = 2(n + d + 1)/n > 0).
    Monte Carlo over W.
    """
    if d < 2 or L < 1:
        raise ValueError(f"need d >= 2 and L >= 1; got {L=}, {d=}")
    generator = make_generator(seed)
    values = []
    for start in range(0, n_samples, _CHUNK):
        size = min(_CHUNK, n_samples - start)
        w = torch.randn(size, d, d, generator=generator, dtype=torch.float64)
        g = torch.linalg.eigvalsh((w + w.transpose(1, 2)) / math.sqrt(2))  # (s, d)
        h1, h2 = _divided_sums(g[:, :, None], g[:, None, :], L)
        values.append(_pair_average(h1**2 - 2 * g[:, :, None] ** L * h2))
    v = torch.cat(values)
    return float(v.mean()), float(v.std() / math.sqrt(v.numel()))
