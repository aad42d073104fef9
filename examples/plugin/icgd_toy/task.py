"""The toy task: prompts of n noisy samples of a mean drawn afresh for every prompt.

    μ ~ N(0, τ²),   x_i | μ ~ N(μ, σ²) i.i.d., i = 1 … n.

τ = `prior_std`, σ = `noise_std`. Randomness: all from the generator passed to `sample`, in the
order μ (B,), then the noise (B, n).

Layout `mean-samples` (the `Task` protocol, `icgd.tasks.api`): a batch is the tuple
`(x (B, n), mu (B,))`: the context samples of each prompt and the mean to predict.
"""

from __future__ import annotations

import torch
from pydantic import PositiveFloat, PositiveInt
from torch import Tensor

from icgd.core.config import Config


class MeanTaskConfig(Config):
    """n samples a prompt; τ (`prior_std`): spread of the means; σ (`noise_std`): of the samples."""

    n: PositiveInt = 8
    prior_std: PositiveFloat = 1.0
    noise_std: PositiveFloat = 2.0


class MeanTask:
    """Sampler of mean-estimation prompts: `sample(B, generator) -> (x (B, n), μ (B,))`."""

    layout = "mean-samples"

    def __init__(
        self,
        config: MeanTaskConfig,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.config = config
        self.device = torch.device(device)
        self.dtype = dtype

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        c = self.config
        kw = {"generator": generator, "device": generator.device, "dtype": self.dtype}
        mu = c.prior_std * torch.randn(batch_size, **kw)  # (B,)
        x = mu[:, None] + c.noise_std * torch.randn(batch_size, c.n, **kw)  # (B, n)
        return x.to(self.device), mu.to(self.device)

    def shapes(self, batch_size: int) -> dict[str, tuple[int, ...]]:
        """The batch's tensors by name: x (B, n) and mu (B,)."""
        return {"x": (batch_size, self.config.n), "mu": (batch_size,)}

    @classmethod
    def example(cls) -> MeanTask:
        """A tiny instance, for tests: n = 4."""
        return cls(MeanTaskConfig(n=4))
