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

**Diverged predictions** (ours). An algorithm with a shared parameter can blow up on a few
prompts, e.g. iterative Newton where `αλ_max(Ŝ)² > 2` grows like `|1 − αs²|^{2^k}`; one such
prompt made a held-out R² of −5e26. A prediction `a_b` has *diverged* when it is not finite or
`|a_b| > DIVERGED_SCALE · rms(m)` (`diverged_rows`; `rms(m) = √((1/B) Σ_b m_b²)` over the
reference's finite entries: the model's predictions, or y_q for the probes). DIVERGED_SCALE =
10³: a thousand times the typical prediction is a blow-up, not a fit; and the prompts kept,
`|a_b| ≤ 10³ rms(m)` on at most 1% of them, bound R² below by about `1 − 10⁴ rms(m)²/var(m)`
instead of −5e26. The rule:

- if an algorithm diverged on at most `MAX_DIVERGED` (1%) of the B prompts, SPD (± SE), R² and
  the prediction cosine are computed on the other prompts, and `dropped_rows` counts the ones
  left out;
- if on more, it is not scored: SPD = +inf (so it ranks last), SE = NaN, R² = −inf, cosine =
  NaN;
- with nothing diverged the scores are the plain formulas above, bit for bit.

Prompts where the model's own prediction is not finite are left out the same way. SimE takes a
per-column mask of the prompts to keep (`sime_matrix(..., keep=)`, used by `probe_layers`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _pair(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    if a.shape != b.shape or a.ndim != 1 or a.shape[0] == 0:
        raise ValueError(f"expected two (B,) tensors, got {tuple(a.shape)} and {tuple(b.shape)}")
    return a.double(), b.double()


DIVERGED_SCALE = 1e3  # |a_b| beyond 10³ rms(m): a blow-up, not a prediction (ours)
MAX_DIVERGED = 0.01  # the fraction of prompts an algorithm may diverge on and still be scored


def diverged_rows(pred: Tensor, reference: Tensor) -> Tensor:
    """Where a predictor has diverged (module docstring): pred (..., B), reference (B,) → bool
    (..., B), True where `pred` is not finite or `|pred| > DIVERGED_SCALE · rms(reference)`."""
    p, ref = pred.double(), reference.double()
    finite = torch.isfinite(ref)
    rms = ref[finite].square().mean().sqrt() if finite.any() else ref.new_tensor(0.0)
    limit = DIVERGED_SCALE * rms if rms > 0 else math.inf  # a zero reference: non-finite only
    return ~torch.isfinite(p) | (p.abs() > limit)


def too_many_diverged(diverged: Tensor) -> Tensor:
    """More than `MAX_DIVERGED` of the prompts (last axis) diverged: (..., B) bool → (...)."""
    return diverged.sum(-1) > MAX_DIVERGED * diverged.shape[-1]


def _left_out(m: Tensor, a: Tensor) -> Tensor:
    """(B,) bool: the prompts the scores leave out, the algorithm's diverged ones and any where
    the model's own prediction is not finite."""
    return diverged_rows(a, m) | ~torch.isfinite(m)


def dropped_rows(model: Tensor, algorithm: Tensor) -> int:
    """How many of the B prompts the held-out scores leave out (module docstring)."""
    m, a = _pair(model, algorithm)
    return int(_left_out(m, a).sum())


def _scored(model: Tensor, algorithm: Tensor) -> tuple[Tensor, Tensor] | None:
    """The two (B,) prediction vectors on the prompts that are scored: both unchanged when
    nothing diverged (bit-identical scores), None when too many diverged (not scored)."""
    m, a = _pair(model, algorithm)
    out = _left_out(m, a)
    if not bool(out.any()):
        return m, a
    if bool(too_many_diverged(out)):
        return None
    return m[~out], a[~out]


def spd_with_se(model: Tensor, algorithm: Tensor) -> tuple[float, float]:
    """`(SPD, its standard error)` over B prompts: (B,), (B,) → two floats; (+inf, NaN) for an
    algorithm that diverged on more than `MAX_DIVERGED` of them (module docstring)."""
    pair = _scored(model, algorithm)
    if pair is None:
        return math.inf, math.nan
    m, a = pair
    sq = (m - a).square()
    se = sq.std().item() / math.sqrt(sq.shape[0]) if sq.shape[0] > 1 else math.nan
    return sq.mean().item(), se


def r_squared(model: Tensor, algorithm: Tensor) -> float:
    """`1 − Σ (m − a)² / Σ (m − m̄)²`: (B,), (B,) → float (NaN if the model is constant; −inf
    for an algorithm that diverged on more than `MAX_DIVERGED` of the prompts)."""
    pair = _scored(model, algorithm)
    if pair is None:
        return -math.inf
    m, a = pair
    total = (m - m.mean()).square().sum()
    if total <= 0:
        return math.nan
    return 1.0 - ((m - a).square().sum() / total).item()


def _cosine(a: Tensor, b: Tensor, dim: int = -1) -> Tensor:
    norms = torch.linalg.vector_norm(a, dim=dim) * torch.linalg.vector_norm(b, dim=dim)
    dot = (a * b).sum(dim)
    return torch.where(norms > 0, dot / torch.where(norms > 0, norms, 1.0), math.nan)


def prediction_cosine(model: Tensor, algorithm: Tensor) -> float:
    """`⟨m, a⟩ / (‖m‖ ‖a‖)` over prompts: (B,), (B,) → float (NaN for an algorithm that diverged
    on more than `MAX_DIVERGED` of them)."""
    pair = _scored(model, algorithm)
    return math.nan if pair is None else _cosine(*pair).item()


def weight_cosine(model: Tensor, algorithm: Tensor) -> float:
    """Mean over prompts of the cosine between two weight vectors: (B, d), (B, d) → float
    (prompts where either weight is zero are left out)."""
    if model.shape != algorithm.shape or model.ndim != 2:
        raise ValueError(f"expected two (B, d) tensors, got {model.shape} and {algorithm.shape}")
    cos = _cosine(model.double(), algorithm.double())
    return cos[torch.isfinite(cos)].mean().item()


def sime_matrix(rows: Tensor, cols: Tensor, target: Tensor, keep: Tensor | None = None) -> Tensor:
    """SimE of every pair of predictors (module docstring): rows (L, B), cols (K, B), target (B,)
    → (L, K), entry [l, k] the cosine between `rows[l] − y_q` and `cols[k] − y_q`.

    keep (K, B) bool: the prompts each column is compared on (e.g. not diverged); entry [l, k]
    is then the cosine over `{b : keep[k, b]}` only, `Σ_b' e_lb e_kb / (‖e_l‖' ‖e_k‖')`, and
    whatever `cols` holds elsewhere (±inf, NaN) is ignored. Columns kept whole give the plain
    formula, bit for bit.
    """
    if rows.ndim != 2 or cols.ndim != 2 or not rows.shape[1] == cols.shape[1] == target.shape[0]:
        raise ValueError(
            f"expected rows (L, B), cols (K, B), target (B,), got {tuple(rows.shape)}, "
            f"{tuple(cols.shape)}, {tuple(target.shape)}"
        )
    if keep is not None and keep.shape != cols.shape:
        raise ValueError(f"keep must be {tuple(cols.shape)} like cols, got {tuple(keep.shape)}")
    e_rows = rows.double() - target.double()  # (L, B) errors
    e_cols = cols.double() - target.double()  # (K, B)
    if keep is not None:  # masked entries become 0: they add nothing to the dots or ‖e_k‖
        e_cols = torch.where(keep, e_cols, 0.0)
    n_rows = torch.linalg.vector_norm(e_rows, dim=1, keepdim=True)  # (L, 1)
    n_cols = torch.linalg.vector_norm(e_cols, dim=1, keepdim=True)  # (K, 1)
    dots = e_rows @ e_cols.T  # (L, K)
    norms = n_rows * n_cols.T
    if keep is not None and not bool(keep.all()):
        # ‖e_l‖ over each column's kept prompts: (L, K) = sqrt(e_rows² @ keepᵀ)
        n_pair = (e_rows.square() @ keep.T.double()).sqrt()
        norms = torch.where(keep.all(1), norms, n_pair * n_cols.T)
    return torch.where(norms > 0, dots / torch.where(norms > 0, norms, 1.0), math.nan)


def sime(pred_a: Tensor, pred_b: Tensor, target: Tensor) -> float:
    """SimE of two predictors on B prompts: (B,), (B,), (B,) → float."""
    return sime_matrix(pred_a[None], pred_b[None], target)[0, 0].item()
