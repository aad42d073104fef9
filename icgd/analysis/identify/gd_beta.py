"""GD-β — gradient descent from a learned start β — as a candidate of `identify`.

k GD steps of size η from the shared start `w_0 = β ∈ R^d` (`icgd.algorithms.gd_beta`):
`w_k = T_k β + w_k⁰`, `T_k = (I − ηŜ)^k`, `w_k⁰` GD from 0. With `Ŝ = U diag(s) Uᵀ` and
`q = Uᵀ x_q` the prediction is affine in β,

    ŷ = a_η · β + ŷ⁰_η,     a_η = U (q ∘ (1 − ηs)^k) ∈ R^d,     ŷ⁰_η = Σ_j p_j η G(1 − ηs_j, k)

(`icgd.analysis.identify.spectral`), so for each η the best β is a linear least-squares problem,
`β̂(η) = (AᵀA)⁻¹ Aᵀ (m − ŷ⁰_η)` with rows `a_{η,b}` (pseudo-inverse when singular). The fit
profiles β out: a coarse log grid of η (as for GD), a zoom on the profiled loss, then the joint
least-squares polish of (log η, β) — P = d + 1 parameters — and the one-step bootstrap as for
every candidate. Xie, Yuan, Rossi, Hannagan 2025 study in-context GD from a learned start.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import torch
from torch import Tensor

from icgd.algorithms import gd_beta
from icgd.analysis.identify.fitting import (
    FitData,
    StepFit,
    chunked_loss,
    polish,
    product_grid,
    zoom,
)
from icgd.analysis.identify.spectral import Spectrum, gd_filter


def _rows(spec: Spectrum, eta: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """`(a_η (Q, B, d), ŷ⁰_η (Q, B))` for step sizes eta (Q,) (module docstring)."""
    decay = (1 - eta[:, None, None] * spec.s) ** k  # (Q, B, d): (1 − ηs_j)^k
    a = torch.einsum("bij,qbj->qbi", spec.U, spec.q * decay)  # (Q, B, d): U (q ∘ decay)
    return a, spec.predict(gd_filter(spec.s, eta, k))


def _profile(spec: Spectrum, target: Tensor, k: int, theta: Tensor) -> Tensor:
    """Predictions (Q, B) at log η = theta[:, 0] with β at its least-squares best for each η."""
    a, base = _rows(spec, theta[:, 0].exp(), k)
    gram = torch.einsum("qbi,qbj->qij", a, a)  # (Q, d, d)
    rhs = torch.einsum("qbi,qb->qi", a, target - base)  # (Q, d)
    beta = (torch.linalg.pinv(gram, hermitian=True) @ rhs.unsqueeze(-1)).squeeze(-1)  # (Q, d)
    return (a * beta[:, None, :]).sum(-1) + base


def start_beta(a: Tensor, residual: Tensor) -> Tensor:
    """`β̂ = argmin_β ‖Aβ − r‖²` (minimum norm), rows `a_b` of A (B, d), r = m − ŷ⁰ (B,) → (d,).

    By SVD (LAPACK gelsd), not torch's CPU default driver gelsy: MKL's gelsy (QR with column
    pivoting) rounds differently with where its operands and workspace sit in memory, so the
    same prompts gave a β differing in the last bits from call to call, and same-seed runs of
    `identify` an ILWD (≈ 1e-30 at an exact fit) differing in the last bits. gelsd gives the
    same bits at every alignment (tested).
    """
    return torch.linalg.lstsq(a, residual.unsqueeze(-1), driver="gelsd").solution[:, 0]


def _joint(spec: Spectrum, k: int, theta: Tensor) -> Tensor:
    """Predictions (B,) at θ = (log η, β_1 … β_d)."""
    a, base = _rows(spec, theta[:1].exp(), k)
    return (a[0] * theta[1:]).sum(-1) + base[0]


class GDBeta:
    """k GD steps from a fitted start β (module docstring); steps tried: `steps` (default
    1 … 8); parameters `eta` and `beta` (d,)."""

    name = "gd-beta"
    parameter_names = ("eta", "beta")

    def __init__(self, steps: Sequence[int] = tuple(range(1, 9)), *, n_polish: int = 3) -> None:
        self.steps = tuple(int(k) for k in steps)
        if not self.steps or min(self.steps) < 1 or len(set(self.steps)) != len(self.steps):
            raise ValueError(f"steps must be distinct integers >= 1, got {list(steps)}")
        self.n_polish = n_polish

    def fit(self, data: FitData, target: Tensor) -> list[StepFit]:
        """Profiled grid and zoom in log η for every k, joint polish of the best `n_polish`."""
        spec = data.spectrum
        d = spec.s.shape[-1]
        center = -torch.log(spec.s.mean().clamp_min(1e-300)).item()  # log(1/c̄)
        lo, hi = math.log(1e-4), math.log(10.0)  # η on [1e-4, 10]/c̄, as for GD
        axis = center + torch.linspace(lo, hi, 57, dtype=torch.float64)
        grid = product_grid([axis])
        spacing = torch.tensor([(axis[-1] - axis[0]).item() / (len(axis) - 1)], dtype=grid.dtype)
        zoomed = []
        for k in self.steps:
            loss = chunked_loss(partial(_profile, spec, target, k), target, d)
            values = loss(grid)
            i = int(torch.argmin(values))
            z, value = zoom(loss, grid[i], spacing, best_loss=values[i].item())
            zoomed.append((value, k, z))
        fits = []
        for _, k, z in sorted(zoomed, key=lambda t: t[0])[: self.n_polish]:
            a, base = _rows(spec, z.exp(), k)  # β at the zoomed η, then the joint polish
            beta = start_beta(a[0], target - base[0])
            predict = partial(_joint, spec, k)
            theta, value = polish(predict, target, torch.cat([z, beta]))
            fits.append(StepFit(steps=k, theta=theta, loss=value, predict=predict))
        return fits

    def parameters(self, theta: Tensor) -> dict[str, Tensor]:
        return {"eta": theta[..., 0].exp(), "beta": theta[..., 1:]}

    def reference(self, X, y, x_q, steps, params):
        beta = params["beta"].to(X.dtype)
        return gd_beta(X, y, beta, float(params["eta"]), steps).predict(x_q)[-1]
