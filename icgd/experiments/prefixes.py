"""Zero-padded prefix prompts for LSA and the baselines of `which-algorithm`, on every prefix.

Akyürek, Schuurmans, Andreas, Ma, Zhou (2023), "What learning algorithm is in-context learning?
Investigations with linear models". A k-point prompt is the first k points, n − k zero tokens and
the query: a zero token is inert in linear attention (it adds nothing to `Z M Zᵀ` and is mapped
to 0), so one padded batch evaluates every prefix (see `icgd.experiments.which_algorithm`). The
baselines are computed for every prefix at once by `icgd.algorithms.prefix`, in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from icgd.algorithms import prefix_knn, prefix_ols, prefix_one_step_gd, prefix_ridge
from icgd.analysis import linear_weights
from icgd.core.prompts import build_prompt
from icgd.models import LinearSelfAttention
from icgd.tasks import LinearRegression

TAU = 1.0  # prior scale of w* ~ N(0, τ² I) ("identity" weight prior)


def bayes_lambda(noise: float) -> float:
    """The ridge λ of the Bayes posterior mean for w ~ N(0, τ² I): σ²/τ²."""
    return noise**2 / TAU**2


# ------------------------------------------------------------------------------ prompts, models


@dataclass(frozen=True)
class _PaddedBatch:
    """Prompts of mixed context lengths, zero-padded to n_max: Z (B, d+1, n_max+1), y_q (B,)."""

    Z: Tensor
    y_q: Tensor

    def prompt(self) -> Tensor:
        return self.Z


class PrefixTask:
    """Training prompts with a random context length k ~ U{1 … n_max} per prompt.

    Wraps a `LinearRegression` task with n = n_max for `fit_lsa` (which needs `sample`, `device`
    and `dtype`): the first k points of each prompt are kept, the other n_max − k tokens are zero
    (inert in linear attention, see the module docstring). All randomness comes from `generator`.
    """

    def __init__(self, task: LinearRegression) -> None:
        self.task, self.device, self.dtype, self.n = task, task.device, task.dtype, task.n

    def sample(self, batch_size: int, generator: torch.Generator) -> _PaddedBatch:
        batch = self.task.sample(batch_size, generator)
        k = torch.randint(1, self.n + 1, (batch_size,), generator=generator, device=self.device)
        keep = (torch.arange(self.n, device=self.device) < k[:, None]).to(self.dtype)  # (B, n)
        Z = build_prompt(batch.X * keep.unsqueeze(-1), batch.y * keep, batch.x_q)
        return _PaddedBatch(Z=Z, y_q=batch.y_q)


def prefix_prompts(X: Tensor, y: Tensor, x_q: Tensor) -> Tensor:
    """Every prefix of every prompt, zero-padded to n tokens.

    X (B, n, d), y (B, n), x_q (B, d) → Z (B·n, d+1, n+1); row `b·n + k − 1` holds the first k
    points of prompt b, n − k zero tokens and the query of prompt b.
    """
    B, n, d = X.shape
    keep = torch.ones(n, n, dtype=X.dtype, device=X.device).tril()  # [k−1, i] = 1 if i < k
    Xp = X.unsqueeze(1) * keep[None, :, :, None]  # (B, n, n, d): [b, k−1] = prefix k, padded
    yp = y.unsqueeze(1) * keep[None]  # (B, n, n)
    Xp, yp = Xp.reshape(B * n, n, d), yp.reshape(B * n, n)
    return build_prompt(Xp, yp, x_q.repeat_interleave(n, dim=0))


def predict_prefixes(
    model: LinearSelfAttention, X: Tensor, y: Tensor, x_q: Tensor, chunk: int
) -> Tensor:
    """The model's prediction after every prefix: (B, n), column k−1 from the first k points.

    LSA is not causal (every token sees the whole context), so each prefix is its own prompt;
    they all go through the model as one padded batch, `chunk` prompts (× n prefixes) at a time
    to bound memory. Computed under no_grad, returned in float64.
    """
    B, n, _ = X.shape
    out = []
    with torch.no_grad():
        for start in range(0, B, chunk):  # memory only: each call is a batched forward
            s = slice(start, start + chunk)
            Z = prefix_prompts(X[s], y[s], x_q[s])  # (b·n, d+1, n+1)
            out.append(model.predict(Z).reshape(-1, n))
    return torch.cat(out).double()


# ----------------------------------------------------------------------------------- baselines


def summed_gd(X: Tensor, y: Tensor, x_q: Tensor, step: float) -> Tensor:
    """One GD step from 0 on every prefix's summed loss `½ Σ_{i≤k} (x_iᵀw − y_i)²`:
    `ŷ_k = η x_qᵀ Σ_{i≤k} y_i x_i` = η·k·(averaging baseline). X (B, n, d) … → (B, n)."""
    k = torch.arange(1, X.shape[1] + 1, dtype=X.dtype, device=X.device)
    return step * k * prefix_one_step_gd(X, y, x_q, 1.0)


def line_search_gd(X: Tensor, y: Tensor, x_q: Tensor, y_q: Tensor) -> float:
    """The η minimising `Σ_{b,k} (η g_{bk} − y_{q,b})²` with `g = summed_gd(·, 1)`: exact, since
    the loss is quadratic in η: `η* = Σ g y_q / Σ g²`."""
    g = summed_gd(X, y, x_q, 1.0)  # (B, n)
    return float((g * y_q[:, None]).sum() / g.square().sum())


def baseline_predictions(
    X: Tensor, y: Tensor, x_q: Tensor, noise: float, eta: float, grid: Tensor, knn: int
) -> tuple[dict[str, Tensor], Tensor]:
    """Every baseline on every prefix, float64: ({name: (B, n)}, ridge on the grid (G, B, n))."""
    preds = {
        "gd": summed_gd(X, y, x_q, eta),
        "bayes": prefix_ridge(X, y, x_q, bayes_lambda(noise)),  # λ = 0 → min-norm OLS
        "ols": prefix_ols(X, y, x_q),
        "knn": prefix_knn(X, y, x_q, knn),
    }
    return preds, prefix_ridge(X, y, x_q, grid)


def baseline_weights(
    X: Tensor, y: Tensor, noise: float, eta: float, grid: Tensor
) -> tuple[dict[str, Tensor], Tensor]:
    """Exact weights of the linear baselines on every prefix: ({name: (B, n, d)}, (B, G, n, d))."""
    weights = {
        "gd": linear_weights(lambda A, b, q: summed_gd(A, b, q, eta), X, y),
        "bayes": linear_weights(lambda A, b, q: prefix_ridge(A, b, q, bayes_lambda(noise)), X, y),
        "ols": linear_weights(prefix_ols, X, y),
    }
    ridge = linear_weights(lambda A, b, q: prefix_ridge(A, b, q, grid).movedim(0, 1), X, y)
    return weights, ridge
