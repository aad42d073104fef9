"""Scores of a fitted algorithm against a model on held-out prompts, and SimE.

With the model's predictions `m_b` and an algorithm's `a_b` on the same B held-out prompts
(`ŷ` at each prompt's query), and the targets `y_{q,b}`:

- SPD (Akyürek et al. 2023): `(1/B) Σ_b (m_b − a_b)²`, with its standard error
  `sd_b((m_b − a_b)²)/√B` (`spd_with_se`; the SPD itself is `icgd.analysis.spd`);
- R² of the model's predictions explained by the algorithm's:
  `R² = 1 − Σ_b (m_b − a_b)² / Σ_b (m_b − m̄)²` (1 for identical predictions; 0 for a predictor
  no better than the model's mean prediction; negative for worse);
- prediction cosine: `⟨m, a⟩ / (‖m‖ ‖a‖)`, the cosine between the two prediction vectors over
  prompts (scale-free, so a step size off by a factor is still 1 for one-step GD);
- weight cosine: `(1/B) Σ_b ⟨ŵ_b^m, w_b^a⟩ / (‖ŵ_b^m‖ ‖w_b^a‖)` between implicit weights (ILWD's
  weights; for algorithms linear in the query this is von Oswald et al.'s model cosine, whose
  sensitivities `∂ŷ/∂x_q` are the weights);
- SimE (Fu, Chen, Jia, Sharan 2024, "Transformers learn to achieve second-order convergence rates
  for in-context linear regression"): the cosine between the two predictors' error vectors over
  prompts, errors relative to the target,
  `SimE(a, b) = ⟨a − y_q, b − y_q⟩ / (‖a − y_q‖ ‖b − y_q‖)` (SPEC §6). Fu et al. compute it per
  sequence over the positions of a causal model; with one query per prompt the vector runs over
  prompts, as here.

All in float64; a zero vector's cosine is NaN.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _pair(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    if a.shape != b.shape or a.ndim != 1 or a.shape[0] == 0:
        raise ValueError(f"expected two (B,) tensors, got {tuple(a.shape)} and {tuple(b.shape)}")
    return a.double(), b.double()


def spd_with_se(model: Tensor, algorithm: Tensor) -> tuple[float, float]:
    """`(SPD, its standard error)` over B prompts: (B,), (B,) → two floats."""
    m, a = _pair(model, algorithm)
    sq = (m - a).square()
    se = sq.std().item() / math.sqrt(sq.shape[0]) if sq.shape[0] > 1 else math.nan
    return sq.mean().item(), se


def r_squared(model: Tensor, algorithm: Tensor) -> float:
    """`1 − Σ (m − a)² / Σ (m − m̄)²`: (B,), (B,) → float (NaN if the model is constant)."""
    m, a = _pair(model, algorithm)
    total = (m - m.mean()).square().sum()
    if total <= 0:
        return math.nan
    return 1.0 - ((m - a).square().sum() / total).item()


def _cosine(a: Tensor, b: Tensor, dim: int = -1) -> Tensor:
    norms = torch.linalg.vector_norm(a, dim=dim) * torch.linalg.vector_norm(b, dim=dim)
    dot = (a * b).sum(dim)
    return torch.where(norms > 0, dot / torch.where(norms > 0, norms, 1.0), math.nan)


def prediction_cosine(model: Tensor, algorithm: Tensor) -> float:
    """`⟨m, a⟩ / (‖m‖ ‖a‖)` over prompts: (B,), (B,) → float."""
    m, a = _pair(model, algorithm)
    return _cosine(m, a).item()


def weight_cosine(model: Tensor, algorithm: Tensor) -> float:
    """Mean over prompts of the cosine between two weight vectors: (B, d), (B, d) → float
    (prompts where either weight is zero are left out)."""
    if model.shape != algorithm.shape or model.ndim != 2:
        raise ValueError(f"expected two (B, d) tensors, got {model.shape} and {algorithm.shape}")
    cos = _cosine(model.double(), algorithm.double())
    return cos[torch.isfinite(cos)].mean().item()


def sime_matrix(rows: Tensor, cols: Tensor, target: Tensor) -> Tensor:
    """SimE of every pair of predictors (module docstring): rows (L, B), cols (K, B), target (B,)
    → (L, K), entry [l, k] the cosine between `rows[l] − y_q` and `cols[k] − y_q`."""
    if rows.ndim != 2 or cols.ndim != 2 or not rows.shape[1] == cols.shape[1] == target.shape[0]:
        raise ValueError(
            f"expected rows (L, B), cols (K, B), target (B,), got {tuple(rows.shape)}, "
            f"{tuple(cols.shape)}, {tuple(target.shape)}"
        )
    e_rows = rows.double() - target.double()  # (L, B) errors
    e_cols = cols.double() - target.double()  # (K, B)
    n_rows = torch.linalg.vector_norm(e_rows, dim=1, keepdim=True)  # (L, 1)
    n_cols = torch.linalg.vector_norm(e_cols, dim=1, keepdim=True)  # (K, 1)
    dots = e_rows @ e_cols.T  # (L, K)
    norms = n_rows * n_cols.T
    return torch.where(norms > 0, dots / torch.where(norms > 0, norms, 1.0), math.nan)


def sime(pred_a: Tensor, pred_b: Tensor, target: Tensor) -> float:
    """SimE of two predictors on B prompts: (B,), (B,), (B,) → float."""
    return sime_matrix(pred_a[None], pred_b[None], target)[0, 0].item()
