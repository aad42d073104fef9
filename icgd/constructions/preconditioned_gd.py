"""Linear self-attention that runs preconditioned gradient descent (Ahn et al. 2023, Lemma 1).

With the sparse parametrisation `P = [[0, 0], [0, 1]]`, `Q = −[[A, 0], [0, 0]]` the label row of
layer l holds the residuals `y_i − x_iᵀ w_l` and the query entry `−x_qᵀ w_l`, where

    w_0 = 0,   w_{l+1} = w_l − A_lᵀ ∇R(w_l),   ∇R(w) = Ŝ w − (1/n) Xᵀ y,   Ŝ = (1/n) XᵀX.

Proof sketch: with residuals `r_i` in the label row, `z_iᵀ Q z_j = −x_iᵀ A x_j` and
`P z_i = [0; r_i]`, so the label of column j changes by `−(1/n) Σ_i r_i x_iᵀ A x_j = −x_jᵀ Aᵀ g`
with `g = (1/n) Xᵀ r = −∇R(w)`; hence `y_j − x_jᵀ w ↦ y_j − x_jᵀ (w − Aᵀ ∇R(w))`. So the
preconditioner `Γ_l` is realised by `A_l = Γ_lᵀ` and the prediction is
`ŷ = −[Z_L]_{d+1,n+1} = x_qᵀ w_L`. Any `Γ_l` works, symmetric or not.

References: Ahn, Cheng, Daneshmand, Sra 2023, "Transformers learn to implement preconditioned
gradient descent for in-context learning"; Gatmiry, Saunshi, Reddi, Jegelka, Kumar 2024, "Can looped
transformers learn to implement multi-step gradient descent for in-context learning?" (looped form).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from icgd.models.lsa import LinearSelfAttention, LSAConfig


def lsa_from_preconditioned_gd(
    preconditioners: Tensor,
    *,
    looped: bool = False,
    n_loops: int | None = None,
    parametrisation: Literal["sparse", "full"] = "sparse",
    dtype: torch.dtype | None = None,
) -> LinearSelfAttention:
    """A new one-head LSA whose forward pass is preconditioned GD from `w_0 = 0`.

    preconditioners: `(L, d, d)` with `Γ_l` for layer l (stacked), or `(d, d)` (looped; also
    accepted as `(1, d, d)`) applied `n_loops` times. `n_loops` is required for a looped model and,
    for a stacked one, must be None or L. `parametrisation="sparse"` sets `A_l = Γ_lᵀ`; `"full"`
    embeds the same `P = [[0, 0], [0, 1]]`, `Q = −[[Γ_lᵀ, 0], [0, 0]]` as free matrices.
    `dtype` defaults to the preconditioners' dtype; the model lives on their device.
    """
    if parametrisation not in ("sparse", "full"):
        raise ValueError(f"parametrisation must be 'sparse' or 'full', got {parametrisation!r}")
    G = torch.as_tensor(preconditioners)
    dtype = dtype or (G.dtype if G.is_floating_point() else torch.get_default_dtype())
    if looped:
        if G.ndim == 3 and G.shape[0] == 1:
            G = G[0]
        if G.ndim != 2 or G.shape[0] != G.shape[1]:
            raise ValueError(
                f"a looped model needs one (d, d) preconditioner, got {tuple(G.shape)}"
            )
        if n_loops is None or n_loops < 1:
            raise ValueError(f"a looped model needs n_loops >= 1, got {n_loops!r}")
        G = G.unsqueeze(0)  # (1, d, d)
        n_layers = n_loops
    else:
        if G.ndim != 3 or G.shape[1] != G.shape[2] or G.shape[0] < 1:
            raise ValueError(
                f"a stacked model needs (L, d, d) preconditioners, got {tuple(G.shape)}"
            )
        if n_loops is not None and n_loops != G.shape[0]:
            raise ValueError(f"n_loops={n_loops} does not match the {G.shape[0]} preconditioners")
        n_layers = G.shape[0]
    d = G.shape[-1]
    config = LSAConfig(
        d=d,
        n_layers=n_layers,
        looped=looped,
        parametrisation=parametrisation,
        n_heads=1,
        init_std=0.0,
    )
    model = LinearSelfAttention(config, dtype=dtype, device=G.device)
    A = G.transpose(-1, -2).to(dtype).unsqueeze(1)  # (n_unique, 1, d, d): A_l = Γ_lᵀ
    with torch.no_grad():
        if parametrisation == "sparse":
            model.A.copy_(A)
        else:
            model.P.zero_()
            model.P[..., d, d] = 1.0
            model.Q.zero_()
            model.Q[..., :d, :d] = -A
    return model
