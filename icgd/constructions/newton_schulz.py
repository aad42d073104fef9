"""Linear self-attention that runs iterative Newton (Newton–Schulz) for in-context regression.

The algorithm (`icgd.algorithms.iterative_newton`): `Ŝ = (1/n) XᵀX`, `b = (1/n) Xᵀ y`,

    M_0 = α Ŝ,   M_{k+1} = M_k (2I − Ŝ M_k),   w_k = M_k b,   ŷ_k = x_qᵀ w_k.

Giannou, Yang, Wang, Papailiopoulos, Lee 2024 ("How well can transformers emulate in-context
Newton's method?") show that linear attention can run Newton's iteration for a matrix inverse, two
layers per step in their embedding; Fu, Chen, Jia, Sharan 2024 build k iterations in k + O(1)
layers. The construction below is ours, derived for icgd's own layer

    Z ← Z + (1/n) Σ_h P_h Z M (Zᵀ Q_h Z),   M = diag(1, …, 1, 0)   (`LinearSelfAttention`, `full`),

and needs **one layer per Newton step**, after two set-up layers. Why one layer suffices: a layer
moves every column by `(1/n) Σ_h P_h C Q_h z_j` with `C = Σ_{i≤n} z_i z_iᵀ`, which is cubic in the
tokens; if the tokens carry `x_i` and `u_i = M x_i`, one head forms `(1/n) Σ_i u_i x_iᵀ u_j =
M Ŝ M x_j` — Ŝ comes from the data tokens themselves and never needs to be stored.

**Embedding** (`newton_schulz_prompt`), D = 3d + 2 rows, one token per column, `(B, D, n+1)`:

    rows  0 … d−1    x     covariates (context x_i, query x_q); never change
    rows  d … 2d−1   u     0 at input; after layer 2 + k: `2^{−k} M_k x_j` (every column)
    rows 2d … 3d−1   s     0 at input; after layer 2 + k: the query column holds `w_k`
    row  3d          e     query indicator: 1 in the query column, 0 in the context
    row  3d + 1      y     labels; after layer 2 + k: residuals `y_i − x_iᵀ w_k` (context) and
                           `−x_qᵀ w_k` (query), so `ŷ_k = −Z[−1, −1]` as for every icgd LSA.

**Layers** (heads h = 0, 1, 2; a head not listed is zero; `I` is the d×d identity):

1. set-up, `u ← αŜ x`: head 0 `P[u, x] = α I`, `Q[x, x] = I`
   (`(1/n) Σ_i α x_i x_iᵀ x_j = α Ŝ x_j`).
2. `w_0`: the two read-out heads below with `c = 1`, applied to `w = 0`.
2 + k (k = 1 … K), input `u = c M_{k−1} x` with `c = 2^{−(k−1)}`:
   - head 0 (Newton), `P[u, u] = −I/(2c)`, `Q[x, u] = I`: `Δu_j = −(1/2c)(1/n) Σ_i u_i x_iᵀ u_j
     = −(c/2) M Ŝ M x_j`, so `u_j ← (c/2)(2M − MŜM) x_j = 2^{−k} M_k x_j`;
   - head 1 (labels), `P[y, y] = −1/c`, `Q[u, x] = I`: with residuals `ρ_i = y_i − x_iᵀ w`,
     `Δy_j = −(1/c)(1/n) Σ_i ρ_i u_iᵀ x_j = −x_jᵀ M (b − Ŝ w)`;
   - head 2 (weights), `P[s, u] = I/c`, `Q[y, e] = 1`: `Δs_j = e_j (1/c)(1/n) Σ_i u_i ρ_i
     = e_j M (b − Ŝ w)` (the query column only).
   Heads 1–2 are one preconditioned-GD step `w ← w + M_{k−1}(b − Ŝ w)` (Ahn et al.'s label-row
   argument with the data-dependent preconditioner carried in the u rows), and indeed
   `w_{k−1} + M_{k−1}(b − Ŝ w_{k−1}) = (2M_{k−1} − M_{k−1}ŜM_{k−1}) b = M_k b = w_k`; from `w = 0`
   with `M_0` the same step gives `w_0 = M_0 b` (layer 2).

The factor `2^{−k}` in the u rows: the residual connection adds `u` once, while Newton needs
`2 M_k x`; halving the stored matrix every layer absorbs the 2, and scaling by powers of two is
exact in floating point. The per-layer weights differ (by those powers of two), so the model is
stacked, not looped; α is a number fixed in the weights (a transformer cannot form `1/‖Ŝ‖₂²`), so
compare with `iterative_newton(X, y, K, alpha=α)` and choose `α < 2/‖Ŝ‖₂²` for every prompt.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from icgd.models.lsa import LinearSelfAttention, LSAConfig

N_HEADS = 3  # head 0: Newton step on u; head 1: label row; head 2: weights in the query column


def _rows(d: int) -> dict[str, slice]:
    """The row blocks of the embedding (module docstring): x, u, s (d rows each), e, y (one)."""
    return {
        "x": slice(0, d),
        "u": slice(d, 2 * d),
        "s": slice(2 * d, 3 * d),
        "e": slice(3 * d, 3 * d + 1),
        "y": slice(3 * d + 1, 3 * d + 2),
    }


def newton_schulz_prompt(X: Tensor, y: Tensor, x_q: Tensor) -> Tensor:
    """The embedding of the module docstring: X (B, n, d), y (B, n), x_q (B, d) → Z (B, 3d+2, n+1)
    with rows x = `[x_1 … x_n, x_q]`, u = s = 0, e = `[0 … 0, 1]`, y = `[y_1 … y_n, 0]`."""
    if X.ndim != 3 or y.shape != X.shape[:2] or x_q.shape != (X.shape[0], X.shape[2]):
        raise ValueError(
            f"expected X (B, n, d), y (B, n), x_q (B, d), got {tuple(X.shape)}, "
            f"{tuple(y.shape)}, {tuple(x_q.shape)}"
        )
    B, n, d = X.shape
    r = _rows(d)
    Z = X.new_zeros(B, 3 * d + 2, n + 1)
    Z[:, r["x"], :n] = X.transpose(1, 2)  # (B, d, n)
    Z[:, r["x"], n] = x_q
    Z[:, 3 * d, n] = 1.0  # e: the query indicator
    Z[:, 3 * d + 1, :n] = y
    return Z


def read_newton_schulz(Z: Tensor) -> tuple[Tensor, Tensor]:
    """`(w, ŷ)` from an embedding after layer 2 + k: `w_k` (B, d) from the s rows of the query
    column and `ŷ_k = x_qᵀ w_k = −Z[−1, −1]` (B,). Z: (B, 3d+2, n+1)."""
    if Z.ndim != 3 or (Z.shape[1] - 2) % 3 != 0 or Z.shape[1] < 5:
        raise ValueError(f"Z must be (B, 3d+2, n+1), got {tuple(Z.shape)}")
    d = (Z.shape[1] - 2) // 3
    return Z[:, _rows(d)["s"], -1], -Z[:, -1, -1]


def newton_schulz_layers(
    d: int, n_steps: int, alpha: float, dtype: torch.dtype = torch.float64
) -> tuple[Tensor, Tensor]:
    """`(P, Q)` of the K + 2 layers (module docstring), each (K+2, 3, 3d+2, 3d+2)."""
    D, r = 3 * d + 2, _rows(d)
    P = torch.zeros(n_steps + 2, N_HEADS, D, D, dtype=dtype)
    Q = torch.zeros(n_steps + 2, N_HEADS, D, D, dtype=dtype)
    eye = torch.eye(d, dtype=dtype)
    P[0, 0, r["u"], r["x"]] = alpha * eye  # layer 1: u ← α Ŝ x
    Q[0, 0, r["x"], r["x"]] = eye
    for k in range(n_steps + 1):  # layer 2 + k produces w_k
        c = 2.0 ** -max(k - 1, 0)  # the scale of M in the u rows at this layer's input
        layer = k + 1
        if k >= 1:  # head 0: u = c M_{k−1} x → (c/2) M_k x
            P[layer, 0, r["u"], r["u"]] = -eye / (2 * c)
            Q[layer, 0, r["x"], r["u"]] = eye
        P[layer, 1, r["y"], r["y"]] = -1.0 / c  # head 1: residual labels
        Q[layer, 1, r["u"], r["x"]] = eye
        P[layer, 2, r["s"], r["u"]] = eye / c  # head 2: w in the query column
        Q[layer, 2, r["y"], r["e"]] = 1.0
    return P, Q


def lsa_from_newton_schulz(
    d: int, n_steps: int, alpha: float, *, dtype: torch.dtype = torch.float64
) -> LinearSelfAttention:
    """A new stacked, three-head `full` LSA of `n_steps + 2` layers running K = `n_steps`
    Newton–Schulz steps from `M_0 = α Ŝ` (module docstring).

    Input: `newton_schulz_prompt(X, y, x_q)`, (B, 3d+2, n+1); the model's `config.d` is 3d+1 (the
    rows above the label row). After layer 2 + k (`hook_z.{k+2}`), k = 0…K, the embedding holds
    `w_k` and `ŷ_k` (`read_newton_schulz`); `model.predict(Z)` is `ŷ_K`, equal to
    `iterative_newton(X, y, K, alpha=alpha).predict(x_q)[-1]`.
    """
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise ValueError(f"d must be a positive integer, got {d!r}")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 0:
        raise ValueError(f"n_steps must be a non-negative integer, got {n_steps!r}")
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be finite and > 0, got {alpha!r}")
    config = LSAConfig(
        d=3 * d + 1,
        n_layers=n_steps + 2,
        looped=False,
        parametrisation="full",
        n_heads=N_HEADS,
        init_std=0.0,
    )
    model = LinearSelfAttention(config, dtype=dtype)
    P, Q = newton_schulz_layers(d, n_steps, float(alpha), dtype)
    with torch.no_grad():
        model.P.copy_(P)
        model.Q.copy_(Q)
    return model
