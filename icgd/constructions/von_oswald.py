"""Linear self-attention that runs one GD step, and GD++ (von Oswald et al. 2023).

von Oswald, Niklasson, Randazzo, Sacramento, Mordvintsev, Zhmoginov, Vladymyrov (2023),
"Transformers learn in-context by gradient descent", Prop. 1 and §4 (SPEC §1.3).

Their layer, tokens `e_j = (x_j, y_j)`, query `(x_q, −W₀ x_q)`:

    e_j ← e_j + Σ_i (proj · W_V) e_i · (W_K e_i)ᵀ (W_Q e_j),
    W_K = W_Q = [[I, 0], [0, 0]],   W_V = [[0, 0], [W₀, −I]],   proj = [[0, 0], [0, (η/n) I]],

so with `W₀ = 0` the value of token i is `[0; −(η/n) y_i]` and every token moves to
`(x_j, y_j − ΔW x_j)`, `ΔW = η (1/n) Σ_i y_i x_iᵀ = −η ∇R(0)` one GD step on
`R(W) = (1/2n) Σ_i ‖W x_i − y_i‖²`. Only the products `proj · W_V` and `W_Kᵀ W_Q` enter.

In our (Ahn-form) layer `Z ← Z + (1/n) P Z M (Zᵀ Q Z)` the 1/n is built in, so

    Q = W_Kᵀ W_Q = [[I, 0], [0, 0]],      P = n · proj · W_V = [[0, 0], [0, −η]].

Check: column j of `(1/n) P Z M Zᵀ Q Z` is `(1/n) Σ_{i≤n} P z_i (x_iᵀ x_j) = [0; −ΔW x_j]`. The
context labels become the residuals `y_j − ΔW x_j`, the query's label entry `0 − ΔW x_q`, and our
read-out `ŷ = −Z[d+1, n+1] = ΔW x_q = η x_qᵀ (1/n) Xᵀ y`: one GD step from `w₀ = 0`, the same as
Ahn's sparse form `P = [[0, 0], [0, 1]]`, `Q = −[[η I, 0], [0, 0]]` (same product `P_yy Q_xx`).
Only the products matter: `(c P, Q / c)` is the same model for any `c ≠ 0` (SPEC §1.3).

GD++ (§4) puts a covariate layer first: `P₁ = [[−γ I, 0], [0, 0]]`, `Q₁ = [[I, 0], [0, 0]]` moves
column j by `(1/n) Σ_i [−γ x_i; 0] x_iᵀ x_j = [−γ Ŝ x_j; 0]`, i.e. `x_j ← (I − γ Ŝ) x_j` with
`Ŝ = (1/n) Σ_{i≤n} x_i x_iᵀ` for every column (query included), labels untouched. The paper's
`X Xᵀ = Σ_i x_i x_iᵀ` has no 1/n: its γ is our `γ / n` (see `icgd.algorithms.gd_plus_plus`).

Several GD++ steps (`lsa_from_gd_plus_plus_steps`): layer l has both parts at once,
`P_l = [[−γ_l I, 0], [0, −η_l]]`, `Q_l = [[I, 0], [0, 0]]`; column j moves by
`(1/n) Σ_i [−γ_l x_i; −η_l r_i] x_iᵀ x_j`, the covariate and residual updates of
`icgd.algorithms.gd_plus_plus_steps`, both from the layer's input.
"""

from __future__ import annotations

import torch
from torch import Tensor

from icgd.models.lsa import LinearSelfAttention, LSAConfig


def _gd_step_matrices(d: int, eta: float, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """`P = [[0, 0], [0, −η]]`, `Q = [[I, 0], [0, 0]]`, each (d+1, d+1): one GD step."""
    P = torch.zeros(d + 1, d + 1, dtype=dtype)
    P[d, d] = -float(eta)
    Q = torch.zeros(d + 1, d + 1, dtype=dtype)
    Q[:d, :d] = torch.eye(d, dtype=dtype)
    return P, Q


def _covariate_matrices(d: int, gamma: float, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """`P = [[−γ I, 0], [0, 0]]`, `Q = [[I, 0], [0, 0]]`: `x_j ← (I − γ Ŝ) x_j`, labels fixed."""
    P = torch.zeros(d + 1, d + 1, dtype=dtype)
    P[:d, :d] = -float(gamma) * torch.eye(d, dtype=dtype)
    Q = torch.zeros(d + 1, d + 1, dtype=dtype)
    Q[:d, :d] = torch.eye(d, dtype=dtype)
    return P, Q


def _gd_plus_plus_layer(d: int, eta: float, gamma: float, dtype: torch.dtype):
    """`P = [[−γ I, 0], [0, −η]]`, `Q = [[I, 0], [0, 0]]`: one GD++ step (covariates and labels)."""
    P, Q = _gd_step_matrices(d, eta, dtype)
    P[:d, :d] = -float(gamma) * torch.eye(d, dtype=dtype)
    return P, Q


def _full_model(layers: list[tuple[Tensor, Tensor]], dtype: torch.dtype) -> LinearSelfAttention:
    """A new stacked one-head `full` LSA with layer l's `(P_l, Q_l)` taken from `layers`."""
    d = layers[0][0].shape[0] - 1
    config = LSAConfig(
        d=d,
        n_layers=len(layers),
        looped=False,
        parametrisation="full",
        n_heads=1,
        init_std=0.0,
    )
    model = LinearSelfAttention(config, dtype=dtype)
    P = torch.stack([P_l for P_l, _ in layers]).unsqueeze(1)  # (L, 1, d+1, d+1)
    Q = torch.stack([Q_l for _, Q_l in layers]).unsqueeze(1)  # (L, 1, d+1, d+1)
    with torch.no_grad():
        model.P.copy_(P)
        model.Q.copy_(Q)
    return model


def _check_d(d: int) -> None:
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise ValueError(f"d must be a positive integer, got {d!r}")


def lsa_from_gd_step(
    d: int, eta: float, *, dtype: torch.dtype = torch.float64
) -> LinearSelfAttention:
    """A new one-layer, one-head `full` LSA that takes one GD step from `w₀ = 0` with step η.

    `P = [[0, 0], [0, −η]]` (= n · proj · W_V), `Q = [[I, 0], [0, 0]]` (= W_Kᵀ W_Q) of von Oswald et
    al. 2023, Prop. 1. Every token `(x, y)` goes to `(x, y − ΔW x)`, `ΔW = η (1/n) Σ_i y_i x_iᵀ`;
    the prediction is `ŷ = −Z[d+1, n+1] = η x_qᵀ (1/n) Xᵀ y`, equal to
    `gradient_descent(X, y, eta, 1).predict(x_q)[-1]`. Input prompts: (B, d+1, n+1).
    """
    _check_d(d)
    return _full_model([_gd_step_matrices(d, eta, dtype)], dtype)


def lsa_from_gd_plus_plus(
    d: int, eta: float, gamma: float, *, dtype: torch.dtype = torch.float64
) -> LinearSelfAttention:
    """A new two-layer, one-head `full` LSA computing GD++ (von Oswald et al. 2023, §4).

    Layer 1: `P₁ = [[−γ I, 0], [0, 0]]`, `Q₁ = [[I, 0], [0, 0]]`: `x_j ← (I − γ Ŝ) x_j` for every
    column (query too), `Ŝ = (1/n) Σ_{i≤n} x_i x_iᵀ`, labels unchanged. Layer 2: the GD step of
    `lsa_from_gd_step` on the transformed covariates. The prediction equals
    `icgd.algorithms.gd_plus_plus(X, y, x_q, eta, gamma)`; the paper's γ (no 1/n) is `gamma / n`.
    """
    _check_d(d)
    return _full_model(
        [_covariate_matrices(d, gamma, dtype), _gd_step_matrices(d, eta, dtype)], dtype
    )


def lsa_from_gd_plus_plus_steps(
    d: int, etas, gammas, *, dtype: torch.dtype = torch.float64
) -> LinearSelfAttention:
    """A new L-layer, one-head `full` LSA running L GD++ steps (von Oswald et al. 2023, §4).

    Layer l: `P_l = [[−γ_l I, 0], [0, −η_l]]`, `Q_l = [[I, 0], [0, 0]]`, for `etas`, `gammas` of
    length L ≥ 1. Its prediction equals `icgd.algorithms.gd_plus_plus_steps(X, y, x_q, etas,
    gammas)[-1]`; with every γ_l = 0 it is L plain GD steps with steps η_l.
    """
    _check_d(d)
    etas = [float(e) for e in torch.as_tensor(etas).flatten()]
    gammas = [float(g) for g in torch.as_tensor(gammas).flatten()]
    if len(etas) != len(gammas) or not etas:
        raise ValueError(
            f"etas and gammas must have the same length >= 1, got {len(etas)} and {len(gammas)}"
        )
    return _full_model(
        [_gd_plus_plus_layer(d, e, g, dtype) for e, g in zip(etas, gammas, strict=True)], dtype
    )
