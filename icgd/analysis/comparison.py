"""Comparing a model with an algorithm on the same prompts (von Oswald et al. 2023, SPEC §1.3).

von Oswald, Niklasson, Randazzo, Sacramento, Mordvintsev, Zhmoginov, Vladymyrov (2023),
"Transformers learn in-context by gradient descent", compare a trained transformer `f` with an
algorithm `g` (e.g. GD with a line-searched step) over a batch of B prompts `(X_b, y_b, x_{q,b})`:

- prediction difference  `(1/B) Σ_b |f_b − g_b|` (and the RMS `√((1/B) Σ_b (f_b − g_b)²)`);
- sensitivities          `s_b = ∂ŷ_b/∂x_{q,b} ∈ R^d`, the local linear model each one applies to
  the query;
- model cosine           `(1/B) Σ_b ⟨s_b^f, s_b^g⟩ / (‖s_b^f‖ ‖s_b^g‖)` ∈ [−1, 1], scale-free;
- model difference       `(1/B) Σ_b ‖s_b^f − s_b^g‖`.

A "prediction function" here is any `fn(X, y, x_q) -> ŷ` on a batch, X (B, n, d), y (B, n),
x_q (B, d) → (B,), in which prompt b's output depends on prompt b only. `lsa_prediction_fn` and
`gd_prediction_fn` build one from an LSA model or from plain GD.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from icgd.algorithms.gd import gradient_descent
from icgd.core.prompts import build_prompt
from icgd.models.lsa import LinearSelfAttention

PredictionFn = Callable[[Tensor, Tensor, Tensor], Tensor]
"""`fn(X (B, n, d), y (B, n), x_q (B, d)) -> ŷ (B,)`, prompts independent of one another."""


def _check_pair(a: Tensor, b: Tensor, ndim: int, what: str) -> None:
    if a.shape != b.shape or a.ndim != ndim or a.shape[0] == 0:
        raise ValueError(
            f"{what} must be two non-empty tensors of the same {ndim}-d shape, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def prediction_difference(pred_a: Tensor, pred_b: Tensor) -> float:
    """`E|ŷ_a − ŷ_b| = (1/B) Σ_b |ŷ_{a,b} − ŷ_{b,b}|`. pred_a, pred_b: (B,) → float."""
    _check_pair(pred_a, pred_b, 1, "predictions")
    return (pred_a - pred_b).abs().mean().item()


def prediction_rmse(pred_a: Tensor, pred_b: Tensor) -> float:
    """`√(E (ŷ_a − ŷ_b)²)`, the RMS prediction difference. pred_a, pred_b: (B,) → float."""
    _check_pair(pred_a, pred_b, 1, "predictions")
    return (pred_a - pred_b).square().mean().sqrt().item()


def query_sensitivity(fn: PredictionFn, X: Tensor, y: Tensor, x_q: Tensor) -> Tensor:
    """`∂ŷ_b/∂x_{q,b}` for every prompt: X (B, n, d), y (B, n), x_q (B, d) → (B, d).

    One autograd call for the whole batch: the gradient of `Σ_b ŷ_b` w.r.t. x_q has row b equal
    to `∂ŷ_b/∂x_{q,b}`, because `ŷ_b` depends on `x_{q,b}` only (prompts are independent; a `fn`
    that mixes prompts, e.g. through batch statistics, breaks this). The result is detached; the
    parameters of `fn` receive no `.grad`. Works under `torch.no_grad()` too.
    """
    if x_q.ndim != 2 or X.ndim != 3 or x_q.shape != (X.shape[0], X.shape[2]):
        raise ValueError(
            f"expected X (B, n, d), x_q (B, d), got {tuple(X.shape)}, {tuple(x_q.shape)}"
        )
    x = x_q.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        pred = fn(X, y, x)  # (B,)
        if pred.shape != (X.shape[0],):
            raise ValueError(f"fn must return (B,) = ({X.shape[0]},), got {tuple(pred.shape)}")
        if not pred.requires_grad:  # constant in x_q
            return torch.zeros_like(x_q)
        (grad,) = torch.autograd.grad(pred.sum(), x, allow_unused=True)
    return torch.zeros_like(x_q) if grad is None else grad.detach()


def model_cosine(sens_a: Tensor, sens_b: Tensor, eps: float = 1e-300) -> float:
    """Mean over prompts of `⟨s_a, s_b⟩ / (‖s_a‖ ‖s_b‖)`. sens_a, sens_b: (B, d) → float.

    Invariant to rescaling either sensitivity by a positive factor (per prompt); `eps` only
    guards a zero sensitivity (whose cosine then counts as 0).
    """
    _check_pair(sens_a, sens_b, 2, "sensitivities")
    dot = (sens_a * sens_b).sum(-1)  # (B,)
    norms = torch.linalg.vector_norm(sens_a, dim=-1) * torch.linalg.vector_norm(sens_b, dim=-1)
    return (dot / norms.clamp_min(eps)).mean().item()


def model_difference(sens_a: Tensor, sens_b: Tensor) -> float:
    """Mean over prompts of `‖s_a − s_b‖₂`. sens_a, sens_b: (B, d) → float."""
    _check_pair(sens_a, sens_b, 2, "sensitivities")
    return torch.linalg.vector_norm(sens_a - sens_b, dim=-1).mean().item()


def compare(fn_a: PredictionFn, fn_b: PredictionFn, X: Tensor, y: Tensor, x_q: Tensor) -> dict:
    """All four metrics of `fn_a` against `fn_b` on one batch of prompts, as name → float:
    `prediction_difference`, `prediction_rmse`, `model_cosine`, `model_difference`."""
    with torch.no_grad():
        pred_a, pred_b = fn_a(X, y, x_q), fn_b(X, y, x_q)
    sens_a = query_sensitivity(fn_a, X, y, x_q)
    sens_b = query_sensitivity(fn_b, X, y, x_q)
    return {
        "prediction_difference": prediction_difference(pred_a, pred_b),
        "prediction_rmse": prediction_rmse(pred_a, pred_b),
        "model_cosine": model_cosine(sens_a, sens_b),
        "model_difference": model_difference(sens_a, sens_b),
    }


def lsa_prediction_fn(model: LinearSelfAttention, n_loops: int | None = None) -> PredictionFn:
    """`fn(X, y, x_q) = model.predict(build_prompt(X, y, x_q), n_loops)`: (B,) predictions."""

    def fn(X: Tensor, y: Tensor, x_q: Tensor) -> Tensor:
        return model.predict(build_prompt(X, y, x_q), n_loops=n_loops)

    return fn


def gd_prediction_fn(eta: float, n_steps: int = 1) -> PredictionFn:
    """`fn(X, y, x_q) = x_qᵀ w_L` with `w_L` after `n_steps` of GD from 0 with step η."""

    def fn(X: Tensor, y: Tensor, x_q: Tensor) -> Tensor:
        return gradient_descent(X, y, eta, n_steps).predict(x_q)[-1]

    return fn
