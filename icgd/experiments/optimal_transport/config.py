"""The config of `optimal-transport`: point clouds, regularisations, depths, the sorting part's
sizes and the claim tolerances."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, PositiveFloat, model_validator

from icgd.core.config import Config
from icgd.experiments.api import ExperimentConfig

Positive = Annotated[float, Field(gt=0, le=100)]
Size = Annotated[int, Field(ge=2, le=4096)]


class Tolerances(Config):
    """Tolerances of the claims, fixed before the default run was looked at (reasons in
    `OptimalTransportExperiment.claims`)."""

    equivalence: PositiveFloat = 1e-10
    plan_error_drop: Annotated[float, Field(gt=0, lt=1)] = 0.01


class OptimalTransportConfig(ExperimentConfig):
    """Settings of `optimal-transport`; every one can be overridden with `--set key=value`.

    `d`, `cloud`, `ns`, `epsilons`, `kappa`, `depth`, `batch`: parts 1–2 (point clouds in R^d, their
    distribution, the sizes,
    the regularisations, the step parameter κ, the layers, problems per (n, ε)); `sort_ns`,
    `sort_epsilons`, `sort_depth`, `sort_batch`: part 3 (`sort_check_n`: the largest n at which
    the transformer is run next to the iterates); tolerances of the claims.
    """

    dtype: Literal["float64"] = "float64"  # claim 1 is an exact equivalence
    d: Annotated[int, Field(ge=1, le=64)] = 2
    cloud: Literal["uniform", "gaussian", "mixture"] = "uniform"
    ns: tuple[Size, ...] = (8, 32, 128)
    epsilons: tuple[Positive, ...] = (0.1, 0.5)
    kappa: Annotated[float, Field(gt=0, le=2)] = 1.0
    depth: Annotated[int, Field(ge=1, le=100_000)] = 64
    batch: Annotated[int, Field(ge=1, le=100_000)] = 16
    sort_ns: tuple[Size, ...] = (8, 32, 128, 512)
    sort_epsilons: tuple[Positive, ...] = (0.01, 0.003)
    sort_depth: Annotated[int, Field(ge=1, le=100_000)] = 1000
    sort_batch: Annotated[int, Field(ge=1, le=100_000)] = 4
    sort_check_n: Annotated[int, Field(ge=0, le=4096)] = 32
    tolerances: Tolerances = Tolerances()

    @model_validator(mode="after")
    def _check(self) -> OptimalTransportConfig:
        for name in ("ns", "epsilons", "sort_ns", "sort_epsilons"):
            values = getattr(self, name)
            if not values or len(set(values)) != len(values):
                raise ValueError(f"{name}: give at least one value, each once, got {list(values)}")
        if len(self.sort_epsilons) < 2:
            raise ValueError("sort_epsilons: give at least two values (claim 4 compares floors)")
        return self
