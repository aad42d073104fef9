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

import torch
from torch import Tensor


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
