"""The Bayes (posterior-mean) predictor for a finite pool of regression tasks.

Raventós, Paul, Chen, Ganguli 2023, "Pretraining task diversity and the emergence of non-Bayesian
in-context learning for regression": when the pretraining tasks come from a finite pool
`{w_1, …, w_K} ⊂ R^d`, the Bayes-optimal in-context predictor ("dMMSE") is the posterior mean over
the pool. With a uniform prior, `y_i = x_iᵀ w + σ ε_i`, `ε_i ~ N(0, 1)`, and the first m context
points of a prompt, Bayes' rule gives

    p_k^{(m)} = softmax_k( −(1/2σ²) Σ_{i≤m} (y_i − x_iᵀ w_k)² ),
    ŵ^{(m)} = Σ_k p_k^{(m)} w_k,        ŷ^{(m)} = x_qᵀ ŵ^{(m)} = Σ_k p_k^{(m)} x_qᵀ w_k

(the Gaussian normalising constants are the same for every k and cancel). The softmax is taken
with log-sum-exp (`torch.log_softmax`), so tiny σ or long contexts do not overflow. m = 0 is the
prior (uniform weights, `ŵ^{(0)}` the pool mean); m = n uses the whole context. Every prefix m is
computed at once from a cumulative sum over the context (no loop over points).

Limits: as σ → 0 the posterior concentrates on the pool tasks of least residual (on the task that
generated noiseless data); as σ → ∞ it stays at the prior. Where icgd compares against a Gaussian
prior instead (`w ~ N(0, Σ_w)`), the posterior mean is `icgd.algorithms.bayes_posterior_mean`.

Every function works on a batch of B prompts: X (B, n, d), y (B, n).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from icgd.algorithms.plugins import ALGORITHMS


@dataclass(frozen=True)
class TaskPoolResult:
    """The posterior over the pool after every prefix of the context.

    posterior: (n+1, B, K), `posterior[m, b]` the probabilities `p^{(m)}` of prompt b given its
    first m points (row 0: the uniform prior). weights: (n+1, B, d), `ŵ^{(m)} = Σ_k p_k^{(m)} w_k`.
    """

    posterior: Tensor
    weights: Tensor

    @property
    def final(self) -> Tensor:
        """The posterior mean given the whole context, `ŵ^{(n)}`: (B, d)."""
        return self.weights[-1]

    def predict(self, x_q: Tensor) -> Tensor:
        """Posterior-mean predictions `x_qᵀ ŵ^{(m)}` after every prefix: x_q (B, d) → (n+1, B)."""
        return torch.einsum("mbd,bd->mb", self.weights, x_q)


def task_pool_posterior(X: Tensor, y: Tensor, tasks: Tensor, noise_std: float) -> TaskPoolResult:
    """The posterior over a finite task pool with a uniform prior and Gaussian label noise σ, and
    its posterior mean, after every prefix of the context (module docstring).

    X: (B, n, d), y: (B, n). tasks: (K, d) the pool `w_1 … w_K` shared by every prompt, or
    (B, K, d) one pool per prompt. noise_std: σ > 0.
    Returns a `TaskPoolResult`: posterior (n+1, B, K), weights (n+1, B, d).
    """
    if X.ndim != 3 or y.shape != X.shape[:2]:
        raise ValueError(
            f"expected X (B, n, d) and y (B, n), got {tuple(X.shape)} and {tuple(y.shape)}"
        )
    B, _, d = X.shape
    tasks = torch.as_tensor(tasks, dtype=X.dtype, device=X.device)
    if tasks.ndim == 2 and tasks.shape[1] == d:
        tasks = tasks.expand(B, *tasks.shape)  # (B, K, d)
    if tasks.ndim != 3 or tasks.shape[0] != B or tasks.shape[2] != d or tasks.shape[1] < 1:
        raise ValueError(f"tasks must be (K, {d}) or ({B}, K, {d}), got {tuple(tasks.shape)}")
    if not noise_std > 0:
        raise ValueError(f"noise_std must be > 0, got {noise_std}")
    residual = y.unsqueeze(-1) - X @ tasks.transpose(1, 2)  # (B, n, K): y_i − x_iᵀ w_k
    sse = residual.square().cumsum(dim=1)  # (B, n, K): Σ_{i≤m} over prefixes m = 1…n
    sse = torch.cat([sse.new_zeros(B, 1, sse.shape[2]), sse], dim=1)  # (B, n+1, K), m = 0…n
    log_post = torch.log_softmax(-sse / (2 * noise_std**2), dim=-1)  # (B, n+1, K)
    posterior = log_post.exp().transpose(0, 1)  # (n+1, B, K)
    weights = torch.einsum("mbk,bkd->mbd", posterior, tasks)  # (n+1, B, d)
    return TaskPoolResult(posterior=posterior, weights=weights)


ALGORITHMS.register("task-pool-bayes", task_pool_posterior)
