"""Baselines evaluated on every prefix of the context at once: OLS, ridge, one-step GD, kNN.

A causal in-context learner (Garg et al. 2022, "What can transformers learn in-context? A case
study of simple function classes") predicts after every prefix of its prompt, so its baselines are
curves over the context length: the baseline fitted on `(x_1, y_1), …, (x_k, y_k)` for each
`k = 1 … n`. Every function here returns all n of them for a whole batch in one computation — no
Python loop over prompts or over k.

Shapes: X (B, n, d) with rows `x_iᵀ`, y (B, n). Queries, two conventions:

- (a) `x_q` (B, d): one query per prompt; column k−1 of the (B, n) output is the prediction at
  `x_q` of the baseline fitted on the first k points;
- (b) `x_q` (B, n, d): one query per prefix, `x_q[:, k−1]` for the prefix of length k (Garg et
  al.'s "next point" evaluation is `x_q[:, k−1] = x_{k+1}`); column k−1 of the output is the
  prediction at `x_q[:, k−1]` of the baseline fitted on the first k points.

Least squares and ridge (the predictors of Akyürek et al. 2023, "What learning algorithm is
in-context learning?") use the sequential (Kalman / recursive-least-squares) structure of the
prefixes instead of a solve per prefix, see `_prefix_linear`: the work is a few triangular
factorisations per prompt, not per prefix.
"""

from __future__ import annotations

import torch
from torch import Tensor

from icgd.algorithms.plugins import ALGORITHMS


def check_prefix_inputs(X: Tensor, y: Tensor, x_q: Tensor) -> Tensor:
    """Validate shapes; return the queries as (B, r, d): r = 1 for (a), r = n for (b)."""
    if X.ndim != 3 or y.shape != X.shape[:2]:
        raise ValueError(
            f"expected X (B, n, d) and y (B, n), got {tuple(X.shape)} and {tuple(y.shape)}"
        )
    B, n, d = X.shape
    if x_q.shape == (B, d):
        return x_q.to(X.dtype).unsqueeze(1)  # (a): (B, 1, d), the same query for every k
    if x_q.shape == (B, n, d):
        return x_q.to(X.dtype)  # (b): one query per prefix
    raise ValueError(
        f"x_q must be (B, d) = {(B, d)} or (B, n, d) = {(B, n, d)}, got {tuple(x_q.shape)}"
    )


def _prefix_sum(U: Tensor, z: Tensor) -> Tensor:
    """`out[..., k] = Σ_{i ≤ k} U[..., i, k] z[..., i]`: U (..., s, s), z (..., s) → (..., s).

    U (..., s, 1) is one column shared by every k: `out = cumsum(U[..., 0] * z)`.
    """
    s = U.shape[-2]
    if U.shape[-1] == 1:  # one query for every prefix
        return torch.cumsum(U[..., 0] * z, dim=-1)
    upper = torch.ones(s, s, dtype=torch.bool, device=U.device).triu()  # [i, k] = i ≤ k
    return ((U * upper) * z.unsqueeze(-1)).sum(-2)


def _prefix_linear(X: Tensor, y: Tensor, Xq: Tensor, lam: Tensor | None) -> tuple[Tensor, Tensor]:
    """Ridge (lam (G,) > 0) or least squares (lam None) predictions on every prefix.

    X (B, n, d), y (B, n), Xq (B, r, d) queries: r = 1 one for all prefixes, r = n one each.
    Returns predictions (G, B, n) (G = 1 for least squares) and, for least squares, a (B,) bool
    mask of the prompts that need the rank-revealing fallback: their first s = min(n, d) points
    are numerically linearly dependent, or a factorisation below failed (ridge never flags).

    With `A_k = X_kᵀ X_k + λ I` (λ = 0: least squares) the prefix estimator is
    `ŵ_k = A_k⁻¹ X_kᵀ y_k`; both stages below factor ONE matrix per prompt whose leading blocks are
    the prefixes, so a triangular solve and a cumulative sum give every k at once:

    1. k ≤ s: the dual form `ŷ_k = c_kᵀ (K_k + λ I_k)⁻¹ y_k`, `K = X Xᵀ`, `c = X x_q`. With
       `K_s + λ I = L Lᵀ` the leading k×k block of L factors `K_k + λ I_k`, so with `u = L⁻¹ c`,
       `z = L⁻¹ y` (forward substitution keeps prefixes): `ŷ_k = Σ_{i ≤ k} u_i z_i`. For λ = 0
       this is the min-norm interpolant while the points are independent; the Cholesky pivots
       `L_ii² = ‖x_i − proj_{span(x_<i)} x_i‖²` are the rank check.
    2. k > s (only when n > d, s = d): remove the suffix `S = {k+1 … n}` from the fit on all n
       points (`A = A_n`, `ŵ_n = A⁻¹ X_nᵀ y_n`, residuals `e = y − X ŵ_n`):
       `ŵ_k = ŵ_n − A⁻¹ X_Sᵀ D_S⁻¹ e_S` with `D_S = I − X_S A⁻¹ X_Sᵀ` (Woodbury). In the
       reversed order `x_n, x_{n−1}, …` every S is a leading block of D, so one Cholesky of the
       (n−d−1)×(n−d−1) matrix D serves every k. D_S is positive definite iff `A_k` is, with
       conditioning that of `A_k` relative to `A_n` — better than conditioning on the first d
       points, whose square system is the worst conditioned of all prefixes.
    """
    B, n, d = X.shape
    s, m = min(n, d), n - min(n, d)
    r = Xq.shape[1]
    dtype, device = X.dtype, X.device
    lam_m = None if lam is None else lam.reshape(-1, 1, 1, 1)  # (G, 1, 1, 1)
    Xa, ya = X[:, :s], y[:, :s]  # (B, s, d), (B, s)

    # Stage 1: prefixes k = 1 … s through the dual (s × s) system.
    Ka = Xa @ Xa.transpose(1, 2)  # (B, s, s)
    if lam_m is not None:
        Ka = Ka + lam_m * torch.eye(s, dtype=dtype, device=device)  # (G, B, s, s)
    La, info = torch.linalg.cholesky_ex(Ka)  # lower triangular
    q1 = Xq[:, :s] if r > 1 else Xq  # (B, r1, d), r1 = s or 1
    r1 = q1.shape[1]
    rhs = torch.cat([Xa @ q1.transpose(1, 2), ya.unsqueeze(-1)], dim=-1)  # (B, s, r1+1)
    sol = torch.linalg.solve_triangular(La, rhs, upper=False)  # (…, s, r1+1): L⁻¹ [c, y]
    pred = [_prefix_sum(sol[..., :r1], sol[..., r1])]  # (…, s)

    dependent = None
    if lam is None:
        pivots = La.diagonal(dim1=-2, dim2=-1).square()  # (B, s): ‖x_i − proj_{x_<i} x_i‖²
        scale = Xa.square().sum(-1).amax(-1, keepdim=True)  # (B, 1): max ‖x_i‖²
        tol = d * torch.finfo(dtype).eps
        dependent = (info != 0) | ~(pivots > tol * scale).all(-1)  # (B,)

    # Stage 2: prefixes k = d+1 … n, removing the suffixes from the fit on all n points.
    if m > 0:
        later, info_a, info_d = _later_prefixes(X, y, Xq, lam_m)
        pred.append(later)
        if dependent is not None:
            dependent = dependent | (info_a != 0) | (info_d != 0)
    out = torch.cat([p.expand(*pred[-1].shape[:-1], p.shape[-1]) for p in pred], dim=-1)
    return out.reshape(-1, B, n), dependent


def _later_prefixes(
    X: Tensor, y: Tensor, Xq: Tensor, lam_m: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Stage 2 of `_prefix_linear` (n > d): predictions (…, n − d) of prefixes k = d+1 … n,
    by removing the suffixes from the fit on all n points (its docstring), and the Cholesky
    infos of A and D (nonzero: a factorisation failed)."""
    _, n, d = X.shape
    s, m = d, n - d
    r = Xq.shape[1]
    dtype, device = X.dtype, X.device
    lam_a = 0.0 if lam_m is None else lam_m
    A = X.transpose(1, 2) @ X + lam_a * torch.eye(d, dtype=dtype, device=device)  # (…, d, d)
    LA, info_a = torch.linalg.cholesky_ex(A)  # A = L_A L_Aᵀ
    Xqb = Xq[:, s:] if r > 1 else Xq  # (B, r2, d): queries of prefixes d+1 … n (or one)
    r2 = Xqb.shape[1]
    Xs = X[:, s + 1 :].flip(1)  # (B, m−1, d): x_n, x_{n−1}, …, x_{d+2}
    ys = y[:, s + 1 :].flip(1)  # (B, m−1)
    rhs = torch.cat([Xs, Xqb, (X * y.unsqueeze(-1)).sum(1, keepdim=True)], 1)  # (B, m+r2, d)
    sol = torch.linalg.solve_triangular(LA, rhs.transpose(1, 2), upper=False)  # L_A⁻¹ rhsᵀ
    Q, S, t = sol[..., : m - 1], sol[..., m - 1 : m - 1 + r2], sol[..., -1]  # t: L_A⁻¹ b_n
    base = (S * t.unsqueeze(-1)).sum(-2)  # (…, r2): x_qᵀ w_n, w_n = A⁻¹ b_n = L_A⁻ᵀ t
    if m > 1:
        # Fit without the points S = {k+1 … n}: w_{−S} = w_n − A⁻¹ X_Sᵀ D_S⁻¹ e_S with
        # D_S = I − X_S A⁻¹ X_Sᵀ and e_S = y_S − X_S w_n. In the reversed order
        # (x_n, x_{n−1}, …) each S is a leading block: one Cholesky of D for every k.
        D = torch.eye(m - 1, dtype=dtype, device=device) - Q.transpose(-2, -1) @ Q
        LD, info_d = torch.linalg.cholesky_ex(D)  # (…, m−1, m−1)
        resid = ys - (Q * t.unsqueeze(-1)).sum(-2)  # (…, m−1): e = y − X w_n, reversed
        Sf = S[..., : m - 1].flip(-1) if r2 > 1 else S  # query of prefix n−p in column p−1
        rhs2 = torch.cat([Q.transpose(-2, -1) @ Sf, resid.unsqueeze(-1)], dim=-1)
        sol2 = torch.linalg.solve_triangular(LD, rhs2, upper=False)  # (…, m−1, r+1)
        corr = _prefix_sum(sol2[..., :-1], sol2[..., -1]).flip(-1)  # prefixes d+1 … n−1
        corr = torch.cat([corr, torch.zeros_like(corr[..., :1])], dim=-1)  # (…, m)
    else:
        corr, info_d = torch.zeros_like(base[..., :1]), torch.zeros_like(info_a)
    return base - corr, info_a, info_d


def _prefix_ols_pinv(X: Tensor, y: Tensor, Xq: Tensor, rtol: float) -> Tensor:
    """Least squares on every prefix by an eigendecomposition of each prefix Gram matrix.

    `G_k = Σ_{i ≤ k} x_i x_iᵀ`, `b_k = Σ_{i ≤ k} y_i x_i` (cumulative sums, (B, n, d, d));
    `ŵ_k = G_k⁺ b_k` with eigenvalues `≤ rtol · λ_max(G_k)` treated as zero (the min-norm least
    squares solution, since `b_k` lies in the range of `G_k`). O(B n d³): used only for prompts
    whose first min(n, d) points are linearly dependent. Returns (B, n).
    """
    G = torch.cumsum(X.unsqueeze(-1) * X.unsqueeze(-2), dim=1)  # (B, n, d, d)
    b = torch.cumsum(X * y.unsqueeze(-1), dim=1)  # (B, n, d)
    evals, evecs = torch.linalg.eigh(G)  # ascending, (B, n, d), (B, n, d, d)
    keep = evals > rtol * evals[..., -1:]
    inv = torch.where(keep, 1 / torch.where(keep, evals, torch.ones_like(evals)), 0)
    coef = (evecs * b.unsqueeze(-1)).sum(-2) * inv  # (B, n, d): Uᵀ b / s
    w = (evecs * coef.unsqueeze(-2)).sum(-1)  # (B, n, d): U (Uᵀ b / s)
    return (w * Xq).sum(-1)  # Xq (B, r, d) broadcasts over the n prefixes


def prefix_ols(X: Tensor, y: Tensor, x_q: Tensor, rtol: float | None = None) -> Tensor:
    """Least squares fitted on every prefix: `ŷ_k = x_qᵀ X_k⁺ y_k`, k = 1 … n.

    `X_k` (k, d) are the first k rows of X and `X_k⁺` the Moore–Penrose pseudo-inverse: the
    minimiser of `‖X_k w − y_k‖²` (`(X_kᵀ X_k)⁻¹ X_kᵀ y_k` when k ≥ d), of minimum norm when it is
    not unique (k < d: the interpolant `X_kᵀ (X_k X_kᵀ)⁻¹ y_k`). The same estimator as
    `icgd.algorithms.ols` on `X[:, :k]`; the "least squares" baseline of Garg et al. 2022 and OLS
    of Akyürek et al. 2023.

    X: (B, n, d), y: (B, n), x_q: (B, d) or (B, n, d) (module docstring) → (B, n).

    Rank: a prompt whose first min(n, d) points are linearly independent — every Gram–Schmidt
    pivot `‖x_i − proj_{span(x_<i)} x_i‖² > d·eps·max_i ‖x_i‖²` — is solved exactly by the
    sequential factorisation of `_prefix_linear` (a few factorisations per prompt). The other
    prompts (points in a subspace, repeated points) go through `G_k⁺ b_k` with an
    eigendecomposition of every prefix Gram `G_k = X_kᵀ X_k`, eigenvalues `≤ rtol·λ_max(G_k)`
    treated as zero; `rtol` defaults to `d·eps` of float64.

    Always computed in float64 and returned in X's dtype: the factorisations work with Gram-type
    matrices, which square the condition number, and in float32 the nearly square prefixes
    (k = d, d+1) lost up to 100% relative accuracy (measured against float64).
    """
    if X.dtype != torch.float64:
        return prefix_ols(X.double(), y.double(), x_q.double(), rtol).to(X.dtype)
    Xq = check_prefix_inputs(X, y, x_q)
    pred, dependent = _prefix_linear(X, y, Xq, None)
    pred = pred[0]  # (B, n)
    if bool(dependent.any()):
        idx = dependent.nonzero().squeeze(-1)  # (B',)
        tol = X.shape[-1] * torch.finfo(X.dtype).eps if rtol is None else rtol
        pred = pred.index_put((idx,), _prefix_ols_pinv(X[idx], y[idx], Xq[idx], tol))
    return pred


def prefix_ridge(X: Tensor, y: Tensor, x_q: Tensor, lam: float | Tensor) -> Tensor:
    """Ridge regression fitted on every prefix: `ŷ_k = x_qᵀ (X_kᵀ X_k + λ I)⁻¹ X_kᵀ y_k`.

    The same estimator as `icgd.algorithms.ridge` on `X[:, :k]` (unnormalised `X_kᵀ X_k`, λ on
    Akyürek et al. 2023's scale; the ridge baseline of Garg et al. 2022), for k = 1 … n and for
    every λ of a grid in one computation (see `_prefix_linear`: per prompt and λ, one s×s, one
    d×d and one (n−d)×(n−d) Cholesky factorisation, s = min(n, d)).

    X: (B, n, d), y: (B, n), x_q: (B, d) or (B, n, d) (module docstring).
    lam: a number λ ≥ 0 → (B, n); a (G,) tensor of λ ≥ 0 → (G, B, n). λ = 0 is least squares
    (`prefix_ols`). Computed in float64 and returned in X's dtype, as `prefix_ols`.
    """
    if X.dtype != torch.float64:
        lam64 = lam.double() if isinstance(lam, Tensor) else lam
        return prefix_ridge(X.double(), y.double(), x_q.double(), lam64).to(X.dtype)
    Xq = check_prefix_inputs(X, y, x_q)
    lam_t = torch.as_tensor(lam, dtype=X.dtype, device=X.device)
    if lam_t.ndim > 1:
        raise ValueError(
            f"prefix_ridge: lam must be a number or a (G,) tensor, got {tuple(lam_t.shape)}"
        )
    if (lam_t < 0).any() or not torch.isfinite(lam_t).all():
        raise ValueError("prefix_ridge: lam must be finite and >= 0")
    grid = lam_t.reshape(-1)  # (G,)
    pred, _ = _prefix_linear(X, y, Xq, torch.where(grid > 0, grid, 1))  # (G, B, n)
    if bool((grid == 0).any()):
        pred[grid == 0] = prefix_ols(X, y, x_q)
    return pred if lam_t.ndim == 1 else pred[0]


def prefix_one_step_gd(X: Tensor, y: Tensor, x_q: Tensor, step: float = 1.0) -> Tensor:
    """One GD step from `w = 0` on every prefix: `ŷ_k = η x_qᵀ (1/k) Σ_{i ≤ k} y_i x_i`.

    The first iterate `w_1 = −η ∇R_k(0)` of `icgd.algorithms.gradient_descent` on `X[:, :k]`, with
    `R_k(w) = (1/2k) Σ_{i ≤ k} (x_iᵀ w − y_i)²`; with η = 1 it is the "averaging" baseline of Garg
    et al. 2022 (`prefix_averaging`), one-step GD of Akyürek et al. 2023.

    X: (B, n, d), y: (B, n), x_q: (B, d) or (B, n, d) (module docstring), step: η → (B, n).
    """
    Xq = check_prefix_inputs(X, y, x_q)
    n = X.shape[1]
    k = torch.arange(1, n + 1, dtype=X.dtype, device=X.device)  # (n,)
    mean_yx = torch.cumsum(X * y.unsqueeze(-1), dim=1) / k[:, None]  # (B, n, d)
    return step * (mean_yx * Xq).sum(-1)  # Xq (B, r, d) broadcasts over the n prefixes


def prefix_averaging(X: Tensor, y: Tensor, x_q: Tensor) -> Tensor:
    """The averaging baseline of Garg et al. 2022: `ŷ_k = x_qᵀ (1/k) Σ_{i ≤ k} y_i x_i`.

    `prefix_one_step_gd` with step 1. X: (B, n, d), y: (B, n), x_q: (B, d) or (B, n, d) → (B, n).
    """
    return prefix_one_step_gd(X, y, x_q, step=1.0)


def prefix_knn(X: Tensor, y: Tensor, x_q: Tensor, k_neighbors: int = 3) -> Tensor:
    """k-nearest-neighbours regression on every prefix (the 3-NN baseline of Garg et al. 2022).

    `ŷ_j = (1/m) Σ_{i ∈ N_j} y_i`, where `N_j` holds the `m = min(j, k_neighbors)` points among
    `x_1 … x_j` closest to the query in Euclidean distance (all j points when j < k_neighbors).
    Ties are broken by position: the earlier point wins.

    X: (B, n, d), y: (B, n), x_q: (B, d) or (B, n, d) (module docstring) → (B, n).
    Memory O(B n²): a (B, n, n) table of distances from each prefix's query to every point, the
    points beyond the prefix masked with +inf, then a stable sort per prefix.
    """
    if k_neighbors < 1:
        raise ValueError(f"prefix_knn: k_neighbors must be >= 1, got {k_neighbors}")
    Xq = check_prefix_inputs(X, y, x_q)
    B, n, _ = X.shape
    if Xq.shape[1] == 1:  # (a): one query, distances (B, 1, n) shared by every prefix
        dist = (X - Xq).square().sum(-1).unsqueeze(1)  # (B, 1, n)
    else:  # (b): ‖x_{q,j}‖² is constant within a row j, so rank by ‖x_i‖² − 2 x_{q,j}ᵀ x_i
        dist = X.square().sum(-1).unsqueeze(1) - 2 * Xq @ X.transpose(1, 2)  # (B, n, n)
    j = torch.arange(n, device=X.device)
    beyond = j[None, :] > j[:, None]  # (n, n): [j, i] = point i not in the prefix of length j+1
    dist = dist.masked_fill(beyond, torch.inf)  # (B, n, n)
    m = min(k_neighbors, n)
    order = torch.sort(dist, dim=-1, stable=True).indices[..., :m]  # (B, n, m)
    labels = torch.gather(y.unsqueeze(1).expand(B, n, n), 2, order)  # (B, n, m)
    count = torch.clamp(j + 1, max=m)  # (n,): min(j+1, k_neighbors) points in prefix j+1
    valid = torch.arange(m, device=X.device)[None, :] < count[:, None]  # (n, m)
    return (labels * valid).sum(-1) / count.to(X.dtype)


ALGORITHMS.register("prefix-ols", prefix_ols)
ALGORITHMS.register("prefix-ridge", prefix_ridge)
ALGORITHMS.register("prefix-one-step-gd", prefix_one_step_gd)
ALGORITHMS.register("prefix-averaging", prefix_averaging)
ALGORITHMS.register("prefix-knn", prefix_knn)
