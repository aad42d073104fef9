"""The toy model: the query reads the context average through one learnable scalar weight,

    μ̂ = w · x̄,   x̄ = (1/n) Σ_i x_i,

i.e. a linear-attention read-out whose attention is uniform over the context tokens and whose
value-output product is the scalar w. `config` (a pydantic model) is all a checkpoint needs to
rebuild it (`icgd.training.checkpoint.build_from_checkpoint` calls `ShrinkageMean(config)`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from icgd.core.config import Config


class ShrinkageConfig(Config):
    """`init`: the weight w at initialisation."""

    init: float = 0.0


class ShrinkageMean(nn.Module):
    """μ̂ = w·x̄ with one learnable scalar `w` (shape ()); `forward(x (B, n)) -> μ̂ (B,)`."""

    def __init__(self, config: ShrinkageConfig, *, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.config = config
        self.w = nn.Parameter(torch.tensor(config.init, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        return self.w * x.mean(dim=-1)  # (B, n) -> (B,)
