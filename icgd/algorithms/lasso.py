"""The Lasso, batched over prompts and over every prefix of the context, solved by FISTA.

For one problem with data `X_k` (k, d) (rows `x_iᵀ`) and labels `y_k` (k,):

    ŵ = argmin_w  F(w) = f(w) + α ‖w‖₁,    f(w) = (1/2k) ‖X_k w − y_k‖²,

the objective of scikit-learn's `Lasso(alpha=α, fit_intercept=False)`, and the Lasso baseline of
Garg et al. 2022 ("What can transformers learn in-context? A case study of simple function
classes") for sparse linear functions. With the Gram form `G = X_kᵀ X_k / k` (d, d) and
`b = X_kᵀ y_k / k` (d,), `∇f(w) = G w − b`, and `ŵ` is characterised by the KKT conditions

    |∇f(ŵ)_j| ≤ α  for every j,    ∇f(ŵ)_j = −α sign(ŵ_j)  where ŵ_j ≠ 0,

so `ŵ = 0` exactly when `α ≥ α_max = ‖b‖_∞`.

Solver: FISTA (Beck & Teboulle 2009, "A fast iterative shrinkage-thresholding algorithm for linear
inverse problems") from `w_0 = 0` (no warm start), with step `1/L`:

    z_t = w_t + β_t (w_t − w_{t−1}),   w_{t+1} = S_{α/L}(z_t − ∇f(z_t)/L),
    S_τ(u) = sign(u) max(|u| − τ, 0),  β_t = (θ_{t−1} − 1)/θ_t,  θ_t = (1 + √(1 + 4θ_{t−1}²))/2,

and the gradient restart of O'Donoghue & Candès 2015 ("Adaptive restart for accelerated gradient
schemes"): θ is reset to 1 when `(z_t − w_{t+1})ᵀ(w_{t+1} − w_t) > 0`, which makes the rate linear
on the (restricted) strongly convex prefixes k > d. `L` is `1.01 ×` a batched power-iteration
estimate of `λ_max(G)` per problem; since power iteration can only under-estimate, every step
also checks the descent condition `(w_{t+1} − z_t)ᵀ G (w_{t+1} − z_t) ≤ L ‖w_{t+1} − z_t‖²` (exact
for a quadratic f) and doubles L (and restarts) for a problem that violates it. Because f is
quadratic, `∇f(z_t) = ∇f(w_t) + β_t (∇f(w_t) − ∇f(w_{t−1}))`: one product with G per iteration,
and the gradient at every iterate is known, so the KKT violation

    κ(w) = max_j { |∇f(w)_j + α sign(w_j)| if w_j ≠ 0;  max(|∇f(w)_j| − α, 0) if w_j = 0 }

is measured at every iterate at no extra cost. A problem stops (and its iterate is frozen) when
`κ(w) ≤ tol · α_max`; problems that stop are removed from the working set, so stragglers do not
cost the whole batch. After `max_iter` iterations the remaining ones are returned with
`converged = False`.

With α = 0 the iteration is gradient descent with momentum on least squares: from `w_0 = 0` the
iterates stay in the row space of X_k, so it converges to the minimum-norm least-squares solution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from icgd.algorithms.plugins import ALGORITHMS
from icgd.algorithms.prefix import check_prefix_inputs


@dataclass(frozen=True)
class LassoResult:
    """The Lasso fitted on each of B problems (sklearn-style trailing names for fitted state).

    weights: (B, d) the final iterate ŵ; n_iter: (B,) int64 FISTA iterations used (0 when `w = 0`
    already satisfies the KKT conditions); converged: (B,) bool, `κ(ŵ) ≤ tol · α_max`;
    kkt_violation: (B,) κ(ŵ) (module docstring).
    """

    weights: Tensor
    n_iter: Tensor
    converged: Tensor
    kkt_violation: Tensor

    def predict(self, x_q: Tensor) -> Tensor:
        """Predictions `x_qᵀ ŵ`: x_q (B, d) → (B,), or (B, m, d) → (B, m)."""
        if x_q.ndim == 2:
            return (x_q * self.weights).sum(-1)
        return torch.einsum("bmd,bd->bm", x_q, self.weights)


def _default_tol(dtype: torch.dtype) -> float:
    """1e-8 in float64, 1e-5 otherwise: float32 reaches ~1e-6 (gradients carry ~1e-7 relative
    rounding error), and 1e-4 left prediction errors ~5e-3 at the ill-conditioned prefixes k ≈ d."""
    return 1e-8 if dtype == torch.float64 else 1e-5


def _kkt_violation(w: Tensor, g: Tensor, alpha: float) -> Tensor:
    """κ(w) from w (P, d) and g = ∇f(w) (P, d) → (P,) (module docstring)."""
    on = (g + alpha * torch.sign(w)).abs()
    off = (g.abs() - alpha).clamp_min(0)
    return torch.where(w != 0, on, off).amax(-1)


def _matvec(G: Tensor, v: Tensor) -> Tensor:
    """G v for symmetric G (P, d, d) and v (P, d) → (P, d), computed as the row vector vᵀ G
    (P, 1, d) @ (P, d, d): on CPU 3–6× faster than the column form `bmm(G, v[..., None])` for these
    tiny matrices (measured at d = 20)."""
    return (v.unsqueeze(-2) @ G).squeeze(-2)


def _power_iteration(G: Tensor, iters: int) -> Tensor:
    """Estimate of λ_max(G) (P,) for symmetric PSD G (P, d, d): the Rayleigh quotient after
    `iters` power steps from the fixed non-constant start `v_i = 1 + i/d` (deterministic, and not
    orthogonal to the top eigenvector of the structured examples where all-ones would be)."""
    P, d, _ = G.shape
    v = 1 + torch.arange(d, dtype=G.dtype, device=G.device) / d  # (d,)
    v = (v / v.norm()).expand(P, d)
    for _ in range(iters):
        u = _matvec(G, v)
        v = u / u.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(G.dtype).tiny)
    return (v * _matvec(G, v)).sum(-1)  # (P,) vᵀ G v, ‖v‖ = 1 (or 0 when G v = 0)


def _checked(
    G: Tensor, b: Tensor, alpha: float, tol: float | None, max_iter: int, power_iters: int
) -> tuple[float, float]:
    """`fista_lasso_gram`'s arguments checked: (α, tol) as floats, tol defaulted by dtype."""
    if G.ndim != 3 or G.shape[-1] != G.shape[-2] or b.shape != G.shape[:2]:
        raise ValueError(f"expected G (P, d, d) and b (P, d), got {tuple(G.shape)}, {b.shape}")
    alpha = float(alpha)
    if not math.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be finite and >= 0, got {alpha}")
    if max_iter < 0 or power_iters < 1:
        raise ValueError(f"need max_iter >= 0 and power_iters >= 1, got {max_iter}, {power_iters}")
    tol = _default_tol(G.dtype) if tol is None else float(tol)
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    return alpha, tol


def _at_zero(G: Tensor, b: Tensor, alpha: float, tol: float) -> tuple[Tensor, ...]:
    """The P problems at w = 0: stopping thresholds `tol · ‖b‖_∞` (P,), w (P, d) in G's dtype,
    κ(0) (P,) (∇f(0) = −b), converged (P,) and iterations 0 (P,)."""
    P, d = b.shape
    threshold = tol * b.abs().amax(-1)  # (P,) tol · α_max
    w_out = torch.zeros(P, d, dtype=G.dtype, device=G.device)
    kkt_out = _kkt_violation(w_out, -b, alpha)  # at w = 0, ∇f(0) = −b
    conv_out = kkt_out <= threshold
    iter_out = torch.zeros(P, dtype=torch.int64, device=G.device)
    return threshold, w_out, kkt_out, conv_out, iter_out


def fista_lasso_gram(
    G: Tensor,
    b: Tensor,
    alpha: float,
    *,
    tol: float | None = None,
    max_iter: int = 10_000,
    power_iters: int = 30,
) -> LassoResult:
    """FISTA on `min_w ½ wᵀ G w − bᵀ w + α ‖w‖₁` for P problems at once (module docstring).

    With `G = XᵀX/k`, `b = Xᵀy/k` this is the Lasso `(1/2k)‖Xw − y‖² + α‖w‖₁` up to a constant.
    G: (P, d, d) symmetric positive semi-definite, b: (P, d), alpha: α ≥ 0, tol: stop when
    `κ(w) ≤ tol · ‖b‖_∞` (default 1e-8 in float64, 1e-5 otherwise), max_iter ≥ 0 FISTA
    iterations, power_iters ≥ 1 power steps for L. Returns a `LassoResult` of P problems.
    """
    alpha, tol = _checked(G, b, alpha, tol, max_iter, power_iters)
    P, d = b.shape
    dtype, device = G.dtype, G.device
    tiny, eps = torch.finfo(dtype).tiny, torch.finfo(dtype).eps

    threshold, w_out, kkt_out, conv_out, iter_out = _at_zero(G, b, alpha, tol)

    # The working set: only problems that have not converged at w = 0.
    idx = (~conv_out).nonzero().squeeze(-1)  # (P_a,) indices into the P problems
    if idx.numel() == 0 or max_iter == 0:
        return LassoResult(w_out, iter_out, conv_out, kkt_out)
    Gw, bw, thr = G[idx], b[idx], threshold[idx]  # (P_a, d, d), (P_a, d), (P_a,)
    L = (1.01 * _power_iteration(Gw, power_iters)).clamp_min(tiny).unsqueeze(-1)  # (P_a, 1)
    w = torch.zeros_like(bw)  # w_t
    w_prev = torch.zeros_like(bw)  # w_{t−1}
    g = -bw  # ∇f(w_t)
    g_prev = -bw  # ∇f(w_{t−1})
    theta = torch.ones(idx.numel(), 1, dtype=dtype, device=device)  # θ_{t−1}
    done = torch.zeros(idx.numel(), dtype=torch.bool, device=device)

    for it in range(1, max_iter + 1):
        theta_next = (1 + torch.sqrt(1 + 4 * theta.square())) / 2
        beta = (theta - 1) / theta_next  # (P_a, 1)
        z = w + beta * (w - w_prev)
        gz = g + beta * (g - g_prev)  # ∇f(z), f quadratic
        u = z - gz / L
        w_new = torch.sign(u) * (u.abs() - alpha / L).clamp_min(0)  # S_{α/L}(u)
        g_new = _matvec(Gw, w_new) - bw
        step = w_new - z
        step_sq = step.square().sum(-1, keepdim=True)  # (P_a, 1)
        curv = (step * (g_new - gz)).sum(-1, keepdim=True)  # stepᵀ G step
        # The descent condition failed (L < curvature along the step), beyond rounding error.
        slack = eps * (gz.abs() + g_new.abs()).sum(-1, keepdim=True) * step_sq.sqrt()
        too_big = curv > L * step_sq * (1 + 1e-6) + slack
        L = torch.where(too_big, 2 * torch.maximum(L, curv / step_sq.clamp_min(tiny)), L)
        restart = ((z - w_new) * (w_new - w)).sum(-1, keepdim=True) > 0
        theta = torch.where(restart | too_big, torch.ones_like(theta_next), theta_next)
        w_prev, g_prev, w, g = w, g, w_new, g_new

        kkt = _kkt_violation(w, g, alpha)  # (P_a,)
        newly = (kkt <= thr) & ~done
        if bool(newly.any()):
            sel = idx[newly]
            w_out[sel], kkt_out[sel] = w[newly], kkt[newly]
            conv_out[sel] = True
            iter_out[sel] = it
            done = done | newly
            n_done = int(done.sum())
            if n_done == done.numel():
                break
            if 2 * n_done >= done.numel():  # compact: copying the survivors costs ≤ 1× overall
                keep = ~done
                idx, Gw, bw, thr = idx[keep], Gw[keep], bw[keep], thr[keep]
                L, theta = L[keep], theta[keep]
                w, w_prev, g, g_prev = w[keep], w_prev[keep], g[keep], g_prev[keep]
                done = done[keep]
    else:  # max_iter reached: hand back the last iterate of the stragglers
        keep = ~done
        sel = idx[keep]
        w_out[sel], kkt_out[sel] = w[keep], _kkt_violation(w[keep], g[keep], alpha)
        iter_out[sel] = max_iter
    return LassoResult(w_out, iter_out, conv_out, kkt_out)


def lasso(
    X: Tensor,
    y: Tensor,
    alpha: float,
    *,
    tol: float | None = None,
    max_iter: int = 10_000,
    power_iters: int = 30,
) -> LassoResult:
    """The Lasso `ŵ = argmin_w (1/2n)‖X w − y‖² + α‖w‖₁` for each of B prompts (FISTA, module
    docstring; scikit-learn's `Lasso(alpha=α, fit_intercept=False)` objective).

    X: (B, n, d), y: (B, n), alpha: α ≥ 0, tol: stop at `κ(ŵ) ≤ tol · ‖Xᵀy/n‖_∞` (default 1e-8
    in float64, 1e-5 otherwise), max_iter, power_iters: as `fista_lasso_gram`.
    Returns a `LassoResult` (weights (B, d), n_iter, converged, kkt_violation (B,)); computed in
    X's dtype.
    """
    if X.ndim != 3 or y.shape != X.shape[:2]:
        raise ValueError(
            f"expected X (B, n, d) and y (B, n), got {tuple(X.shape)} and {tuple(y.shape)}"
        )
    n = X.shape[1]
    y = y.to(X.dtype)
    G = X.transpose(1, 2) @ X / n  # (B, d, d)
    b = torch.einsum("bnd,bn->bd", X, y) / n  # (B, d)
    return fista_lasso_gram(G, b, alpha, tol=tol, max_iter=max_iter, power_iters=power_iters)


def prefix_lasso(
    X: Tensor,
    y: Tensor,
    x_q: Tensor,
    alpha: float,
    *,
    tol: float | None = None,
    max_iter: int = 10_000,
    power_iters: int = 30,
) -> Tensor:
    """The Lasso fitted on every prefix: `ŷ_k = x_qᵀ ŵ_k`, `ŵ_k = argmin (1/2k)‖X_k w − y_k‖² +
    α‖w‖₁` with `X_k`, `y_k` the first k points, k = 1 … n (Garg et al. 2022's Lasso baseline).

    X: (B, n, d), y: (B, n), x_q: (B, d) (one query for every prefix) or (B, n, d) (`x_q[:, k−1]`
    for the prefix of length k), the two conventions of `icgd.algorithms.prefix` → (B, n).
    All B·n problems are solved as one batch by `fista_lasso_gram` on the prefix Gram matrices
    `G_k = (1/k) Σ_{i ≤ k} x_i x_iᵀ` (a cumulative sum, (B, n, d, d): memory O(B n d²)) and
    `b_k = (1/k) Σ_{i ≤ k} y_i x_i`; each problem stops on its own (tol, max_iter, power_iters as
    there). Equal, problem by problem, to `lasso(X[:, :k], y[:, :k], alpha)`. Computed in X's
    dtype.
    """
    Xq = check_prefix_inputs(X, y, x_q)  # (B, r, d), r = 1 or n
    B, n, d = X.shape
    y = y.to(X.dtype)
    k = torch.arange(1, n + 1, dtype=X.dtype, device=X.device)  # (n,)
    G = torch.cumsum(X.unsqueeze(-1) * X.unsqueeze(-2), dim=1)  # (B, n, d, d) Σ_{i ≤ k} x_i x_iᵀ
    G = G.div_(k[:, None, None]).reshape(B * n, d, d)  # (B·n, d, d) G_k
    b = (torch.cumsum(X * y.unsqueeze(-1), dim=1) / k[:, None]).reshape(B * n, d)  # (B·n, d)
    result = fista_lasso_gram(G, b, alpha, tol=tol, max_iter=max_iter, power_iters=power_iters)
    W = result.weights.reshape(B, n, d)  # ŵ_k in row k−1
    return (W * Xq).sum(-1)  # Xq (B, r, d) broadcasts over the n prefixes → (B, n)


ALGORITHMS.register("lasso", lasso)
