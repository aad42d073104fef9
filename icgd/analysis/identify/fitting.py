"""Fitting an algorithm's free parameters to a model's predictions, and the bootstrap.

For a candidate algorithm `A_θ` with free parameters θ ∈ R^P (at a fixed number of steps k) and a
model's predictions `m_b` on B fitting prompts, the fit is

    θ̂ = argmin_θ L(θ),     L(θ) = (1/B) Σ_b (A_θ(D_b)(x_{q,b}) − m_b)²,

found by the candidates (`icgd.analysis.identify.candidates`) in three stages built from this
module: a coarse product grid over θ (`product_grid`, in search coordinates, e.g. log η), a few
zoom rounds around the best grid point (`zoom`: each round a finer grid spanning the previous
spacing), then a trust-region least-squares polish (`polish`: `scipy.optimize.least_squares`,
method `trf`, Jacobian by autodiff) from that point. Non-finite predictions (a diverging step
size) count as an infinite loss.

**Uncertainty: the one-step bootstrap** (Davidson & MacKinnon 1999, "Bootstrap testing in
nonlinear models"; ours to use here). Resample the fitting prompts R times, with multinomial
weights `ω_{rb}` (counts / B, Σ_b ω_{rb} = 1), and replace each refit by one Newton step on the
resampled loss `L_r(θ) = Σ_b ω_{rb} e_b(θ)²`, `e_b = A_θ(D_b)(x_{q,b}) − m_b`, from θ̂:

    θ_r = θ̂ − H_r⁻¹ g_r,    g_r = 2 Σ_b ω_{rb} e_b J_b,    H_r = 2 Σ_b ω_{rb} J_b J_bᵀ + 2C,
    J_b = ∂A_θ(D_b)/∂θ (P,),   C = (1/B) Σ_b e_b ∇²_θ A_θ(D_b)   (the residual curvature).

It is exact when the prediction is linear in the search coordinates θ (a one-step preconditioner
Γ; step sizes and λ are searched as logarithms, so not those) and first-order accurate
otherwise, and costs one (R, B) × (B, P²) product instead of R refits. C is taken at the full
sample (not resampled); if the full-sample Hessian `JᵀJ/B + C` is not positive definite, C is
dropped (Gauss–Newton). Directions the data do not determine get no step
(pseudo-inverse). The integer k is resampled too: each resample takes the k whose fit has the
least resampled loss, then steps from that k's θ̂. A test checks the bootstrap standard deviation
against the spread of fits on independent fitting sets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch import Tensor

from icgd.analysis.identify.spectral import Spectrum, spectrum

PredictFn = Callable[[Tensor], Tensor]
"""`θ (P,) → predictions (B,)` on the fitting prompts, differentiable in θ."""
GridFn = Callable[[Tensor], Tensor]
"""`θ (Q, P) → predictions (Q, B)`: Q parameter points at once."""

ELEMENT_BUDGET = 1 << 22  # Q·B·d elements per batched evaluation (memory only)


@dataclass(frozen=True)
class FitData:
    """The fitting prompts in float64, X (B, n, d), y (B, n), x_q (B, d), and what the candidates
    derive from them once: the spectra (plain and centred) and the moments `Ŝ`, `b`."""

    X: Tensor
    y: Tensor
    x_q: Tensor

    @cached_property
    def spectrum(self) -> Spectrum:
        return spectrum(self.X, self.y, self.x_q)

    @cached_property
    def centred(self) -> Spectrum:
        return spectrum(self.X, self.y, self.x_q, centred=True)

    @cached_property
    def moments(self) -> tuple[Tensor, Tensor]:
        """`(Ŝ, b) = ((1/n) XᵀX, (1/n) Xᵀy)`: (B, d, d), (B, d)."""
        n = self.X.shape[1]
        S_hat = self.X.transpose(1, 2) @ self.X / n
        return S_hat, torch.einsum("bnd,bn->bd", self.X, self.y) / n


@dataclass(frozen=True)
class StepFit:
    """The fitted free parameters of one candidate at one number of steps.

    steps: k (None for a non-iterative algorithm); theta: (P,) search coordinates (P may be 0);
    loss: the fitting loss L(θ̂); predict: `θ (P,) → (B,)` on the fitting prompts.
    """

    steps: int | None
    theta: Tensor
    loss: float
    predict: PredictFn


def jacobian(predict: PredictFn, theta: Tensor) -> Tensor:
    """`J = ∂ predict(θ) / ∂θ`: (B, P), by reverse mode only (P backward passes through
    `g(u) = Jᵀu`, which is linear in u: `∂g_p/∂u = J[:, p]`). Non-finite entries become 0."""
    z = theta.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = predict(z)  # (B,)
        if not out.requires_grad:  # constant in θ
            return out.new_zeros(out.shape[0], z.shape[0]).detach()
        u = torch.zeros_like(out, requires_grad=True)
        (g,) = torch.autograd.grad(out, z, grad_outputs=u, create_graph=True)  # (P,) = Jᵀu
        cols = []
        for p in range(z.shape[0]):  # a loop over the P parameters only
            (col,) = torch.autograd.grad(g[p], u, retain_graph=True, allow_unused=True)
            cols.append(torch.zeros_like(out) if col is None else col)
    J = torch.stack(cols, dim=1).detach() if cols else out.new_zeros(out.shape[0], 0)
    return torch.where(torch.isfinite(J), J, torch.zeros_like(J))


def hessian(fn: Callable[[Tensor], Tensor], theta: Tensor) -> Tensor:
    """`∇²fn(θ)` of a scalar function: (P, P), reverse over reverse."""
    z = theta.detach().clone().requires_grad_(True)
    P = z.shape[0]
    with torch.enable_grad():
        value = fn(z)
        if not value.requires_grad:  # constant in θ
            return z.new_zeros(P, P).detach()
        (g,) = torch.autograd.grad(value, z, create_graph=True)  # (P,)
        if not g.requires_grad:  # linear in θ
            return z.new_zeros(P, P).detach()
        rows = []
        for p in range(P):  # a loop over the P parameters only
            (row,) = torch.autograd.grad(g[p], z, retain_graph=True, allow_unused=True)
            rows.append(torch.zeros_like(z) if row is None else row)
    return torch.stack(rows).detach()


def chunked_loss(grid_fn: GridFn, target: Tensor, width: int) -> Callable[[Tensor], Tensor]:
    """`θ (Q, P) → L (Q,)`, the mean squared difference to `target` (B,), evaluated `grid_fn` in
    chunks of Q so that chunk·B·width ≤ `ELEMENT_BUDGET`; non-finite losses become +inf."""
    chunk = max(1, ELEMENT_BUDGET // max(1, target.shape[0] * width))

    def loss(theta: Tensor) -> Tensor:
        parts = []
        with torch.no_grad():
            for i in range(0, theta.shape[0], chunk):  # memory only: each part is batched
                err = grid_fn(theta[i : i + chunk]) - target  # (q, B)
                parts.append(err.square().mean(-1))
        out = torch.cat(parts)
        return torch.where(torch.isfinite(out), out, torch.full_like(out, math.inf))

    return loss


def product_grid(axes: Sequence[Tensor]) -> Tensor:
    """Every combination of the per-parameter axes: (Π_p len(axes[p]), P)."""
    if len(axes) == 1:
        return axes[0].reshape(-1, 1)
    return torch.cartesian_prod(*axes)


def zoom(
    loss: Callable[[Tensor], Tensor],
    start: Tensor,
    spacing: Tensor,
    *,
    rounds: int = 6,
    points: int = 9,
    best_loss: float = math.inf,
) -> tuple[Tensor, float]:
    """Refine a grid minimum: each round evaluates a `points`^P grid spanning ±`spacing` around
    the best point so far, then divides the spacing by (points − 1)/2. start, spacing: (P,)."""
    best = start.clone()
    half = spacing.clone()
    for _ in range(rounds):
        axes = [
            best[p] + torch.linspace(-1, 1, points, dtype=best.dtype) * half[p]
            for p in range(best.shape[0])
        ]
        grid = product_grid(axes)
        values = loss(grid)
        i = int(torch.argmin(values))
        if values[i].item() <= best_loss:
            best, best_loss = grid[i].clone(), values[i].item()
        half = half * 2 / (points - 1)
    return best, best_loss


def polish(
    predict: PredictFn,
    target: Tensor,
    theta: Tensor,
    *,
    upper: Tensor | None = None,
    max_nfev: int = 60,
) -> tuple[Tensor, float]:
    """Least-squares polish of θ (P,) from a grid point (`scipy.optimize.least_squares`, trf):
    residuals `(A_θ − m)/√B` (B,), Jacobian by autodiff (`jacobian`). `upper` (P,): upper bounds
    (+inf where none). Returns (θ̂, L(θ̂)); keeps the start if the polish does not improve it."""
    from scipy.optimize import least_squares  # here: `import icgd.analysis` stays light

    B = target.shape[0]
    scale = 1.0 / math.sqrt(B)

    def residual(z: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            r = (predict(torch.from_numpy(z)) - target) * scale
        return r.numpy()

    def jac(z: np.ndarray) -> np.ndarray:
        return (jacobian(predict, torch.from_numpy(z)) * scale).numpy()

    start = residual(theta.numpy())
    start_loss = float(np.sum(start**2)) if np.all(np.isfinite(start)) else math.inf
    if theta.numel() == 0 or not math.isfinite(start_loss):
        return theta, start_loss
    hi = np.full(theta.shape[0], np.inf) if upper is None else upper.numpy()
    z0 = np.minimum(theta.numpy(), np.nextafter(hi, -np.inf))
    try:
        sol = least_squares(
            residual,
            z0,
            jac=jac,
            bounds=(-np.inf, hi),
            method="trf",
            x_scale="jac",
            ftol=1e-14,
            xtol=1e-14,
            gtol=1e-14,
            max_nfev=max_nfev,
        )
    except (ValueError, np.linalg.LinAlgError):
        return theta, start_loss
    loss = 2 * float(sol.cost)  # cost = ½ Σ r² = ½ L
    if not math.isfinite(loss) or loss > start_loss:
        return theta, start_loss
    return torch.from_numpy(sol.x).to(theta.dtype), loss


def bootstrap_weights(B: int, R: int, generator: torch.Generator) -> Tensor:
    """Multinomial resampling weights (R, B), float64: row r counts how often each of the B
    fitting prompts is drawn in resample r (B draws with replacement), divided by B."""
    idx = torch.randint(0, B, (R, B), generator=generator, device=generator.device)
    counts = torch.zeros(R, B, dtype=torch.float64, device=generator.device)
    counts.scatter_add_(1, idx, torch.ones_like(counts))
    return counts / B


def zoom_and_polish(
    ks: Sequence[int | None],
    coarse: Tensor,
    grid: Tensor,
    spacing: Tensor,
    grid_loss: Callable[[int | None], Callable[[Tensor], Tensor]],
    predict: Callable[[int | None], Callable[[Tensor], Tensor]],
    target: Tensor,
    *,
    n_polish: int,
    n_zoom: int | None = None,
    rounds: int = 6,
    points: int = 9,
    upper: Tensor | None = None,
) -> list[StepFit]:
    """After a coarse grid: zoom the `n_zoom` best k (all by default) from their best grid
    point, then `polish` the `n_polish` best zoomed k. One StepFit per polished k.

    ks: the k of each row of coarse (K, Q), the losses at grid (Q, P); spacing (P,): the grid's;
    grid_loss(k): θ (Q', P) → losses (Q',); predict(k): θ (P,) → predictions (B,).
    """
    best = coarse.min(dim=1).values  # (K,)
    tried = torch.argsort(best)[:n_zoom].tolist()
    zoomed = {}
    for i in tried:
        start = grid[int(torch.argmin(coarse[i]))]
        zoomed[i] = zoom(
            grid_loss(ks[i]), start, spacing, rounds=rounds, points=points, best_loss=best[i].item()
        )
    fits = []
    for i in sorted(tried, key=lambda i: zoomed[i][1])[:n_polish]:
        predict_k = predict(ks[i])
        theta, value = polish(predict_k, target, zoomed[i][0], upper=upper)
        fits.append(StepFit(steps=ks[i], theta=theta, loss=value, predict=predict_k))
    return fits


def _newton_steps(fit: StepFit, err: Tensor, weights: Tensor) -> Tensor:
    """`θ̂ − H_r⁻¹ g_r` for every resample (module docstring): (R, P)."""
    P = fit.theta.shape[0]
    R, B = weights.shape
    J = jacobian(fit.predict, fit.theta)  # (B, P)

    def weighted(z: Tensor) -> Tensor:
        return (err * fit.predict(z)).mean()

    C = hessian(weighted, fit.theta)  # (P, P)
    full = J.T @ J / B + C
    if not bool(torch.isfinite(C).all()) or torch.linalg.eigvalsh((full + full.T) / 2)[0] <= 0:
        C = torch.zeros_like(C)  # Gauss–Newton
    g = 2 * (weights * err) @ J  # (R, P)
    JJ = (J[:, :, None] * J[:, None, :]).reshape(B, P * P)  # (B, P²): J_b J_bᵀ
    H = 2 * ((weights @ JJ).reshape(R, P, P) + C)  # (R, P, P)
    H = (H + H.transpose(1, 2)) / 2
    step = torch.linalg.pinv(H, hermitian=True, rtol=1e-12) @ g.unsqueeze(-1)  # (R, P, 1)
    return fit.theta - step.squeeze(-1)


def one_step_bootstrap(
    fits: Sequence[StepFit], target: Tensor, weights: Tensor
) -> tuple[Tensor, Tensor]:
    """The one-step bootstrap over the fits of every k (module docstring).

    fits: the StepFits of one candidate (one per k tried); target: (B,); weights: (R, B) from
    `bootstrap_weights`. Returns (index (R,) into `fits` of each resample's k, θ_r (R, P)).
    Where P grows with k (one matrix per step), θ_r is resampled at the best k only.
    """
    R = weights.shape[0]
    P = fits[0].theta.shape[0]
    if R == 0:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, P, dtype=torch.float64)
    with torch.no_grad():
        errs = torch.stack([f.predict(f.theta) - target for f in fits])  # (K, B)
    errs = torch.where(torch.isfinite(errs), errs, torch.full_like(errs, 1e150))
    choice = torch.argmin(weights @ errs.square().T, dim=1)  # (R,): least resampled loss
    if P == 0:
        return choice, torch.zeros(R, 0, dtype=torch.float64)
    if len({f.theta.shape[0] for f in fits}) > 1:
        best = int(torch.argmin(errs.square().sum(1)))
        return choice, _newton_steps(fits[best], errs[best], weights)
    steps = torch.stack([_newton_steps(f, e, weights) for f, e in zip(fits, errs, strict=True)])
    return choice, steps[choice, torch.arange(R)]  # (R, P)
