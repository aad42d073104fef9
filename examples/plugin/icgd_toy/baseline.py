"""The baseline: the Bayes posterior mean of μ, batched over prompts.

For μ ~ N(0, τ²) and x_i | μ ~ N(μ, σ²) i.i.d. (i = 1 … n), the posterior of μ is Gaussian with

    E[μ | x] = c · x̄,   c = n τ² / (n τ² + σ²),   Var[μ | x] = τ² σ² / (n τ² + σ²),

so the posterior mean shrinks the sample mean x̄ toward the prior mean 0 by the factor c, and its
mean squared error (the Bayes risk) is the posterior variance. Among all predictors of μ from x
it has the least mean squared error; among predictors w·x̄ the best w is c.
"""

from __future__ import annotations

import torch
from torch import Tensor

from icgd.algorithms.plugins import AlgorithmExample, with_example


def shrinkage_weight(n: int, prior_std: float, noise_std: float) -> float:
    """c = n τ² / (n τ² + σ²)."""
    return n * prior_std**2 / (n * prior_std**2 + noise_std**2)


def bayes_risk(n: int, prior_std: float, noise_std: float) -> float:
    """E (μ − E[μ | x])² = τ² σ² / (n τ² + σ²)."""
    return prior_std**2 * noise_std**2 / (n * prior_std**2 + noise_std**2)


def posterior_mean(x: Tensor, prior_std: float, noise_std: float) -> Tensor:
    """Bayes posterior mean E[μ | x] = c · x̄ of every prompt (module docstring).

    x: (B, n) samples, prior_std: τ > 0, noise_std: σ ≥ 0 → (B,).
    """
    if x.ndim != 2:
        raise ValueError(f"posterior_mean: expected x (B, n), got {tuple(x.shape)}")
    return shrinkage_weight(x.shape[-1], prior_std, noise_std) * x.mean(dim=-1)  # (B,)


def _example(batch_size: int, generator: torch.Generator) -> AlgorithmExample:
    """Inputs of B prompts for the contract suite (the `Algorithm` protocol)."""
    x = torch.randn(batch_size, 6, generator=generator, dtype=torch.float64)
    return AlgorithmExample(inputs={"x": x}, options={"prior_std": 1.0, "noise_std": 2.0})


with_example(posterior_mean, _example)
