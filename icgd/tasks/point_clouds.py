"""Pairs of point clouds for in-context entropic optimal transport, and sorting problems (SPEC §4).

Daneshmand (2024), "Provable optimal transport with transformers": the in-context problem is a
pair of clouds `x_1 … x_n`, `y_1 … y_n` in R^d (uniform measures on each), to be matched by the
entropic OT plan of cost `C_ij = ‖x_i − y_j‖²`; in d = 1 with the y's on a fixed grid, the matching
sorts the x's. The distributions below are ours (the paper's were not available to us).

Point clouds (`PointCloudsConfig.kind`); X and Y are i.i.d. from the same distribution D, then
every y is translated by `shift · (1, …, 1)/√d` (a shift of Euclidean norm |shift|; 0: same
distribution):

- "gaussian": `D = N(0, I_d)`.
- "uniform": `D = U([0, 1]^d)`.
- "mixture": per prompt, k = `n_components` means `μ_c ~ N(0, spread² I_d)`, `spread =
  mixture_spread`; D is the equal-weight mixture `(1/k) Σ_c N(μ_c, σ² I_d)`, `σ = mixture_std`.
  X and Y of a prompt share the same means (one mixture per prompt), each point picks its
  component uniformly and independently.

Randomness: all from the generator passed to `sample`, in the order "gaussian": X (B, n, d), Y
(B, n, d) normals; "uniform": X, Y uniforms; "mixture": means (B, k, d), X's components (B, n),
X's noise (B, n, d), Y's components (B, n), Y's noise (B, n, d).

Sorting (`sorting_problem`): `x_i ~ U[0, 1]` i.i.d. (B, n, 1) and the fixed grid
`y_j = (j + 1/2)/n`, j = 0 … n−1 (B, n, 1), the same in every prompt. The sorted target of `x_i` is
the grid point of its rank, `y_{rank(x_i)}`, `rank(x_i) = #{k : x_k < x_i}` (0-based; ties have
probability 0): the optimal transport map for `C = |x − y|²` between the two uniform measures is
the monotone rearrangement (`sorting_ranks`, `sorted_targets`).

Layout `point-cloud-pair` of the `Task` protocol (`icgd.tasks.api`): a batch is the pair (X, Y),
each (B, n, d); a problem's cost is `icgd.algorithms.squared_distances(X, Y)` (B, n, n).
"""

from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal

import torch
from pydantic import Field, FiniteFloat, StrictInt
from torch import Tensor

from icgd.core.config import Config
from icgd.tasks.plugins import TASKS

PositiveInt = Annotated[StrictInt, Field(gt=0)]
PositiveFiniteFloat = Annotated[FiniteFloat, Field(gt=0)]

CloudKind = Literal["gaussian", "uniform", "mixture"]


class PointCloudsConfig(Config):
    """Distribution of pairs of point clouds (module docstring for the definitions).

    - `kind`: "gaussian", "uniform" or "mixture"; `d`: dimension; `n`: points per cloud.
    - `shift`: Y is translated by `shift · (1, …, 1)/√d` (0: X and Y from the same distribution).
    - `n_components`, `mixture_spread`, `mixture_std`: k, the std of the means, and the std of each
      component ("mixture" only).
    """

    kind: CloudKind = "gaussian"
    d: PositiveInt = 2
    n: PositiveInt = 16
    shift: FiniteFloat = 0.0
    n_components: PositiveInt = 3
    mixture_spread: PositiveFiniteFloat = 2.0
    mixture_std: PositiveFiniteFloat = 0.5


class PointClouds:
    """Sampler of pairs of clouds: `sample(B, generator, n=None) -> (X, Y)`, each (B, n, d).

    A `Task` (`icgd.tasks.api`) of layout `point-cloud-pair`.
    """

    layout: ClassVar[str] = "point-cloud-pair"

    def __init__(
        self,
        config: PointCloudsConfig,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.config = config
        self.device = torch.device(device)
        self.dtype = dtype

    @classmethod
    def example(cls) -> PointClouds:
        """A tiny instance: Gaussian mixtures of 2 components in d = 2, 5 points a cloud."""
        return cls(PointCloudsConfig(kind="mixture", d=2, n=5, n_components=2))

    def shapes(self, batch_size: int) -> dict[str, tuple[int, ...]]:
        """The tensors of `sample(batch_size, g)`: X, Y (B, n, d)."""
        cloud = (int(batch_size), self.config.n, self.config.d)
        return {"X": cloud, "Y": cloud}

    def _mixture_points(self, means: Tensor, n: int, kw: dict) -> Tensor:
        """n points per prompt from the mixture with means (B, k, d): (B, n, d)."""
        B, k, d = means.shape
        comp = torch.randint(0, k, (B, n), generator=kw["generator"], device=self.device)
        centre = torch.gather(means, 1, comp.unsqueeze(-1).expand(B, n, d))  # (B, n, d)
        return centre + self.config.mixture_std * torch.randn(B, n, d, **kw)

    def sample(
        self, batch_size: int, generator: torch.Generator, n: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """`(X, Y)`, each (B, n, d), n defaulting to `config.n` (draw order in the module
        docstring). Y carries the shift."""
        cfg = self.config
        n = cfg.n if n is None else int(n)
        if batch_size < 1 or n < 1:
            raise ValueError(f"batch_size and n must be >= 1, got {batch_size} and {n}")
        B, d = int(batch_size), cfg.d
        kw = {"generator": generator, "device": self.device, "dtype": self.dtype}
        if cfg.kind == "gaussian":
            X = torch.randn(B, n, d, **kw)
            Y = torch.randn(B, n, d, **kw)
        elif cfg.kind == "uniform":
            X = torch.rand(B, n, d, **kw)
            Y = torch.rand(B, n, d, **kw)
        else:  # mixture
            means = cfg.mixture_spread * torch.randn(B, cfg.n_components, d, **kw)  # (B, k, d)
            X = self._mixture_points(means, n, kw)
            Y = self._mixture_points(means, n, kw)
        if cfg.shift != 0:
            Y = Y + cfg.shift / math.sqrt(d)
        return X, Y


def sorting_grid(
    n: int, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> Tensor:
    """The fixed grid `y_j = (j + 1/2)/n`, j = 0 … n−1: (n,)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return (torch.arange(n, dtype=dtype, device=device) + 0.5) / n


def sorting_problem(
    batch_size: int,
    n: int,
    generator: torch.Generator,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> tuple[Tensor, Tensor]:
    """`(x, y)`: x (B, n, 1) i.i.d. U[0, 1] (one draw from `generator`), y (B, n, 1) the grid
    `(j + 1/2)/n` in every prompt."""
    if batch_size < 1 or n < 1:
        raise ValueError(f"batch_size and n must be >= 1, got {batch_size} and {n}")
    x = torch.rand(batch_size, n, 1, generator=generator, dtype=dtype, device=device)
    y = sorting_grid(n, dtype=dtype, device=device).expand(batch_size, n).unsqueeze(-1).clone()
    return x, y


def sorting_ranks(x: Tensor) -> Tensor:
    """`rank(x_i) = #{k : x_k < x_i}` (0-based): x (B, n, 1) or (B, n) → (B, n) int64."""
    values = x.squeeze(-1) if x.ndim == 3 else x
    return values.argsort(-1).argsort(-1)


def sorted_targets(x: Tensor) -> Tensor:
    """The grid point of each x's rank, `(rank(x_i) + 1/2)/n`: (B, n, 1) → (B, n, 1)."""
    ranks = sorting_ranks(x)  # (B, n)
    return ((ranks.to(x.dtype) + 0.5) / ranks.shape[-1]).unsqueeze(-1)


TASKS.register("point-clouds", PointClouds)
