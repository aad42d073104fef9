"""Reading a preconditioner out of trained linear self-attention, and comparing it with I.

Ahn, Cheng, Daneshmand, Sra (2023), "Transformers learn to implement preconditioned gradient descent
for in-context learning": `Dist(M, I) = min_α ‖M − αI‖_F / ‖M‖_F`, attained at `α = tr(M)/d`.
"""

from __future__ import annotations

import torch
from torch import Tensor


def identity_scale(M: Tensor) -> Tensor:
    """`α = tr(M)/d`, the multiple of I closest to M in Frobenius norm. M: (..., d, d) → (...)."""
    return torch.diagonal(M, dim1=-2, dim2=-1).mean(-1)


def distance_to_identity(M: Tensor) -> Tensor:
    """`Dist(M, I) = ‖M − (tr M / d) I‖_F / ‖M‖_F` ∈ [0, 1]. M: (..., d, d) → (...).

    Scale-free: 0 iff M is a multiple of I. (Minimising ‖M − αI‖² over α gives α = tr M / d.)
    """
    d = M.shape[-1]
    eye = torch.eye(d, dtype=M.dtype, device=M.device)
    residual = M - identity_scale(M)[..., None, None] * eye
    return torch.linalg.matrix_norm(residual) / torch.linalg.matrix_norm(M)


def matrix_sqrt(S: Tensor, power: float = 0.5) -> Tensor:
    """`S^power` of a symmetric positive-definite S (d, d) through its eigendecomposition."""
    lam, U = torch.linalg.eigh(S)
    return (U * lam.clamp_min(torch.finfo(S.dtype).tiny) ** power) @ U.T


def whiten(A: Tensor, sigma: Tensor) -> Tensor:
    """`Σ^{1/2} A Σ^{1/2}`: A in whitened coordinates. If A = a Σ⁻¹ this is a·I. A: (..., d, d)."""
    root = matrix_sqrt(sigma.to(A.dtype))
    return root @ A @ root


def effective_preconditioners(P: Tensor, Q: Tensor) -> Tensor:
    """The preconditioner Γ_l each layer applies to the empirical gradient.

    `Γ = −Σ_h P_h[d,d] Q_h[:d,:d]ᵀ`.

    P, Q: (L, H, d+1, d+1) from `model.layer_matrices()` → Γ: (L, d, d).

    Why: when P's label row is `(0, …, 0, p)` and Q's label row and column vanish (the sparse
    parametrisations; the fixed point of the full one), the query's label entry changes by
    `(p/n) Σ_i y_i x_iᵀ Q_xx x_q`; with ŷ = −Z[d+1, n+1] that is one step `x_qᵀ Γ (1/n) Xᵀy`
    with Γ = −p Q_xxᵀ. For the sparse set (p = 1, Q_xx = −A) this is Γ = Aᵀ.
    """
    d = P.shape[-1] - 1
    p = P[..., d, d]  # (L, H)
    Q_xx = Q[..., :d, :d]  # (L, H, d, d)
    return -(p[..., None, None] * Q_xx.transpose(-1, -2)).sum(dim=1)


def predictor_leak_ratio(P: Tensor, Q: Tensor) -> Tensor:
    """How much of one layer's prediction does *not* go through the GD path, scale-free.

    P, Q: (..., H, d+1, d+1), the heads of one layer; `model.layer_matrices()` (L, H, d+1, d+1)
    gives one ratio per layer, (L,).

    With the query column `[x_q; 0]` and `C = Z M Zᵀ = Σ_i z_i z_iᵀ`, a full-matrix layer predicts

        ŷ = −(1/n) Σ_h p_hᵀ C Q_h[:, :d] x_q = −(1/n) Σ_{a,b,c} C_ab T_abc x_q,c,
        T = Σ_h p_h ⊗ Q_h[:, :d] ∈ R^{(d+1)×(d+1)×d},   p_h = P_h[d, :] (label row of P_h).

    Only the block `T[d, :d, :] = Σ_h P_h[d,d] Q_h[:d,:d] = −Γᵀ` multiplies `C[d, :d] = yᵀX`: that
    block is one step of preconditioned GD, `x_qᵀ Γ (1/n) Xᵀy`. The ratio is

        leak = ‖T with its GD block zeroed‖_F / ‖GD block‖_F,

    i.e. for one head `leak² = (1 + ‖P[d,:d]‖²/P[d,d]²)(1 + ‖Q[d,:d]‖²/‖Q[:d,:d]‖_F²) − 1`: it is 0
    iff the label row of P has no x-part and the label row of Q no x-part (given a non-zero GD
    block). It depends on P and Q only through the products `p_h ⊗ Q_h`, so it is invariant under
    the rescaling symmetry `P_h → c P_h, Q_h → Q_h / c`. Entries that never reach ŷ (the x-rows
    of P, the y-column of Q: the query's label entry is 0) do not enter; in one layer they get no
    gradient at all.
    """
    d = P.shape[-1] - 1
    p = P[..., d, :]  # (..., H, d+1) label rows of P
    Qx = Q[..., :, :d]  # (..., H, d+1, d) the columns of Q that meet x_q
    T = torch.einsum("...ha,...hbc->...abc", p, Qx)  # (..., d+1, d+1, d)
    gd = T[..., d, :d, :]  # (..., d, d) = −Γᵀ
    rest = T.clone()
    rest[..., d, :d, :] = 0.0
    return torch.linalg.vector_norm(rest, dim=(-3, -2, -1)) / torch.linalg.matrix_norm(gd)


def one_step_predictor_gap(
    y_model: Tensor, gamma: Tensor, X: Tensor, y: Tensor, x_q: Tensor
) -> Tensor:
    """Relative mean squared gap between a model's predictions and one preconditioned GD step.

    `gap = mean_b (ŷ_b − x_q,bᵀ Γ (1/n) X_bᵀ y_b)² / mean_b ŷ_b²`, the functional counterpart of
    `predictor_leak_ratio` (0 iff, on these prompts, the model *is* the step with Γ).
    y_model: (B,), gamma: (d, d), X: (B, n, d), y: (B, n), x_q: (B, d) → scalar.
    """
    n = X.shape[1]
    g = torch.bmm(y.unsqueeze(1), X).squeeze(1) / n  # (B, d) = (1/n) Xᵀ y
    y_gd = torch.einsum("bc,ca,ba->b", x_q, gamma.to(X.dtype), g)  # (B,) x_qᵀ Γ g
    return (y_model - y_gd).square().mean() / y_model.square().mean()
