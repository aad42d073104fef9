"""Constants of Gatmiry et al. (2024), as reported; diagnostics, not tested claims.

- Thm 3.2: the looped optimum satisfies ``A ∈ (1 ± c) Σ⁻¹`` with ``c = 8 δ d^{1/(2L)}``,
  ``δ = (8 L d / √n)^{1/(2L)}``. Since ``δ ≥ 1`` unless ``n > 64 L² d²``, the bound is vacuous
  (``c ≥ 1``) at the small n used in experiments (e.g. n = 20, d = 5); report it, don't rely on it.
  Use `icgd.theory.looped.optimal_loop_scale` for the actual optimum.
- Thm 3.4 (gradient dominance): ``‖∇_A ℓ‖² ≥ (1/16) ℓ(A)^{(2L−1)/L}`` in the region the flow visits.
"""

from __future__ import annotations

import math


def gatmiry_constant(L: int, d: int, n: int) -> tuple[float, float]:
    """``(c, δ)`` with ``δ = (8 L d / √n)^{1/(2L)}`` and ``c = 8 δ d^{1/(2L)}`` (as reported).

    Vacuous (``c ≥ 1``) at small n: e.g. L = 1, d = 5, n = 20 gives c ≈ 53.
    """
    if L < 1 or d < 1 or n < 1:
        raise ValueError(f"need L, d, n >= 1; got {L=}, {d=}, {n=}")
    delta = (8 * L * d / math.sqrt(n)) ** (1 / (2 * L))
    return 8 * delta * d ** (1 / (2 * L)), delta


def gradient_dominance_constant(L: int) -> tuple[float, float]:
    """``(κ, p) = (1/16, (2L − 1)/L)`` for ``‖∇ℓ‖² ≥ κ ℓ^p`` (Thm 3.4, as reported)."""
    if L < 1:
        raise ValueError(f"L must be >= 1, got {L}")
    return 1 / 16, (2 * L - 1) / L
