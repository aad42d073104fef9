"""Preconditioned GD with one full d×d preconditioner Γ, as a candidate of `identify`.

k steps from `w_0 = 0` with the same Γ at every step (the looped form of Ahn et al. 2023, Lemma 1,
and Gatmiry et al. 2024), `Ŝ = (1/n) XᵀX`, `b = (1/n) Xᵀy`:

    w_{l+1} = w_l − Γ (Ŝ w_l − b),        ŷ = x_qᵀ w_k.

- **k = 1** is linear in Γ: `ŷ = x_qᵀ Γ b = Σ_ij Γ_ij x_{q,i} b_j = ⟨vec Γ, vec(x_q bᵀ)⟩`, so the
  fit to the model's predictions m (B,) is ordinary least squares with d² unknowns,
  `vec Γ̂ = F⁺ m`, `F_b = vec(x_{q,b} b_bᵀ)` (B, d²): exact (minimum-norm where the prompts leave
  a direction of Γ undetermined). A one-layer LSA whose prediction is `x_qᵀ Γ b` (Ahn et al.'s
  effective preconditioner, `icgd.analysis.effective_preconditioners`) is recovered exactly.
- **k ≥ 2**: ŷ is a polynomial of degree k in Γ; fitted by trust-region least squares
  (`icgd.analysis.identify.fitting.polish`, Jacobian by autodiff) from the better of
  two starts (ours): `η I` with η the best step of plain GD at k steps, and `c Γ̂_{k−1}` (the fit
  at k − 1 steps, rescaled), each scale chosen on a log grid.

A Γ per step (`Γ_l`, a stacked model's layers) is not fitted: that is d²·k parameters, and a
per-layer read-out is what `probe_layers` gives. Shapes: X (B, n, d), y (B, n), x_q (B, d).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import Tensor

from icgd.algorithms import preconditioned_gd
from icgd.analysis.identify.fitting import FitData, StepFit, polish
from icgd.analysis.identify.spectral import pgd_weights


def _predict(S_hat: Tensor, b: Tensor, x_q: Tensor, k: int, theta: Tensor) -> Tensor:
    """Predictions (B,) of k steps with Γ = θ reshaped (d, d) (row-major)."""
    d = x_q.shape[1]
    return (pgd_weights(S_hat, b, theta.reshape(d, d), k) * x_q).sum(-1)


def _scan_scale(
    A: Tensor, b: Tensor, q: Tensor, target: Tensor, k: int, base: Tensor
) -> tuple[Tensor, float]:
    """The best `c M_base` over c on a log grid: returns (M (d, d), loss). One batched pass of
    all G scales: iterates (G, B, d) of `w ← w + M(b − Aw)`."""
    scales = torch.logspace(-2, 1, 61, dtype=torch.float64)  # (G,)
    Ms = scales[:, None, None] * base  # (G, d, d)
    w = torch.zeros(scales.shape[0], *b.shape, dtype=b.dtype)  # (G, B, d)
    for _ in range(k):  # a loop over the steps only
        residual = torch.einsum("bij,gbj->gbi", A, w) - b  # (G, B, d): Aw − b
        w = w - torch.einsum("gij,gbj->gbi", Ms, residual)
    loss = ((w * q).sum(-1) - target).square().mean(-1)  # (G,)
    loss = torch.where(torch.isfinite(loss), loss, torch.full_like(loss, math.inf))
    i = int(torch.argmin(loss))
    return Ms[i], loss[i].item()


def fit_shared_matrix(
    moments: tuple[Tensor, Tensor],
    q: Tensor,
    target: Tensor,
    steps: Sequence[int],
    predict: Callable[[int, Tensor], Tensor],
    start: Tensor,
    max_nfev: int,
) -> list[StepFit]:
    """One StepFit per k in `steps` (increasing) of `w ← w + M(b − Aw)` from 0 with one d × d M
    shared by the k steps and `ŷ = qᵀ w_k` (module docstring: k = 1 by least squares, k ≥ 2
    polished from the better of the scaled `start` and the scaled fit at k − 1).

    moments: A (B, d, d), b (B, d); q (B, d); predict(k, θ) → (B,) with M = θ reshaped (d, d).
    Preconditioned GD (A = Ŝ, b = Xᵀy/n, q = x_q) and preconditioned TD(0) share it.
    """
    A, b = moments
    d = q.shape[1]
    fits: list[StepFit] = []
    previous: Tensor | None = None
    for k in sorted(steps):
        predict_k = partial(predict, k)
        if k == 1:
            F = (q[:, :, None] * b[:, None, :]).reshape(-1, d * d)  # (B, d²): q bᵀ
            theta = torch.linalg.lstsq(F, target.unsqueeze(-1), driver="gelsd").solution[:, 0]
            with torch.no_grad():
                loss = (predict_k(theta) - target).square().mean().item()
        else:
            starts = [_scan_scale(A, b, q, target, k, start)]
            if previous is not None:
                starts.append(_scan_scale(A, b, q, target, k, previous))
            M0 = min(starts, key=lambda s: s[1])[0]
            theta, loss = polish(predict_k, target, M0.reshape(-1), max_nfev=max_nfev)
        previous = theta.reshape(d, d)
        fits.append(StepFit(steps=k, theta=theta, loss=loss, predict=predict_k))
    return fits


class PreconditionedGD:
    """k steps of preconditioned GD with one fitted d×d Γ (module docstring); steps tried:
    `steps` (default 1, 2, 3). Parameter: `gamma` (d, d)."""

    name = "preconditioned-gd"
    parameter_names = ("gamma",)

    def __init__(self, steps: Sequence[int] = (1, 2, 3), *, max_nfev: int = 100) -> None:
        self.steps = tuple(int(k) for k in steps)
        if not self.steps or min(self.steps) < 1 or len(set(self.steps)) != len(self.steps):
            raise ValueError(f"steps must be distinct integers >= 1, got {list(steps)}")
        self.max_nfev = max_nfev

    def fit(self, data: FitData, target: Tensor) -> list[StepFit]:
        """One StepFit per k in `steps` (module docstring), in increasing k."""
        S_hat, b = data.moments
        curvature = max(torch.diagonal(S_hat, dim1=1, dim2=2).mean().item(), 1e-300)
        eye = torch.eye(data.x_q.shape[1], dtype=torch.float64)
        predict = partial(_predict, S_hat, b, data.x_q)
        start = eye / curvature
        return fit_shared_matrix(
            (S_hat, b), data.x_q, target, self.steps, predict, start, self.max_nfev
        )

    def parameters(self, theta: Tensor) -> dict[str, Tensor]:
        d = math.isqrt(theta.shape[-1])
        return {"gamma": theta.reshape(*theta.shape[:-1], d, d)}

    def reference(self, X, y, x_q, steps, params):
        gamma = params["gamma"].to(X.dtype)
        return preconditioned_gd(X, y, gamma.expand(steps, *gamma.shape)).predict(x_q)[-1]


def _predict_stacked(S_hat: Tensor, b: Tensor, x_q: Tensor, k: int, theta: Tensor) -> Tensor:
    """Predictions (B,) of k steps with Γ_l = θ[l] reshaped (k, d, d): `w ← w − Γ_l(Ŝw − b)`."""
    d = x_q.shape[1]
    gammas = theta.reshape(k, d, d)
    w = torch.zeros_like(b)
    for gamma in gammas:  # a loop over the steps only
        w = w - ((S_hat @ w.unsqueeze(-1)).squeeze(-1) - b) @ gamma.T
    return (w * x_q).sum(-1)


def _stacked_starts(gamma: Tensor, k: int) -> list[Tensor]:
    """Two starts (k d²,) from the shared fit Γ: Γ at every step, and c_l Γ with c_l spread
    geometrically over [1/2, 2]. The first alone can stall: with all Γ_l equal, the steps'
    gradients are equal too (their products commute), so a local polish stays on the shared
    manifold; the spread start breaks that symmetry, as the per-layer optima do (Ahn et al.'s
    a_l* differ)."""
    spread = torch.logspace(math.log10(0.5), math.log10(2.0), k, dtype=torch.float64)
    return [gamma.repeat(k), (spread[:, None] * gamma[None]).reshape(-1)]


class StackedPreconditionedGD(PreconditionedGD):
    """k steps of preconditioned GD with one fitted Γ_l per step (a stacked model's layers; Ahn
    et al. 2023, Thm 3): d²·k parameters, polished jointly from two starts built from the
    shared-Γ fit at the same k (`_stacked_starts`), so it fits at least as well as
    `preconditioned-gd` on the fitting set. The polish gets `max_nfev` = 400 evaluations: on a
    trained 3-layer model (d = 5), 100 left the fit at a mean squared gap of 2e-4, 500 reached
    its exact Γ_l (gap 8e-14). Steps tried: `steps` (default 2, 3, 4; at k = 1 it is
    `preconditioned-gd`). Parameter: `gammas` (k, d, d), in the order applied. Asked for by
    name (not a default candidate).

    Where the Γ_l commute with each other's Ŝ-products (e.g. all ∝ Σ⁻¹), their order is not
    identifiable: compare sorted scales, not `gammas` entry by entry.
    """

    name = "stacked-preconditioned-gd"
    parameter_names = ("gammas",)

    def __init__(self, steps: Sequence[int] = (2, 3, 4), *, max_nfev: int = 400) -> None:
        super().__init__(steps, max_nfev=max_nfev)
        self.d: int | None = None

    def fit(self, data: FitData, target: Tensor) -> list[StepFit]:
        shared = {f.steps: f for f in super().fit(data, target)}
        S_hat, b = data.moments
        self.d = data.x_q.shape[1]
        fits: list[StepFit] = []
        for k, start in sorted(shared.items()):
            predict = partial(_predict_stacked, S_hat, b, data.x_q, k)
            polished = [
                polish(predict, target, theta0, max_nfev=self.max_nfev)
                for theta0 in _stacked_starts(start.theta, k)
            ]
            theta, loss = min(polished, key=lambda p: p[1] if math.isfinite(p[1]) else math.inf)
            fits.append(StepFit(steps=k, theta=theta, loss=loss, predict=predict))
        return fits

    def parameters(self, theta: Tensor) -> dict[str, Tensor]:
        d = self.d if self.d is not None else math.isqrt(theta.shape[-1])
        return {"gammas": theta.reshape(*theta.shape[:-1], theta.shape[-1] // (d * d), d, d)}

    def reference(self, X, y, x_q, steps, params):
        return preconditioned_gd(X, y, params["gammas"].to(X.dtype)).predict(x_q)[-1]
