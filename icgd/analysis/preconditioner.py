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
