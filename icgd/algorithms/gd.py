"""Gradient descent and preconditioned gradient descent on the in-context least-squares risk.

For one prompt with inputs `X ∈ R^{n×d}` (rows `x_iᵀ`) and labels `y ∈ R^n`, the empirical risk is

    R(w) = (1/2n) Σ_i (x_iᵀ w − y_i)²,      ∇R(w) = Ŝ w − (1/n) Xᵀ y,   Ŝ = (1/n) XᵀX,

and L steps of preconditioned GD from `w_0` are

    w_{l+1} = w_l − Γ_l ∇R(w_l),   l = 0, …, L−1,

with `Γ_l = η_l I` for plain GD. Ahn et al. 2023 ("Transformers learn to implement preconditioned
gradient descent for in-context learning", Lemma 1) show that an L-layer linear self-attention model
in the sparse parametrisation computes exactly this with `Γ_l = A_lᵀ` and `w_0 = 0`, predicting
`ŷ = x_qᵀ w_L`; von Oswald et al. 2023 ("Transformers learn in-context by gradient descent") give
the one-step construction and compare against GD with a line-searched step size.

Every function works on a batch of B prompts: X (B, n, d), y (B, n).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from icgd.algorithms.plugins import ALGORITHMS


@dataclass(frozen=True)
class GDResult:
    """Every iterate of (preconditioned) GD.

    weights: (L+1, B, d), `weights[l]` is `w_l` for each of the B prompts (`weights[0] = w_0`).
    """

    weights: Tensor

    @property
    def final(self) -> Tensor:
        """The last iterate `w_L`: (B, d)."""
        return self.weights[-1]

    def predict(self, x_q: Tensor) -> Tensor:
        """Predictions `x_qᵀ w_l` of every iterate: x_q (B, d) → (L+1, B)."""
        return torch.einsum("lbd,bd->lb", self.weights, x_q)


def _check_data(X: Tensor, y: Tensor) -> None:
    if X.ndim != 3 or y.shape != X.shape[:2]:
        raise ValueError(
            f"expected X (B, n, d) and y (B, n), got {tuple(X.shape)} and {tuple(y.shape)}"
        )


def empirical_risk_gradient(X: Tensor, y: Tensor, w: Tensor) -> Tensor:
    """`∇R(w) = Ŝ w − (1/n) Xᵀ y = (1/n) Xᵀ (X w − y)` for each prompt.

    X: (B, n, d), y: (B, n), w: (B, d) → (B, d). Computed through the residuals: O(n d) per
    prompt.
    """
    n = X.shape[-2]
    residual = torch.einsum("bnd,bd->bn", X, w) - y  # (B, n): x_iᵀ w − y_i
    return torch.einsum("bnd,bn->bd", X, residual) / n  # (B, d)


def preconditioned_gd(
    X: Tensor, y: Tensor, preconditioners: Tensor, w0: Tensor | None = None
) -> GDResult:
    """L steps of preconditioned GD, `w_{l+1} = w_l − Γ_l ∇R(w_l)` (Ahn et al. 2023, Lemma 1).

    X: (B, n, d), y: (B, n).
    preconditioners: (L, d, d) `Γ_l` shared by every prompt, or (L, B, d, d) one per prompt.
    w0: (B, d) the starting point, default 0.
    Returns every iterate `w_0 … w_L` as a `GDResult` with weights (L+1, B, d).
    """
    _check_data(X, y)
    B, _, d = X.shape
    if preconditioners.ndim == 3 and preconditioners.shape[1:] == (d, d):
        per_prompt = False
    elif preconditioners.ndim == 4 and preconditioners.shape[1:] == (B, d, d):
        per_prompt = True
    else:
        raise ValueError(
            f"preconditioners must be (L, {d}, {d}) or (L, {B}, {d}, {d}), "
            f"got {tuple(preconditioners.shape)}"
        )
    w = X.new_zeros(B, d) if w0 is None else w0.to(dtype=X.dtype, device=X.device)
    iterates = [w]
    for gamma in preconditioners:  # loop over the L steps only
        g = empirical_risk_gradient(X, y, w)  # (B, d)
        if per_prompt:
            step = torch.einsum("bij,bj->bi", gamma, g)  # Γ_l,b g_b
        else:
            step = g @ gamma.T  # (B, d): rows (Γ_l g_b)ᵀ
        w = w - step
        iterates.append(w)
    return GDResult(weights=torch.stack(iterates))  # (L+1, B, d)


def gradient_descent(
    X: Tensor, y: Tensor, step_sizes: float | Tensor, n_steps: int | None = None
) -> GDResult:
    """Plain GD from `w_0 = 0`: `w_{l+1} = w_l − η_l ∇R(w_l)`, i.e. `Γ_l = η_l I`.

    X: (B, n, d), y: (B, n). step_sizes: a float η (then `n_steps` is required) or an (L,) tensor
    of per-step sizes η_l (then `n_steps`, if given, must equal L).
    Returns a `GDResult` with weights (L+1, B, d).
    """
    _check_data(X, y)
    if isinstance(step_sizes, Tensor) and step_sizes.ndim == 1:
        if n_steps is not None and n_steps != step_sizes.shape[0]:
            raise ValueError(f"n_steps={n_steps} but {step_sizes.shape[0]} step sizes were given")
        etas = [float(eta) for eta in step_sizes]
    else:
        if n_steps is None:
            raise ValueError("n_steps is required when step_sizes is a single number")
        if n_steps < 0:
            raise ValueError(f"n_steps must be >= 0, got {n_steps}")
        etas = [float(step_sizes)] * int(n_steps)
    B, _, d = X.shape
    w = X.new_zeros(B, d)
    iterates = [w]
    for eta in etas:
        w = w - eta * empirical_risk_gradient(X, y, w)
        iterates.append(w)
    return GDResult(weights=torch.stack(iterates))


def _query_loss_of_step_sizes(
    X: Tensor, y: Tensor, x_q: Tensor, y_q: Tensor, n_steps: int, gamma: Tensor, etas: Tensor
) -> Tensor:
    """Mean squared query error of `n_steps` of GD with `Γ = η·gamma`, for each η in `etas` (G,).

    Evaluates all G step sizes in one batched computation: iterates are (G, B, d). Non-finite
    losses (divergence) are returned as +inf. Returns (G,).
    """
    n = X.shape[-2]
    G = etas.shape[0]
    B, _, d = X.shape
    w = X.new_zeros(G, B, d)
    for _ in range(n_steps):
        residual = torch.einsum("bnd,gbd->gbn", X, w) - y  # (G, B, n)
        grad = torch.einsum("bnd,gbn->gbd", X, residual) / n  # (G, B, d)
        w = w - etas[:, None, None] * (grad @ gamma.T)  # (G, B, d)
    err = torch.einsum("gbd,bd->gb", w, x_q) - y_q  # (G, B)
    loss = err.square().mean(dim=1)  # (G,)
    return torch.where(torch.isfinite(loss), loss, torch.full_like(loss, math.inf))


def best_step_size(
    X: Tensor,
    y: Tensor,
    x_q: Tensor,
    y_q: Tensor,
    n_steps: int,
    preconditioner: Tensor | None = None,
    grid: Tensor | None = None,
) -> float:
    """Line search for the step size of GD on a batch of prompts (von Oswald et al. 2023).

    Returns the scalar `η > 0` minimising the mean squared query error

        ℓ(η) = (1/B) Σ_b (x_{q,b}ᵀ w_{L,b}(η) − y_{q,b})²,

    where `w_{L,b}(η)` is `n_steps` = L steps of preconditioned GD from 0 on prompt b with the same
    `Γ_l = η·P` at every step (P = `preconditioner` (d, d), default I).

    X: (B, n, d), y: (B, n), x_q: (B, d), y_q: (B,).
    grid: (G,) positive candidate step sizes; default 121 log-spaced points on
    `[10⁻⁴, 10^{1.5}] / c` with `c` the batch mean of `tr(P Ŝ)/d` (the mean curvature).

    All grid points are evaluated in one batched computation; then the bracket between the best
    grid point's neighbours is zoomed into by a few rounds of finer log-spaced grids. The returned η
    is the best of every point evaluated, so its loss is never above any grid point's. Diverging
    step sizes count as infinite loss.
    """
    _check_data(X, y)
    B, n, d = X.shape
    gamma = (
        torch.eye(d, dtype=X.dtype, device=X.device) if preconditioner is None else preconditioner
    )
    gamma = gamma.to(dtype=X.dtype, device=X.device)
    if grid is None:
        S_hat = X.transpose(1, 2) @ X / n  # (B, d, d)
        curvature = torch.einsum("ij,bji->b", gamma, S_hat).mean().item() / d  # mean tr(PŜ)/d
        curvature = curvature if curvature > 0 and math.isfinite(curvature) else 1.0
        grid = torch.logspace(-4, 1.5, 121, dtype=torch.float64) / curvature
    grid = torch.as_tensor(grid, dtype=torch.float64).flatten().sort().values
    if grid.numel() == 0 or (grid <= 0).any():
        raise ValueError("grid must hold at least one positive step size")

    def losses(etas: Tensor) -> Tensor:
        return (
            _query_loss_of_step_sizes(
                X, y, x_q, y_q, n_steps, gamma, etas.to(dtype=X.dtype, device=X.device)
            )
            .to(torch.float64)
            .cpu()
        )

    grid_loss = losses(grid)
    i = int(torch.argmin(grid_loss))
    best_eta, best_loss = grid[i].item(), grid_loss[i].item()
    if grid.numel() == 1 or n_steps == 0 or not math.isfinite(best_loss):
        return best_eta
    lo = math.log(grid[max(i - 1, 0)].item())
    hi = math.log(grid[min(i + 1, grid.numel() - 1)].item())
    for _ in range(6):  # each round shrinks the bracket by a factor 16 → ~1e-7 relative width
        etas = torch.linspace(lo, hi, 33, dtype=torch.float64).exp()
        round_loss = losses(etas)
        j = int(torch.argmin(round_loss))
        if round_loss[j].item() <= best_loss:
            best_eta, best_loss = etas[j].item(), round_loss[j].item()
        center = math.log(best_eta)
        half = (hi - lo) / 32
        lo, hi = center - half, center + half
    return best_eta


ALGORITHMS.register("gd", gradient_descent)
ALGORITHMS.register("preconditioned-gd", preconditioned_gd)
