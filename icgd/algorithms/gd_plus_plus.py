"""GD++: one GD step on curvature-corrected covariates (von Oswald et al. 2023, §4).

von Oswald, Niklasson, Randazzo, Sacramento, Mordvintsev, Zhmoginov, Vladymyrov (2023),
"Transformers learn in-context by gradient descent": trained multi-layer linear self-attention
first transforms every covariate (context and query) by `x_j ← (I − γ X Xᵀ) x_j`, then takes a GD
step. The transform shrinks the directions of large empirical curvature and so lowers the condition
number of the risk the GD step sees.

Normalisation used throughout icgd: with rows `x_iᵀ` of `X ∈ R^{n×d}` and `Ŝ = (1/n) XᵀX`,

    T = I − γ Ŝ,   x̃_j = T x_j (every context point and the query),
    ŵ = η (1/n) X̃ᵀ y   (one GD step from 0 on R̃(w) = (1/2n) Σ_i (x̃_iᵀ w − y_i)²),
    ŷ = x̃_qᵀ ŵ = η x_qᵀ T (1/n) T Xᵀ y.

The paper writes `X Xᵀ = Σ_i x_i x_iᵀ` (columns x_i) without the 1/n, so its γ is our `γ / n`.
The 1/n makes γ independent of the context length, and matches the 1/n inside an LSA layer.

Every function works on a batch of B prompts: X (B, n, d), y (B, n), x_q (B, d).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from icgd.algorithms.plugins import ALGORITHMS


def gd_plus_plus_transform(X: Tensor, gamma: float) -> Tensor:
    """`T = I − γ Ŝ`, `Ŝ = (1/n) XᵀX`, per prompt: X (B, n, d) → (B, d, d), symmetric."""
    if X.ndim != 3:
        raise ValueError(f"expected X (B, n, d), got {tuple(X.shape)}")
    n, d = X.shape[1], X.shape[2]
    S_hat = X.transpose(1, 2) @ X / n  # (B, d, d)
    eye = torch.eye(d, dtype=X.dtype, device=X.device)
    return eye - gamma * S_hat


def gd_plus_plus(X: Tensor, y: Tensor, x_q: Tensor, eta: float, gamma: float) -> Tensor:
    """GD++ predictions `ŷ = η (T x_q)ᵀ (1/n) (X T)ᵀ y` with `T = I − γ Ŝ` (see module docstring).

    X: (B, n, d), y: (B, n), x_q: (B, d) → (B,). `gamma = 0` is one plain GD step with step η.
    """
    if X.ndim != 3 or y.shape != X.shape[:2] or x_q.shape != (X.shape[0], X.shape[2]):
        raise ValueError(
            f"expected X (B, n, d), y (B, n), x_q (B, d), got {tuple(X.shape)}, "
            f"{tuple(y.shape)}, {tuple(x_q.shape)}"
        )
    n = X.shape[1]
    T = gd_plus_plus_transform(X, gamma)  # (B, d, d)
    X_t = X @ T  # (B, n, d): rows x_iᵀ T = (T x_i)ᵀ since T is symmetric
    x_q_t = torch.einsum("bij,bj->bi", T, x_q)  # (B, d)
    w = eta * torch.einsum("bnd,bn->bd", X_t, y) / n  # (B, d): one GD step from 0
    return torch.einsum("bd,bd->b", x_q_t, w)


def gd_plus_plus_steps(X: Tensor, y: Tensor, x_q: Tensor, etas: Tensor, gammas: Tensor) -> Tensor:
    """L steps of GD++, each moving covariates and residual labels at once (von Oswald et al. §4).

    The iteration a stack of L GD++ layers runs (every column j = 1…n, and the query q, at once):

        Ŝ_l = (1/n) Σ_{i≤n} x_i x_iᵀ,       g_j = (1/n) Σ_{i≤n} r_i x_iᵀ x_j,
        x_j ← (I − γ_l Ŝ_l) x_j,          r_j ← r_j − η_l g_j       (x, r at step l),

    from `x^{(0)} = x`, `r^{(0)} = y` for the context and `r_q^{(0)} = 0` for the query; the
    prediction after l steps is `ŷ_l = −r_q^{(l)}`. Both updates use the covariates before the
    step. With every γ_l = 0 it is plain GD from 0 (`r_j^{(l)} = y_j − x_jᵀ w_l`,
    `r_q^{(l)} = −x_qᵀ w_l`); `etas = (0, η)`, `gammas = (γ, 0)` is `gd_plus_plus(…, η, γ)`.

    X: (B, n, d), y: (B, n), x_q: (B, d), etas, gammas: (L,) → predictions (L+1, B), row l = ŷ_l
    (row 0 is 0).
    """
    if X.ndim != 3 or y.shape != X.shape[:2] or x_q.shape != (X.shape[0], X.shape[2]):
        raise ValueError(
            f"expected X (B, n, d), y (B, n), x_q (B, d), got {tuple(X.shape)}, "
            f"{tuple(y.shape)}, {tuple(x_q.shape)}"
        )
    etas = torch.as_tensor(etas, dtype=X.dtype, device=X.device).flatten()
    gammas = torch.as_tensor(gammas, dtype=X.dtype, device=X.device).flatten()
    if etas.shape != gammas.shape:
        raise ValueError(
            f"etas and gammas must have the same length, got {etas.shape}, {gammas.shape}"
        )
    n = X.shape[1]
    # Columns as rows: context (B, n, d) and the query (B, 1, d) in one tensor (B, n+1, d).
    cols = torch.cat([X, x_q.unsqueeze(1)], dim=1)
    res = torch.cat([y, y.new_zeros(y.shape[0], 1)], dim=1)  # (B, n+1) label row
    predictions = [res[:, -1].neg()]
    for eta, gamma in zip(etas, gammas, strict=True):  # a loop over steps, not over data
        ctx = cols[:, :n]  # (B, n, d)
        S_hat = ctx.transpose(1, 2) @ ctx / n  # (B, d, d)
        v = torch.einsum("bi,bid->bd", res[:, :n], ctx) / n  # (B, d) = (1/n) Σ_i r_i x_i
        g = torch.einsum("bjd,bd->bj", cols, v)  # (B, n+1): g_j = vᵀ x_j
        cols = cols - gamma * cols @ S_hat  # rows x_jᵀ(I − γŜ), Ŝ symmetric
        res = res - eta * g
        predictions.append(res[:, -1].neg())
    return torch.stack(predictions)  # (L+1, B)


def gd_plus_plus_spectral(
    X: Tensor, y: Tensor, x_q: Tensor, etas: Tensor, gammas: Tensor
) -> Tensor:
    """The last prediction of `gd_plus_plus_steps`, in the eigenbasis of Ŝ: O(L·d) per prompt.

    Every covariate map `I − γ_l Ŝ_l` is a polynomial in `Ŝ = Ŝ_0 = V diag(s) Vᵀ` (by induction:
    `x^{(l)} = V diag(t_l) Vᵀ x`, so `Ŝ_l = V diag(s t_l²) Vᵀ`, `t_{l+1} = t_l (1 − γ_l s t_l²)`,
    `t_0 = 1`), so every step acts on each eigen-direction m on its own. Writing `p = Vᵀ x_q`,
    `h = Vᵀ (1/n) Xᵀ y`, the prediction is `ŷ_L = Σ_m p_m h_m E_{L,m}` with

        E_0 = 0,    E_{l+1} = E_l + η_l t_l² (1 − s E_l)

    (E is `(1 − Π_l (1 − η_l s t_l²)) / s`, summed so that no s is divided by; plain GD has
    `E_L = (1 − (1 − ηs)^L)/s`, GD from 0 in the eigenbasis). One symmetric eigen-decomposition
    per prompt, then L elementwise steps: this is what makes `fit_gd_plus_plus` cheap, and it is
    tested equal to the direct iteration in float64.

    X: (B, n, d), y: (B, n), x_q: (B, d), etas, gammas: (L,) → ŷ_L (B,).
    """
    if X.ndim != 3 or y.shape != X.shape[:2] or x_q.shape != (X.shape[0], X.shape[2]):
        raise ValueError(
            f"expected X (B, n, d), y (B, n), x_q (B, d), got {tuple(X.shape)}, "
            f"{tuple(y.shape)}, {tuple(x_q.shape)}"
        )
    return _spectral_predictor(X, y, x_q)(etas, gammas)


def _spectral_predictor(X: Tensor, y: Tensor, x_q: Tensor):
    """`gd_plus_plus_spectral` with the eigen-decomposition done once: `(etas, gammas) ↦ ŷ_L`."""
    n = X.shape[1]
    s, V = torch.linalg.eigh(X.transpose(1, 2) @ X / n)  # (B, d), (B, d, d)
    p = torch.einsum("bdm,bd->bm", V, x_q)  # (B, d) = Vᵀ x_q
    h = torch.einsum("bdm,bnd,bn->bm", V, X, y) / n  # (B, d) = Vᵀ (1/n) Xᵀ y
    ph = p * h

    def predict(etas: Tensor, gammas: Tensor) -> Tensor:
        etas = torch.as_tensor(etas, dtype=X.dtype, device=X.device).flatten()
        gammas = torch.as_tensor(gammas, dtype=X.dtype, device=X.device).flatten()
        if etas.shape != gammas.shape:
            raise ValueError(
                f"etas and gammas must have the same length, got {etas.shape}, {gammas.shape}"
            )
        E = torch.zeros_like(s)
        t2 = torch.ones_like(s)  # t_l²
        for eta, gamma in zip(etas, gammas, strict=True):
            E = E + eta * t2 * (1 - s * E)
            t2 = t2 * (1 - gamma * s * t2).square()
        return (ph * E).sum(-1)

    return predict


def fit_gd_plus_plus(
    X: Tensor,
    y: Tensor,
    x_q: Tensor,
    y_q: Tensor,
    n_steps: int,
    *,
    max_iter: int = 200,
) -> tuple[Tensor, Tensor]:
    """Per-step `(η_l, γ_l)` of `gd_plus_plus_steps` minimising the query error on a batch.

        (η, γ) = argmin (1/B) Σ_b (ŷ_{L,b}(η, γ) − y_{q,b})²,

    the GD++ counterpart of `icgd.algorithms.gd.best_step_size` (von Oswald et al. tune GD++ the
    same way, on the training distribution). Solved by L-BFGS with a strong-Wolfe line search in
    float64 from η_l = 1/c, γ_l = 0 (c = the batch mean of tr(Ŝ)/d, the step of a well-scaled GD);
    the loss is a polynomial in (η, γ), so there is no closed form for L > 1. Each evaluation uses
    the eigen-form of `gd_plus_plus_spectral` (one eigen-decomposition for the whole fit). The best
    finite point seen is returned.
    X: (B, n, d), y: (B, n), x_q: (B, d), y_q: (B,) → etas, gammas (L,) float64 on CPU.
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    f64 = torch.float64
    X, y, x_q, y_q = (t.detach().to(f64) for t in (X, y, x_q, y_q))
    curvature = (X.square().sum((1, 2)) / X.shape[1]).mean().item() / X.shape[2]
    curvature = curvature if curvature > 0 else 1.0
    params = (
        torch.cat(
            [torch.full((n_steps,), 1.0 / curvature, dtype=f64), torch.zeros(n_steps, dtype=f64)]
        )
        .to(X.device)
        .requires_grad_(True)
    )

    predict = _spectral_predictor(X, y, x_q)

    def loss_of(p: Tensor) -> Tensor:
        return (predict(p[:n_steps], p[n_steps:]) - y_q).square().mean()

    best = (loss_of(params).item(), params.detach().clone())
    optimizer = torch.optim.LBFGS(
        [params],
        lr=1.0,
        max_iter=max_iter,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = loss_of(params)
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        final = loss_of(params).item()
    if math.isfinite(final) and final <= best[0]:
        best = (final, params.detach().clone())
    p = best[1].cpu()
    return p[:n_steps], p[n_steps:]


ALGORITHMS.register("gd++", gd_plus_plus)
