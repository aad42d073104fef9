"""The toy model: the query reads the context average through one learnable scalar weight,

    μ̂ = w · x̄,   x̄ = (1/n) Σ_i x_i,

i.e. a linear-attention read-out whose attention is uniform over the context tokens and whose
value-output product is the scalar w. `config` (a pydantic model) is all a checkpoint needs to
rebuild it (`icgd.training.checkpoint.build_from_checkpoint` calls `ShrinkageMean(config)`).

Hook points (the `Model` protocol, `icgd.models.api`): `hook_mean` (the context average x̄, (B,))
and `hook_out` (μ̂, (B,)), readable with `run_with_cache` and patchable with `hooks`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from icgd.core.config import Config
from icgd.models.api import example_normal
from icgd.models.hooks import HookedMixin, HookPoints, NamesFilter


class ShrinkageConfig(Config):
    """`init`: the weight w at initialisation."""

    init: float = 0.0


class ShrinkageMean(HookedMixin, nn.Module):
    """μ̂ = w·x̄ with one learnable scalar `w` (shape ()); `forward(x (B, n)) -> μ̂ (B,)`."""

    def __init__(self, config: ShrinkageConfig, *, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.config = config
        self.hook_points = HookPoints()
        self.w = nn.Parameter(torch.tensor(config.init, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        mean = self.hook_points("hook_mean", x.mean(dim=-1))  # (B, n) -> (B,)
        return self.hook_points("hook_out", self.w * mean)  # (B,)

    def hook_names(self) -> list[str]:
        return ["hook_mean", "hook_out"]

    def run_with_cache(self, x: Tensor, names_filter: NamesFilter = None):
        """`(μ̂, cache)`: the cache maps hook name → detached activation."""
        return self._run_cached(names_filter, x)

    @classmethod
    def example(cls, *, dtype: torch.dtype = torch.float32) -> ShrinkageMean:
        """A tiny instance, for tests: w = 0.5."""
        return cls(ShrinkageConfig(init=0.5), dtype=dtype)

    def example_inputs(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor]:
        """`(x,)`: B prompts of 4 standard normal samples, in the model's dtype."""
        return (example_normal(generator, batch_size, 4, like=self),)
