"""The config of `looped-landscape`: the (L, n, d) grid, the minimiser sweep, samples and
tolerances."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, NonNegativeFloat, PositiveInt, field_validator, model_validator

from icgd.core.config import Config
from icgd.experiments.api import ExperimentConfig

Loops = Annotated[int, Field(ge=1, le=16)]
Size = Annotated[int, Field(ge=1, le=100_000)]
Dim = Annotated[int, Field(ge=2, le=64)]


class Tolerances(Config):
    """Tolerances of the claims (each claim states its comparison)."""

    z: NonNegativeFloat = 4.0  # |z| of a Monte Carlo comparison; also what "c ≠ 0" means
    # A minimisation started at a*·I + a perturbation of antisymmetric share `start_share` has
    # returned when the share left is at most this fraction of it.
    returned_fraction: NonNegativeFloat = 0.1


class LoopedLandscapeConfig(ExperimentConfig):
    """Settings of `looped-landscape`; every one can be overridden with `--set key=value`.

    Phase diagram: the sign of c(L, n, d) at every point of ``loops × ns × ds``, from
    ``curvature_samples`` Wishart draws per (n, d). Minimiser sweep: the full-matrix minimiser of
    the looped loss at ``(sweep_loops, n, sweep_d)`` for each n in ``sweep_ns``, fitted on
    ``fit_samples`` draws (common random numbers) from ``a*·I`` plus a random perturbation of
    relative size ``start_share``, and compared with ``a*·I`` on ``test_samples`` fresh draws.
    The setting is Gatmiry's (w* ~ N(0, Σ⁻¹), σ = 0), where the loss does not depend on Σ.
    """

    loops: tuple[Loops, ...] = (2, 3, 4)
    ns: tuple[Size, ...] = (4, 8, 16, 32, 64, 128, 256)
    ds: tuple[Dim, ...] = (2, 3, 5, 8)
    sweep_loops: Loops = 3
    sweep_d: Dim = 5
    sweep_ns: tuple[Size, ...] = (10, 20, 40, 80, 160)
    curvature_samples: Annotated[int, Field(ge=100)] = 20_000
    fd_samples: Annotated[int, Field(ge=100)] = 20_000
    fit_samples: Annotated[int, Field(ge=100)] = 10_000
    test_samples: Annotated[int, Field(ge=100)] = 100_000
    theory_samples: Annotated[int, Field(ge=1000)] = 100_000  # a* and the stacked optimum
    limit_samples: Annotated[int, Field(ge=1000)] = 100_000  # the n → ∞ constant C(L, d)
    start_share: Annotated[float, Field(gt=0, le=0.5)] = 0.05
    max_iterations: PositiveInt = 3000
    tolerances: Tolerances = Tolerances()

    @field_validator("loops", "ns", "ds", "sweep_ns")
    @classmethod
    def _distinct_sorted(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or list(value) != sorted(set(value)):
            raise ValueError("must be a non-empty increasing list of distinct values")
        return value

    @model_validator(mode="after")
    def _small_enough(self) -> LoopedLandscapeConfig:
        if max(self.ns) * max(self.ds) > 200_000 or max(self.sweep_ns) * self.sweep_d > 200_000:
            raise ValueError("ns: n·d must stay <= 200000 (one draw of G is n × d)")
        return self
