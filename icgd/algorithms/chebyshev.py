"""Richardson and Chebyshev iteration for the in-context normal equations `Ŝ w = b`.

For one prompt with inputs `X ∈ R^{n×d}` (rows `x_iᵀ`) and labels `y ∈ R^n`,

    Ŝ = (1/n) XᵀX,     b = (1/n) Xᵀ y,     r(w) = b − Ŝ w = −∇R(w),

with `R(w) = (1/2n) Σ_i (x_iᵀ w − y_i)²`. Both methods start at `w_0 = 0` and keep every iterate in
the Krylov space of `(Ŝ, b)`, so on a rank-deficient `Ŝ` (n < d) they stay in the row space of X
and approach the minimum-norm OLS solution `w* = Ŝ⁺ b = X⁺ y`.

**Richardson** (plain GD with one fixed step ω):

    w_{k+1} = w_k + ω r(w_k),     w_k − w* = (I − ω Ŝ)^k (w_0 − w*).

On eigenvalues in `[λ_lo, λ_hi]` the best fixed step is `ω = 2/(λ_lo + λ_hi)`, with contraction
`(κ − 1)/(κ + 1)` per step, `κ = λ_hi/λ_lo`.

**Chebyshev iteration** (Golub & Varga 1961; Saad, "Iterative methods for sparse linear systems",
Alg. 12.1): with `θ = (λ_hi + λ_lo)/2` (centre), `δ = (λ_hi − λ_lo)/2` (half-width),

    w_1 = w_0 + r_0 / θ,
    w_{k+1} = w_k + γ_k (w_k − w_{k−1}) + 2 τ_k r(w_k),    k ≥ 1,
    τ_0 = 1/θ,   τ_k = 1 / (2θ − δ² τ_{k−1}),   γ_k = δ² τ_k τ_{k−1}.

This is Saad's `ρ_k = 1/(2σ − ρ_{k−1})`, `σ = θ/δ`, written with `τ_k = ρ_k/δ` so that `δ = 0`
(all eigenvalues equal) needs no special case. The three-term recurrence gives

    w_k − w* = p_k(Ŝ)(w_0 − w*),     p_k(λ) = T_k((θ − λ)/δ) / T_k(θ/δ),

with `T_k` the Chebyshev polynomial of the first kind: among polynomials of degree k with
`p(0) = 1`, `p_k` has the least maximum on `[λ_lo, λ_hi]`, namely `1/T_k(θ/δ) ≤
2 ((√κ − 1)/(√κ + 1))^k` — `√κ` where Richardson has `κ`. An eigenvalue outside the interval
(below λ_lo) is not damped and may grow, so the interval must cover the spectrum of `Ŝ` on its
range.

**The interval** (`spectral_interval`, ours): by default, per prompt, `λ_hi = λ_max(Ŝ)` and
`λ_lo` = the smallest eigenvalue above `rtol · λ_max` with `rtol = max(n, d) · ε_dtype` (smaller
ones are the null space of a rank-deficient Ŝ up to rounding; b has no component there), from one
symmetric eigen-decomposition per prompt. A prompt with `Ŝ = 0` gets `[1, 1]` (then b = 0 and
every iterate is 0). An interval may be given instead, as numbers or (B,) tensors.

Every function works on a batch of B prompts: X (B, n, d), y (B, n).
"""

from __future__ import annotations

import torch
from torch import Tensor

from icgd.algorithms.gd import GDResult, empirical_risk_gradient
from icgd.algorithms.plugins import ALGORITHMS

Interval = tuple[float | Tensor, float | Tensor]


def _check(X: Tensor, y: Tensor, n_steps: int) -> None:
    if X.ndim != 3 or y.shape != X.shape[:2]:
        raise ValueError(
            f"expected X (B, n, d) and y (B, n), got {tuple(X.shape)} and {tuple(y.shape)}"
        )
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 0:
        raise ValueError(f"n_steps must be a non-negative integer, got {n_steps!r}")


def spectral_interval(X: Tensor, rtol: float | None = None) -> tuple[Tensor, Tensor]:
    """`(λ_lo, λ_hi)` of `Ŝ = (1/n) XᵀX` per prompt: X (B, n, d) → two (B,) tensors.

    `λ_hi = λ_max(Ŝ)`; `λ_lo` is the smallest eigenvalue above `rtol · λ_max` (default
    `rtol = max(n, d) · ε` of X's dtype), i.e. the smallest non-zero one. `Ŝ = 0` gives `[1, 1]`.
    """
    if X.ndim != 3:
        raise ValueError(f"expected X (B, n, d), got {tuple(X.shape)}")
    n, d = X.shape[1], X.shape[2]
    if rtol is None:
        rtol = max(n, d) * torch.finfo(X.dtype).eps
    lam = torch.linalg.eigvalsh(X.transpose(1, 2) @ X / n)  # (B, d), ascending
    hi = lam[:, -1].clamp_min(0)  # (B,)
    above = lam > rtol * hi[:, None]  # (B, d): the non-zero eigenvalues
    lo = torch.where(above, lam, torch.full_like(lam, torch.inf)).amin(dim=1)  # (B,)
    zero = hi <= 0
    one = torch.ones_like(hi)
    return torch.where(zero, one, lo), torch.where(zero, one, hi)


def _interval(X: Tensor, interval: Interval | None) -> tuple[Tensor, Tensor]:
    """`(λ_lo, λ_hi)` as (B,) tensors: the default `spectral_interval`, or a checked given one."""
    if interval is None:
        return spectral_interval(X)
    B = X.shape[0]
    lo, hi = (
        torch.as_tensor(v, dtype=X.dtype, device=X.device).expand(B).clone() for v in interval
    )
    if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
        raise ValueError("interval: λ_lo and λ_hi must be finite")
    if not ((lo >= 0).all() and (hi >= lo).all() and (hi > 0).all()):
        raise ValueError("interval: need 0 <= λ_lo <= λ_hi and λ_hi > 0")
    return lo, hi


def richardson_iteration(
    X: Tensor,
    y: Tensor,
    n_steps: int,
    omega: float | Tensor | None = None,
    interval: Interval | None = None,
) -> GDResult:
    """K = `n_steps` Richardson steps `w_{k+1} = w_k + ω (b − Ŝ w_k)` from `w_0 = 0`: GD with the
    fixed step ω (module docstring).

    X: (B, n, d), y: (B, n). omega: a number, a (B,) tensor, or None for the optimal
    `ω = 2/(λ_lo + λ_hi)` of `interval` (default: `spectral_interval(X)` per prompt).
    Returns a `GDResult` with weights (K+1, B, d).
    """
    _check(X, y, n_steps)
    B, _, d = X.shape
    if omega is None:
        lo, hi = _interval(X, interval)
        om = 2.0 / (lo + hi)  # (B,)
    else:
        om = torch.as_tensor(omega, dtype=X.dtype, device=X.device).expand(B)
    w = X.new_zeros(B, d)
    iterates = [w]
    for _ in range(n_steps):  # a loop over the K steps only
        w = w - om[:, None] * empirical_risk_gradient(X, y, w)  # + ω r(w)
        iterates.append(w)
    return GDResult(weights=torch.stack(iterates))  # (K+1, B, d)


def chebyshev_iteration(
    X: Tensor, y: Tensor, n_steps: int, interval: Interval | None = None
) -> GDResult:
    """K = `n_steps` steps of Chebyshev iteration for `Ŝ w = b` from `w_0 = 0` (module docstring:
    the three-term recurrence and its error polynomial `T_k((θ − λ)/δ) / T_k(θ/δ)`).

    X: (B, n, d), y: (B, n). interval: `(λ_lo, λ_hi)`, numbers or (B,) tensors with
    `0 <= λ_lo <= λ_hi`, `λ_hi > 0`, covering the non-zero spectrum of Ŝ; default
    `spectral_interval(X)` per prompt. Returns a `GDResult` with weights (K+1, B, d).
    """
    _check(X, y, n_steps)
    B, _, d = X.shape
    lo, hi = _interval(X, interval)
    theta = ((hi + lo) / 2)[:, None]  # (B, 1): centre
    delta2 = (((hi - lo) / 2) ** 2)[:, None]  # (B, 1): squared half-width
    w_prev = w = X.new_zeros(B, d)
    iterates = [w]
    tau = 1.0 / theta  # (B, 1): τ_0
    for k in range(n_steps):  # a loop over the K steps only
        r = -empirical_risk_gradient(X, y, w)  # (B, d): b − Ŝ w
        if k == 0:
            w_next = w + tau * r
        else:
            tau_prev, tau = tau, 1.0 / (2 * theta - delta2 * tau)
            w_next = w + delta2 * tau * tau_prev * (w - w_prev) + 2 * tau * r
        w_prev, w = w, w_next
        iterates.append(w)
    return GDResult(weights=torch.stack(iterates))  # (K+1, B, d)


ALGORITHMS.register("richardson", richardson_iteration)
ALGORITHMS.register("chebyshev", chebyshev_iteration)
