"""Distances between in-context learning algorithms (Akyürek et al. 2023, SPEC §1.4).

Akyürek, Schuurmans, Andreas, Ma, Zhou (2023), "What learning algorithm is in-context learning?
Investigations with linear models", compare a trained model with reference algorithms A (one-step
GD, ridge, least squares, kNN) on the same prompts D = (x_1, y_1, …, x_k, y_k) by two metrics:

- **squared prediction difference**

      SPD(A₁, A₂) = E_{D, x'} (A₁(D)(x') − A₂(D)(x'))²,

  the mean over prompts (each with its query x') of the squared difference of the two predictions;
- **implicit linear weight difference**: each algorithm's predictor on a prompt is summarised by
  the linear function that best fits it on m unlabeled probe inputs x'_1 … x'_m,

      ŵ_A(D) = argmin_w Σ_i (A(D)(x'_i) − wᵀ x'_i)²,
      ILWD(A₁, A₂) = E_D ‖ŵ_{A₁}(D) − ŵ_{A₂}(D)‖².

  For an algorithm that is linear in the query, `A(D)(x') = w_A(D)ᵀ x'`, the fit returns `w_A(D)`
  exactly (given m ≥ d probes in general position); `linear_weights` reads that `w_A(D)` directly
  by evaluating the algorithm at the d unit vectors.

Shapes: the prompt axis comes first, `dim = 0`, and any further axes (e.g. the context length k
of a prefix sweep) are kept: predictions (B,) → a number, (B, K) → (K,); weights (B, d) → a number,
(B, K, d) → (K,). Every metric is computed in float64.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def _broadcast_pair(a: Tensor, b: Tensor, what: str) -> tuple[Tensor, Tensor]:
    try:
        shape = torch.broadcast_shapes(a.shape, b.shape)
    except RuntimeError:
        raise ValueError(
            f"{what} must have broadcastable shapes, got {tuple(a.shape)} and {tuple(b.shape)}"
        ) from None
    if len(shape) == 0 or 0 in shape:
        raise ValueError(f"{what} must be non-empty and at least 1-d, got shape {tuple(shape)}")
    return a.double().expand(shape), b.double().to(a.device).expand(shape)


def _reduce(values: Tensor, dim: int) -> float | Tensor:
    """Mean over the prompt axis `dim`: a Python float when nothing else is left."""
    out = values.mean(dim=dim)
    return out.item() if out.ndim == 0 else out


def spd(pred_a: Tensor, pred_b: Tensor, dim: int = 0) -> float | Tensor:
    """Squared prediction difference `SPD = (1/B) Σ_b (ŷ_{a,b} − ŷ_{b,b})²` (Akyürek et al. 2023).

    pred_a, pred_b: predictions of two algorithms on the same B prompts, prompt axis `dim`; their
    shapes must broadcast, e.g. (B,) and (B,) → float; (B, K) and (B, K) (K context lengths) →
    (K,) float64 tensor; (1, B, K) and (G, B, K) with dim=1 (a grid of G algorithms) → (G, K).
    Symmetric in its arguments and 0 for identical predictions.
    """
    a, b = _broadcast_pair(pred_a, pred_b, "predictions")
    if not -a.ndim <= dim < a.ndim:
        raise ValueError(f"dim={dim} out of range for predictions of shape {tuple(a.shape)}")
    return _reduce((a - b).square(), dim)


def ilwd(weights_a: Tensor, weights_b: Tensor, dim: int = 0) -> float | Tensor:
    """Implicit linear weight difference `(1/B) Σ_b ‖ŵ_{a,b} − ŵ_{b,b}‖²` (Akyürek et al. 2023).

    weights_a, weights_b: implicit weights (from `implicit_weights` or `linear_weights`) of two
    algorithms on the same B prompts, the last axis of size d, prompt axis `dim`; shapes must
    broadcast, e.g. (B, d) → float; (B, K, d) → (K,) float64 tensor.
    """
    a, b = _broadcast_pair(weights_a, weights_b, "weights")
    if a.ndim < 2:
        raise ValueError(f"weights must be at least (B, d), got shape {tuple(a.shape)}")
    squared = (a - b).square().sum(-1)  # ‖ŵ_a − ŵ_b‖², the d axis summed
    if not -squared.ndim <= dim < squared.ndim:
        raise ValueError(f"dim={dim} out of range for weights of shape {tuple(a.shape)}")
    return _reduce(squared, dim)


def implicit_weights(probes: Tensor, preds: Tensor) -> Tensor:
    """The least-squares linear fit to an algorithm's predictions on probe inputs:

        ŵ = argmin_w Σ_{i=1}^m (p_i − wᵀ x'_i)² = X'⁺ p,

    one fit per prompt, all in one batched pseudo-inverse (minimum-norm ŵ if the probes are rank
    deficient; with m ≥ d probes in general position the fit is unique).

    probes: (..., m, d) the probe inputs x'_i of each prompt; preds: (..., m) the algorithm's
    predictions `A(D)(x'_i)` on them → ŵ (..., d), in probes' dtype (computed in float64).
    """
    if probes.ndim < 2 or preds.shape != probes.shape[:-1]:
        raise ValueError(
            f"expected probes (..., m, d) and preds (..., m), got {tuple(probes.shape)} and "
            f"{tuple(preds.shape)}"
        )
    if probes.shape[-2] == 0 or probes.shape[-1] == 0:
        raise ValueError(f"probes must hold at least one input of d ≥ 1, got {tuple(probes.shape)}")
    P = probes.double()
    w = torch.linalg.pinv(P) @ preds.double().unsqueeze(-1)  # (..., d, m) @ (..., m, 1)
    return w.squeeze(-1).to(probes.dtype)


PredictionFn = Callable[[Tensor, Tensor, Tensor], Tensor]
"""`fn(X (B, n, d), y (B, n), x_q (B, d)) -> predictions (B, ...)`, prompt axis first."""


def linear_weights(fn: PredictionFn, X: Tensor, y: Tensor) -> Tensor:
    """The weights `w_A(D)` of an algorithm that is linear in the query, `A(D)(x') = w_A(D)ᵀ x'`.

    `w_A(D)_j = A(D)(e_j)`: each prompt is repeated d times with the unit vectors e_1 … e_d as
    queries, in one call of `fn` on a (B·d)-prompt batch. For an algorithm that is not linear
    in the query (kNN, softmax attention) this is not its implicit weight; fit those with
    `implicit_weights` on probe inputs instead.

    fn: `fn(X, y, x_q)` → predictions (B', *rest) with the prompt axis first (e.g. `prefix_ols`:
    (B', K)); X: (B, n, d); y: (B, n) → (B, *rest, d).
    """
    if X.ndim != 3 or y.shape != X.shape[:2]:
        raise ValueError(
            f"expected X (B, n, d) and y (B, n), got {tuple(X.shape)} and {tuple(y.shape)}"
        )
    B, n, d = X.shape
    X_rep = X.unsqueeze(1).expand(B, d, n, d).reshape(B * d, n, d)  # prompt b at rows b·d … b·d+d−1
    y_rep = y.unsqueeze(1).expand(B, d, n).reshape(B * d, n)
    eye = torch.eye(d, dtype=X.dtype, device=X.device)
    queries = eye.expand(B, d, d).reshape(B * d, d)  # row b·d + j = e_j
    pred = fn(X_rep, y_rep, queries)  # (B·d, *rest)
    if pred.shape[0] != B * d:
        raise ValueError(f"fn must return the prompt axis first, got shape {tuple(pred.shape)}")
    rest = pred.shape[1:]
    return pred.reshape(B, d, *rest).movedim(1, -1)  # (B, *rest, d)
