"""A fixed-weight softmax-attention transformer running dual ascent on entropic OT (SPEC §4).

Daneshmand (2024), "Provable optimal transport with transformers", claims a transformer with fixed
weights and an engineered prompt takes one step of gradient ascent with adaptive step sizes on the
entropic-OT semi-dual per layer, for any number of points. The paper's prompt and step rule were
not available to us: the prompt, the weights and the step rule below are **ours**, built from the
math of SPEC §4.

Problem. Uniform measures on `x_1 … x_n` and `y_1 … y_n` in R^d, `C_ij = ‖x_i − y_j‖²`, ε > 0,

    F(g) = (1/n) Σ_j g_j − (ε/n) Σ_i log Σ_j exp((g_j − C_ij)/ε),
    π_ij(g) = softmax_j((g_j − C_ij)/ε),   s_j = Σ_i π_ij,   ∇F(g)_j = (1 − s_j)/n,

plan `P = π / n` (rows sum to 1/n; columns to 1/n at the optimum, s = 1).

Step rule ("sink", the rule `step_rule="sink"` of `icgd.algorithms.entropic_ot.semi_dual_ascent`):
per-coordinate step `η_j = κ ε n / (1 + s_j)` on the gradient, i.e.

    g_j ← g_j + κ ε (1 − s_j) / (1 + s_j) = g_j + κ ε (2 v_j − 1),   v_j = 1 / (1 + s_j).

`v_j` is the weight a softmax puts on a "sink" key of logit 0 next to keys of weights `π_ij`.
For s near 1, `2(1 − s)/(1 + s) ≈ −log s`, so κ = 2 is a first-order version of the Sinkhorn
update `g_j ← g_j − ε log s_j`; every step is bounded, `|Δg_j| < κε`.

Prompt (`ot_prompt`; the layout table is in `icgd.models.ot_attention`, width `D = d + 9`):

| token            | pos   | sq       | flag_x | flag_y | flag_sink | g      | psi | u, w, v |
|------------------|-------|----------|--------|--------|-----------|--------|-----|---------|
| x_i (rows 0…n−1) | x_i   | ‖x_i‖²   | 1      | 0      | 0         | 0      | 0   | 0       |
| y_j (rows n…2n−1)| y_j   | ‖y_j‖²   | 0      | 1      | 0         | g0_j   | 0   | 0       |
| sink (row 2n)    | 0     | 0        | 0      | 0      | 1         | 0      | 0   | 0       |

Layer (the same weights in every layer; they depend on ε and κ only, not on n, the data or the
layer). Write `e_k` for the unit vector of slot k; all unlisted entries are 0.

1. Head `xy` (queries x_i; keys y_j and the sink), `S[k, q] = z_kᵀ W_KQ z_q`:

       W_KQ[pos, pos] = (2/ε) I_d,  W_KQ[sq, flag_x] = −1/ε,  W_KQ[flag_y, sq] = −1/ε,
       W_KQ[g, flag_x] = 1/ε,       W_KQ[flag_sink, psi] = 1,

   so `S[y_j, x_i] = (2⟨y_j, x_i⟩ − ‖y_j‖² − ‖x_i‖² + g_j)/ε = (g_j − C_ij)/ε` and
   `S[sink, x_i] = ψ_i`, the x-token's running estimate (its `psi` slot, 0 in the prompt).
   `W_OV = e_u e_flag_sinkᵀ + e_w e_flag_yᵀ` writes the sink's weight and the y-keys' total weight:

       u_i = e^{ψ_i} / (e^{ψ_i} + Z_i),   w_i = Z_i / (e^{ψ_i} + Z_i),
       Z_i = Σ_j exp((g_j − C_ij)/ε).

2. FFN, hidden 2, activation `log` (ours; accurate to float64 round-off since both `u_i` and `w_i`
   come out of the softmax with full relative precision, unlike `log(1/u − 1)` when `u ≈ 1`):

       W_in = [e_w + e_flag_y + e_flag_sink, e_u + e_flag_y + e_flag_sink]ᵀ,
       W_out = e_psi (1, −1),

   so x-tokens get `ψ_i ← ψ_i + log w_i − log u_i = log Z_i` and y / sink tokens
   `log 1 − log 1 = 0`. The residual stream thus keeps `ψ_i = log Z_i(g)` of the current g: the next
   layer's sink logit is last layer's value, so `Z_i e^{−ψ_i}` stays within `e^{±κ}` and the softmax
   never underflows after layer 1.
3. Head `yx` (queries y_j; keys x_i and the sink):

       W_KQ[pos, pos] = (2/ε) I_d,  W_KQ[flag_x, sq] = −1/ε,  W_KQ[sq, flag_y] = −1/ε,
       W_KQ[flag_x, g] = 1/ε,       W_KQ[psi, flag_y] = −1,

   so `S[x_i, y_j] = (g_j − C_ij)/ε − log Z_i = log π_ij` and `S[sink, y_j] = 0`: the pattern is
   `π_ij / (1 + s_j)` on x_i and `1/(1 + s_j)` on the sink. `W_OV = e_v e_flag_sinkᵀ`:
   `v_j = 1/(1 + s_j)`.
4. Linear sublayer `z ← z + M z`,

       M = κε (2 e_g e_vᵀ − e_g e_flag_yᵀ) − e_u e_uᵀ − e_w e_wᵀ − e_v e_vᵀ:

   `g_j ← g_j + κε (2 v_j − 1)` on y-tokens (v and flag_y are 0 elsewhere), scratch u, w, v
   reset to 0 on every token.

Domain: layer 1 needs `|log Z_i(g0)| ≲ 700` (no float64 underflow of `u_i` or `w_i`), e.g.
`min_j C_ij − g0_j < 700 ε` for every i; after that the running ψ keeps every exponent within
±κ. Only the sink rule above is implemented (the step rule is the weights: other rules that are
functions of `1/(1 + s_j)` would change `M` only).

Read-outs: `model.plan(Z)` (B, n, n) = `π(g_L)/n` from the last `xy` head on the final prompt
without the sink; `barycentric_map(P, Y)` = `n Σ_j P_ij y_j`; `plan_argmax(P)` each row's argmax.
"""

from __future__ import annotations

import torch
from torch import Tensor

from icgd.models.ot_attention import HEAD_XY, HEAD_YX, OTAttention, OTAttentionConfig, OTLayout


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def dual_ascent_layer_weights(
    d: int, eps: float, kappa: float, *, dtype: torch.dtype = torch.float64
) -> dict[str, Tensor]:
    """One layer's weights (module docstring): `KQ`, `OV` (2, D, D), `W_in` (2, D), `W_out`
    (D, 2), `M` (D, D), `D = d + 9`."""
    lay = OTLayout(d)
    D, p = lay.width, lay.pos
    KQ = torch.zeros(2, D, D, dtype=dtype)
    OV = torch.zeros(2, D, D, dtype=dtype)
    eye = torch.eye(d, dtype=dtype)
    # head xy: S[y_j, x_i] = (g_j − C_ij)/ε, S[sink, x_i] = ψ_i
    xy = KQ[HEAD_XY]
    xy[p, p] = (2 / eps) * eye
    xy[lay.sq, lay.flag_x] = -1 / eps  # key's ‖y_j‖²
    xy[lay.flag_y, lay.sq] = -1 / eps  # query's ‖x_i‖²
    xy[lay.g, lay.flag_x] = 1 / eps  # key's g_j
    xy[lay.flag_sink, lay.psi] = 1.0  # sink logit ψ_i
    OV[HEAD_XY, lay.u, lay.flag_sink] = 1.0  # u_i: the sink's weight
    OV[HEAD_XY, lay.w, lay.flag_y] = 1.0  # w_i: the y-keys' total weight
    # head yx: S[x_i, y_j] = (g_j − C_ij)/ε − ψ_i = log π_ij, S[sink, y_j] = 0
    yx = KQ[HEAD_YX]
    yx[p, p] = (2 / eps) * eye
    yx[lay.flag_x, lay.sq] = -1 / eps  # query's ‖y_j‖²
    yx[lay.sq, lay.flag_y] = -1 / eps  # key's ‖x_i‖²
    yx[lay.flag_x, lay.g] = 1 / eps  # query's g_j
    yx[lay.psi, lay.flag_y] = -1.0  # key's −log Z_i
    OV[HEAD_YX, lay.v, lay.flag_sink] = 1.0  # v_j = 1/(1 + s_j)
    # FFN: ψ += log(w + 1[not x]) − log(u + 1[not x])
    W_in = torch.zeros(2, D, dtype=dtype)
    W_in[0, [lay.w, lay.flag_y, lay.flag_sink]] = 1.0
    W_in[1, [lay.u, lay.flag_y, lay.flag_sink]] = 1.0
    W_out = torch.zeros(D, 2, dtype=dtype)
    W_out[lay.psi] = torch.tensor([1.0, -1.0], dtype=dtype)
    # linear: g += κε (2 v − flag_y); reset u, w, v
    M = torch.zeros(D, D, dtype=dtype)
    M[lay.g, lay.v] = 2 * kappa * eps
    M[lay.g, lay.flag_y] = -kappa * eps
    for k in (lay.u, lay.w, lay.v):
        M[k, k] = -1.0
    return {"KQ": KQ, "OV": OV, "W_in": W_in, "W_out": W_out, "M": M}


def transformer_from_dual_ascent(
    d: int, eps: float, kappa: float, depth: int, *, dtype: torch.dtype = torch.float64
) -> OTAttention:
    """A new `depth`-layer `OTAttention` whose layer l takes one sink-rule dual-ascent step
    `g_j ← g_j + κε (1 − s_j)/(1 + s_j)` on the entropic-OT semi-dual (module docstring).

    Every layer has the same weights, functions of ε and κ only; the model works for any number of
    points. The initial duals `g0` live in the prompt (`ot_prompt`), not in the weights.
    """
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise ValueError(f"d must be a positive integer, got {d!r}")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth!r}")
    eps = _check_positive("eps", eps)
    kappa = _check_positive("kappa", kappa)
    config = OTAttentionConfig(d=d, n_layers=depth, hidden=2, init_std=0.0)
    model = OTAttention(config, dtype=dtype)
    weights = dual_ascent_layer_weights(d, eps, kappa, dtype=dtype)
    with torch.no_grad():
        for name, value in weights.items():
            getattr(model, name).copy_(value.expand_as(getattr(model, name)))
    return model


def ot_prompt(X: Tensor, Y: Tensor, g0: Tensor | float = 0.0) -> Tensor:
    """The prompt (B, 2n+1, d+9) of `X`, `Y` (B, n, d) with initial duals `g0` (B, n) or a scalar:
    x-tokens first, then y-tokens, then the sink (table in the module docstring)."""
    if X.ndim != 3 or X.shape != Y.shape:
        raise ValueError(
            f"X and Y must have the same shape (B, n, d), got {tuple(X.shape)}, {tuple(Y.shape)}"
        )
    B, n, d = X.shape
    lay = OTLayout(d)
    g0 = torch.as_tensor(g0, dtype=X.dtype, device=X.device).expand(B, n)  # (B, n)
    Z = X.new_zeros(B, 2 * n + 1, lay.width)
    Z[:, :n, lay.pos] = X
    Z[:, :n, lay.sq] = X.square().sum(-1)
    Z[:, :n, lay.flag_x] = 1.0
    Z[:, n : 2 * n, lay.pos] = Y
    Z[:, n : 2 * n, lay.sq] = Y.square().sum(-1)
    Z[:, n : 2 * n, lay.flag_y] = 1.0
    Z[:, n : 2 * n, lay.g] = g0
    Z[:, 2 * n, lay.flag_sink] = 1.0
    return Z


def barycentric_map(P: Tensor, Y: Tensor) -> Tensor:
    """`T(x_i) = n Σ_j P_ij y_j` = `Σ_j π_ij y_j`: P (B, n, n), Y (B, n, d) → (B, n, d)."""
    return P.shape[-2] * (P @ Y)


def plan_argmax(P: Tensor) -> Tensor:
    """Each row's argmax `argmax_j P_ij`: (B, n, n) → (B, n) int64 (for sorting: the grid index
    assigned to x_i)."""
    return P.argmax(-1)
