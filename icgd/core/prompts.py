"""Prompt layout of the linear-attention family (SPEC §1.1).

`Z` has one token per column, `(d+1) x (n+1)`: context columns `[x_i; y_i]`, query column
`[x_q; 0]`. Stored batched as `(batch, d+1, n+1)`.
"""

from __future__ import annotations

import torch


def build_prompt(X: torch.Tensor, y: torch.Tensor, x_q: torch.Tensor) -> torch.Tensor:
    """Stack a batch of regression problems into prompts.

    X: (B, n, d), y: (B, n), x_q: (B, d) → Z: (B, d+1, n+1) with Z[:, :d, :n] = Xᵀ,
    Z[:, d, :n] = y, Z[:, :d, n] = x_q and Z[:, d, n] = 0.
    """
    B, n, d = X.shape
    Z = X.new_zeros(B, d + 1, n + 1)
    Z[:, :d, :n] = X.transpose(1, 2)  # (B, d, n)
    Z[:, d, :n] = y
    Z[:, :d, n] = x_q
    return Z


def read_prediction(Z: torch.Tensor) -> torch.Tensor:
    """The model's prediction `ŷ = −Z[d+1, n+1]` (Ahn et al.'s sign convention): (B,)."""
    return -Z[:, -1, -1]


def split_prompt(Z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse of `build_prompt`: X (B, n, d), y (B, n), x_q (B, d)."""
    d = Z.shape[1] - 1
    return Z[:, :d, :-1].transpose(1, 2), Z[:, d, :-1], Z[:, :d, -1]
