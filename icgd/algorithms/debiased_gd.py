"""Debiased (mean-centred) one-step GD: the first-order predictor of He et al.'s softmax heads.

He, Pan, Chen, Yang 2025 (SPEC §2.1, §6): for ±-paired softmax heads with KQ x-block `ω_h I`,
ω → 0, and OV label entries `μ_h` summing to zero, a head predicts `μ_h ȳ + μ_h ω_h g + O(ω²)`
(the softmax over the n context keys centres the covariates), so the heads together predict

    ŷ(m) = m · x_qᵀ v,     v = (1/n) Σ_ℓ y_ℓ (x_ℓ − x̄),     x̄ = (1/n) Σ_ℓ x_ℓ,     m = Σ_h μ_h ω_h.

This is icgd's definition of the predictor, the same as `icgd.theory.debiased_gd` (its exact risk
`R(m)` and optimal step `m* = n b / (n b + d (b + σ²))`) and as
`icgd.experiments.softmax_heads.measurements.one_step_predictors(...)["debiased"]` (step m = 1);
the query is not centred and there is no intercept. Compared with plain one-step GD,
`(1/n) Xᵀ y`, the term `ȳ x̄` is removed.

As an iteration: `v` is minus the gradient at 0 of the centred risk

    R_c(w) = (1/2n) Σ_ℓ ((x_ℓ − x̄)ᵀ w − y_ℓ)²,   ∇R_c(w) = Ŝ_c w − v,   Ŝ_c = (1/n) X_cᵀ X_c,

with `X_c` the rows `(x_ℓ − x̄)ᵀ` (since `Σ_ℓ (x_ℓ − x̄) = 0`, centring y changes nothing). So
`w_1 = m v` is one GD step from 0 on `R_c`; more steps (`n_steps > 1`, **ours**, not in the paper)
continue GD on `R_c`: `w_{l+1} = w_l − m_l ∇R_c(w_l)`, prediction `x_qᵀ w_l`.

Every function works on a batch of B prompts: X (B, n, d), y (B, n).
"""

from __future__ import annotations

from torch import Tensor

from icgd.algorithms.gd import GDResult, gradient_descent
from icgd.algorithms.plugins import ALGORITHMS


def debiased_gd(
    X: Tensor, y: Tensor, step_sizes: float | Tensor, n_steps: int | None = None
) -> GDResult:
    """Debiased GD from `w_0 = 0`: `w_{l+1} = w_l − m_l ∇R_c(w_l)` on the centred risk (module
    docstring); one step (the default) gives `w_1 = m v`, `v = (1/n) Σ_ℓ y_ℓ (x_ℓ − x̄)`, and the
    prediction `x_qᵀ w_1 = m x_qᵀ v` of He et al. / `icgd.theory.debiased_gd`.

    X: (B, n, d), y: (B, n). step_sizes: the step m (then `n_steps` defaults to 1) or an (L,)
    tensor of steps m_l. Returns a `GDResult` with weights (L+1, B, d); `predict(x_q)` uses the
    raw (uncentred) query.
    """
    if X.ndim != 3 or y.shape != X.shape[:2]:
        raise ValueError(
            f"expected X (B, n, d) and y (B, n), got {tuple(X.shape)} and {tuple(y.shape)}"
        )
    if n_steps is None and not (isinstance(step_sizes, Tensor) and step_sizes.ndim == 1):
        n_steps = 1
    X_c = X - X.mean(dim=1, keepdim=True)  # (B, n, d): rows (x_ℓ − x̄)ᵀ
    return gradient_descent(X_c, y, step_sizes, n_steps)


ALGORITHMS.register("debiased-gd", debiased_gd)
