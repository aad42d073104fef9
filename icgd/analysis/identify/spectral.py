"""Closed-form predictions of the linear in-context algorithms, batched over parameter grids.

For one prompt put `Ŝ = (1/n) XᵀX = U diag(s) Uᵀ` (eigenvalues `s_j ≥ 0`), `b = (1/n) Xᵀ y`,
`q = Uᵀ x_q` and `c = Uᵀ b`. GD, iterative Newton, Chebyshev iteration, ridge and OLS all return
`w = h(Ŝ) b` for a scalar *filter* `h` applied to the eigenvalues (each iterate is a polynomial or
rational function of Ŝ times b), so their prediction on the query is

    ŷ = x_qᵀ h(Ŝ) b = Σ_j p_j h(s_j),        p_j = q_j c_j.

One symmetric eigendecomposition per prompt then prices any parameter value at O(d) per prompt,
which is what lets `identify` scan whole grids of step sizes, α's and λ's at once. The filters:

- GD, k steps of size η from 0 (`icgd.algorithms.gradient_descent`):
  `h(s) = η Σ_{i<k} (1 − ηs)^i = η G(1 − ηs, k)`, `G(r, m) = Σ_{i<m} r^i = (1 − r^m)/(1 − r)`.
- Iterative Newton, `M_0 = αŜ`, k steps (`icgd.algorithms.iterative_newton`):
  `I − ŜM_k = (I − αŜ²)^{2^k}`, so `h(s) = (1 − (1 − αs²)^{2^k})/s = αs G(1 − αs², 2^k)`.
- Chebyshev iteration on a shared interval `[λ_lo, λ_hi]` (`icgd.algorithms.chebyshev_iteration`):
  `h_k(s)` is its three-term recurrence run on the scalar system `s·h = 1`.
- Ridge (unnormalised XᵀX, `icgd.algorithms.ridge`): `w = (XᵀX + λI)⁻¹Xᵀy`, `h(s) = 1/(s + λ/n)`.
- OLS: `h(s) = 1/s` on the range of Ŝ (s above `max(n, d)·ε·s_max`), 0 on its null space.

Debiased GD (He et al. 2025, `icgd.algorithms.debiased_gd`) is GD on the centred covariates
`x_i − x̄` with the raw query: the same GD filter on the spectrum of the centred data
(`spectrum(..., centred=True)`).

`G(r, m)` is evaluated by binary doubling (`geometric`), without the cancellation of
`(1 − r^m)/(1 − r)` for small steps; everything is differentiable (forward and reverse mode),
which the fits and the bootstrap use. Tests check every filter against its reference algorithm
at 1e-10.

Shapes: Spectrum fields are (B, d); parameters come as `theta (Q, P)` (Q parameter points, P
parameters); predictions are (Q, B).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Spectrum:
    """Eigen-data of the normal equations `Ŝ w = b` of B prompts (module docstring).

    s: (B, d) eigenvalues of Ŝ (ascending, clamped at 0); q: (B, d) `Uᵀ x_q`; c: (B, d) `Uᵀ b`;
    U: (B, d, d) eigenvectors (columns); n: the context length.
    """

    s: Tensor
    q: Tensor
    c: Tensor
    U: Tensor
    n: int

    @property
    def p(self) -> Tensor:
        """`p_j = q_j c_j`, (B, d): the weight of filter value `h(s_j)` in the prediction."""
        return self.q * self.c

    def predict(self, h: Tensor) -> Tensor:
        """`ŷ = Σ_j p_j h_j`: filter values h (Q, B, d) → predictions (Q, B)."""
        return (h * self.p).sum(-1)


def spectrum(X: Tensor, y: Tensor, x_q: Tensor, *, centred: bool = False) -> Spectrum:
    """The `Spectrum` of B prompts: X (B, n, d), y (B, n), x_q (B, d), computed in float64.

    `centred`: use `x_i − x̄` for the context covariates (debiased GD); the query stays raw.
    """
    X, y, x_q = X.double(), y.double(), x_q.double()
    if centred:
        X = X - X.mean(dim=1, keepdim=True)  # (B, n, d): rows (x_i − x̄)ᵀ
    n = X.shape[1]
    S_hat = X.transpose(1, 2) @ X / n  # (B, d, d)
    b = torch.einsum("bnd,bn->bd", X, y) / n  # (B, d)
    s, U = torch.linalg.eigh(S_hat)  # (B, d), (B, d, d)
    q = torch.einsum("bij,bi->bj", U, x_q)  # (B, d): Uᵀ x_q
    c = torch.einsum("bij,bi->bj", U, b)  # (B, d): Uᵀ b
    return Spectrum(s=s.clamp_min(0), q=q, c=c, U=U, n=n)


def geometric(r: Tensor, m: int) -> Tensor:
    """`G = Σ_{i<m} r^i` (= `(1 − r^m)/(1 − r)`, and m at r = 1) for an integer m ≥ 0.

    By binary doubling, `G_{a+b} = G_a + r^a G_b` and `G_{2a} = G_a (1 + r^a)`: about 4·log₂ m
    multiplications, exact powers (negative r allowed) and no cancellation for r near 1 (small
    steps), where `(1 − r^m)/(1 − r)` would lose digits. r (...) → (...).
    """
    if m < 0:
        raise ValueError(f"m must be >= 0, got {m}")
    total = torch.zeros_like(r)  # G_acc
    power = torch.ones_like(r)  # r^acc
    block, block_power = torch.ones_like(r), r  # G_{2^j}, r^{2^j}
    while m:
        if m & 1:
            total = total + power * block
            power = power * block_power
        m >>= 1
        if m:
            block = block * (1 + block_power)
            block_power = block_power * block_power
    return total


def gd_filter(s: Tensor, eta: Tensor, k: int) -> Tensor:
    """k GD steps of size η: `h(s) = η Σ_{i<k} (1 − ηs)^i`. s (B, d), eta (Q,) → (Q, B, d)."""
    eta = eta[:, None, None]
    return eta * geometric(1 - eta * s, k)


def newton_filter(s: Tensor, alpha: Tensor, k: int) -> Tensor:
    """k Newton–Schulz steps from `M_0 = αŜ`: `h(s) = αs Σ_{i<2^k} (1 − αs²)^i`. s (B, d),
    alpha (Q,) → (Q, B, d). Diverges (grows like |1 − αs²|^{2^k}) where `αs² > 2`."""
    alpha = alpha[:, None, None]
    return alpha * s * geometric(1 - alpha * s.square(), 2**k)


def ridge_filter(s: Tensor, lam: Tensor, n: int) -> Tensor:
    """Ridge with penalty λ on `‖Xw − y‖² + λ‖w‖²`: `h(s) = 1/(s + λ/n)`. (Q,) → (Q, B, d)."""
    return 1.0 / (s + lam[:, None, None] / n)


def ols_filter(s: Tensor, n: int) -> Tensor:
    """Minimum-norm least squares: `1/s` above `max(n, d)·ε·s_max`, else 0. s (B, d) → (B, d)."""
    rtol = max(n, s.shape[-1]) * torch.finfo(s.dtype).eps
    keep = s > rtol * s[:, -1:].clamp_min(0)
    return torch.where(keep, 1.0 / torch.where(keep, s, torch.ones_like(s)), torch.zeros_like(s))


def _chebyshev_iterates(s: Tensor, lo: Tensor, hi: Tensor, k_max: int):
    """Yield the Chebyshev filters `h_0 … h_{k_max}`, each (Q, B, d), of `chebyshev_filter`."""
    theta = ((hi + lo) / 2)[:, None, None]  # (Q, 1, 1)
    delta2 = (((hi - lo) / 2) ** 2)[:, None, None]
    h_prev = h = torch.zeros(lo.shape[0], *s.shape, dtype=s.dtype, device=s.device)
    yield h
    tau = 1.0 / theta
    for k in range(k_max):  # a loop over the steps only
        r = 1 - s * h
        if k == 0:
            h_next = h + tau * r
        else:
            tau_prev, tau = tau, 1.0 / (2 * theta - delta2 * tau)
            h_next = h + delta2 * tau * tau_prev * (h - h_prev) + 2 * tau * r
        h_prev, h = h, h_next
        yield h


def chebyshev_filter(s: Tensor, lo: Tensor, hi: Tensor, k: int) -> Tensor:
    """k steps of Chebyshev iteration on the interval `[λ_lo, λ_hi]`: s (B, d), lo, hi (Q,) →
    (Q, B, d).

    The recurrence of `icgd.algorithms.chebyshev_iteration` on the scalar system `s·h = 1` from
    `h_0 = 0`: `θ = (hi + lo)/2`, `δ² = ((hi − lo)/2)²`, `τ_0 = 1/θ`, `h_1 = 1/θ`,
    `h_{k+1} = h_k + δ²τ_kτ_{k−1}(h_k − h_{k−1}) + 2τ_k(1 − s h_k)`, `τ_k = 1/(2θ − δ²τ_{k−1})`.
    """
    *_, last = _chebyshev_iterates(s, lo, hi, k)
    return last


def chebyshev_predictions(spec: Spectrum, lo: Tensor, hi: Tensor, k_max: int) -> Tensor:
    """Predictions of every step k = 0 … k_max at once: lo, hi (Q,) → (k_max+1, Q, B)."""
    return torch.stack([spec.predict(h) for h in _chebyshev_iterates(spec.s, lo, hi, k_max)])


def chebyshev_interval(theta: Tensor) -> tuple[Tensor, Tensor]:
    """Search coordinates `(log λ_hi, u)`, u ≤ 0, → `(λ_lo, λ_hi) = (λ_hi e^{min(u, 0)}, λ_hi)`.
    theta (Q, 2) → two (Q,) tensors."""
    hi = theta[:, 0].exp()
    return hi * theta[:, 1].clamp_max(0).exp(), hi


def pgd_weights(S_hat: Tensor, b: Tensor, gamma: Tensor, k: int) -> Tensor:
    """k steps of preconditioned GD with one shared Γ from 0: `w ← w − Γ(Ŝw − b)`.

    S_hat (B, d, d), b (B, d), gamma (d, d) → w_k (B, d). The same iterates as
    `icgd.algorithms.preconditioned_gd` with every `Γ_l = Γ`, through `Ŝ` (O(d²) per prompt and
    step) instead of the residuals; differentiable in Γ.
    """
    w = torch.zeros_like(b)
    for _ in range(k):  # a loop over the steps only
        grad = (S_hat @ w.unsqueeze(-1)).squeeze(-1) - b  # (B, d): ∇R(w) = Ŝw − b
        w = w - grad @ gamma.T  # (B, d): rows (Γ ∇R)ᵀ
    return w
