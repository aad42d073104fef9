"""GD-β: gradient descent on the in-context least-squares risk from a learned starting point.

Plain in-context GD (Ahn et al. 2023; von Oswald et al. 2023) starts every prompt at `w_0 = 0`.
When the tasks do not have mean zero (e.g. `w* ~ N(β, τ² I)`), a model can do better by starting
from a learned weight `β ∈ R^d` shared by every prompt — a parameter of the model, not of the
prompt. For one prompt (X ∈ R^{n×d}, rows `x_iᵀ`, labels y ∈ R^n), with
`R(w) = (1/2n) Σ_i (x_iᵀ w − y_i)²`, `∇R(w) = Ŝ w − (1/n) Xᵀ y`, `Ŝ = (1/n) XᵀX`:

    w_0 = β,     w_{l+1} = w_l − η_l ∇R(w_l),     ŷ_l = x_qᵀ w_l.

GD is affine in its start: `w_L = T_L β + w_L^{(0)}` with `T_L = Π_l (I − η_l Ŝ)` and `w_L^{(0)}`
GD from 0; equivalently GD from 0 on the shifted labels `y − X β`, plus β (how it is computed).
So the prediction is affine in β and the β minimising the mean squared query error over a batch
of training prompts is a linear least-squares problem (`fit_gd_beta_init`): what training β alone
by gradient descent converges to.

The name GD-β is the issue's; Xie, Yuan, Rossi, Hannagan 2025, "The initialization determines
whether in-context learning is gradient descent", study in-context GD from a trainable initial
guess with non-zero-mean task priors.

Every function works on a batch of B prompts: X (B, n, d), y (B, n), x_q (B, d).
"""

from __future__ import annotations

import torch
from torch import Tensor

from icgd.algorithms.gd import GDResult, gradient_descent
from icgd.algorithms.plugins import ALGORITHMS


def _check(X: Tensor, y: Tensor, w0: Tensor) -> None:
    if X.ndim != 3 or y.shape != X.shape[:2]:
        raise ValueError(
            f"expected X (B, n, d) and y (B, n), got {tuple(X.shape)} and {tuple(y.shape)}"
        )
    if w0.shape != (X.shape[2],):
        raise ValueError(f"w0 must be one ({X.shape[2]},) weight shared by every prompt")


def gd_beta(
    X: Tensor, y: Tensor, w0: Tensor, step_sizes: float | Tensor, n_steps: int | None = None
) -> GDResult:
    """L steps of GD `w_{l+1} = w_l − η_l ∇R(w_l)` from the shared start `w_0 = β` (module
    docstring); differentiable in `w0` (and in X, y).

    X: (B, n, d), y: (B, n), w0: (d,) the learned β. step_sizes, n_steps: as in
    `icgd.algorithms.gradient_descent` (a number η with `n_steps`, or an (L,) tensor).
    Returns a `GDResult` with weights (L+1, B, d), `weights[0] = β` for every prompt.
    """
    w0 = torch.as_tensor(w0, dtype=X.dtype, device=X.device)
    _check(X, y, w0)
    shifted = y - X @ w0  # (B, n): labels of the residual problem in v = w − β
    from_zero = gradient_descent(X, shifted, step_sizes, n_steps)  # v_l, (L+1, B, d)
    return GDResult(weights=from_zero.weights + w0)  # w_l = β + v_l


def fit_gd_beta_init(
    X: Tensor,
    y: Tensor,
    x_q: Tensor,
    y_q: Tensor,
    step_sizes: float | Tensor,
    n_steps: int | None = None,
) -> Tensor:
    """The β minimising the mean squared query error of GD-β over a batch of training prompts:

        β̂ = argmin_β (1/B) Σ_b (x_{q,b}ᵀ w_{L,b}(β) − y_{q,b})²,   w_L(β) = T_L β + w_L^{(0)},

    a linear least-squares problem in β with rows `a_b = T_{L,b} x_{q,b}` (`T_L` is a polynomial in
    Ŝ, so symmetric) and targets `y_{q,b} − x_{q,b}ᵀ w_{L,b}^{(0)}`; the minimum-norm solution
    (pseudo-inverse) when the rows do not span R^d.

    X: (B, n, d), y: (B, n), x_q: (B, d), y_q: (B,), step_sizes/n_steps as in `gd_beta`
    → β̂ (d,). Not a per-prompt algorithm (it pools the prompts), so it is not registered.
    """
    d = X.shape[2]
    if x_q.shape != (X.shape[0], d) or y_q.shape != (X.shape[0],):
        raise ValueError(f"expected x_q (B, {d}) and y_q (B,), got {x_q.shape}, {y_q.shape}")
    from_zero = gradient_descent(X, y, step_sizes, n_steps).final  # (B, d): w_L^{(0)}
    # T_L x_q is GD from x_q on zero labels (affinity again): x_q + GD from 0 on labels −X x_q.
    labels = -torch.einsum("bnd,bd->bn", X, x_q)  # (B, n): −X x_q
    rows = x_q + gradient_descent(X, labels, step_sizes, n_steps).final  # (B, d): T_L x_q
    target = y_q - (x_q * from_zero).sum(-1)  # (B,)
    return torch.linalg.pinv(rows) @ target  # (d,): (B, d)⁺ (B,)


ALGORITHMS.register("gd-beta", gd_beta)
