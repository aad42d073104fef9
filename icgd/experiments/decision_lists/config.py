"""The config of `decision-lists`: task sizes, the `sampled` preset, step rules, mode (c)'s
recipe and the claim tolerances."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, PositiveFloat, model_validator

from icgd.core.config import Config
from icgd.core.rng import derive_seed
from icgd.experiments.api import ExperimentConfig
from icgd.experiments.common import apply_preset
from icgd.tasks import DecisionListsConfig

SAMPLED: dict[str, Any] = {
    "L": 16,
    "n": 6,
    "M": 3,
    "population": 5000,
    "eta_rule": "local",
    "steps_a": 4000,
    "steps_b": 4000,
}


class Tolerances(Config):
    """Tolerances of the claims, fixed before the default run was looked at (reasons in
    `DecisionListsExperiment.claims`)."""

    attention_mass: Annotated[float, Field(gt=0, le=1)] = 0.5
    alignment_rise: PositiveFloat = 0.01


class DecisionListsExperimentConfig(ExperimentConfig):
    """Settings of `decision-lists`; every one can be overridden with `--set key=value`.

    `L`, `n`, `M`, `list_length`, `sequence_sampler`: the task (`DecisionListsConfig`; its lists
    and permutation are drawn from the run seed); `population`: the sample size of the `sampled`
    preset; `c`: V's scale in modes (a), (b) (None: the theory's c_required); `eta_factor`:
    η = eta_factor / λ_max; `eta_rule`: "fixed" (λ_max at the start) or "local" (λ_max measured
    again every `hessian_every` steps, η_t = eta_factor / λ_max(θ_t)); `steps_a`, `steps_b`,
    `steps_v`: GD steps; `eps`: mode (b)'s relative perturbation of V₀; `v_init_std`: V₀'s scale
    for the uniform-attention run; `seeds_c`, `steps_c`, `lr_c`, `batch_c`, `init_std_c`: mode
    (c); `hessian_iters`: power-iteration budget; `log_every`: the resolution of the training
    curves; `n_examples`: sequences whose attention is saved for the figures.
    """

    preset: Literal["exact", "sampled"] = "exact"
    dtype: Literal["float32", "float64"] = "float64"
    L: Annotated[int, Field(ge=2, le=512)] = 8
    n: Annotated[int, Field(ge=1, le=64)] = 4
    M: Annotated[int, Field(ge=1, le=512)] = 3
    list_length: Literal["uniform", "fixed"] = "uniform"
    sequence_sampler: Literal["iid", "subset"] = "iid"
    population: Annotated[int, Field(ge=100, le=10_000_000)] = 20_000
    c: PositiveFloat | None = None
    eta_factor: Annotated[float, Field(gt=0, le=1)] = 1.0
    eta_rule: Literal["fixed", "local"] = "fixed"
    hessian_every: Annotated[int, Field(ge=1, le=1_000_000)] = 250
    optimizer: Literal["gd", "adam"] = "gd"
    lr_adam: PositiveFloat = 0.01
    steps_a: Annotated[int, Field(ge=1, le=10_000_000)] = 2000
    steps_b: Annotated[int, Field(ge=1, le=10_000_000)] = 2000
    eps: Annotated[float, Field(ge=0, le=10)] = 0.1
    steps_v: Annotated[int, Field(ge=1, le=1_000_000)] = 200
    v_init_std: PositiveFloat = 0.01
    seeds_c: Annotated[int, Field(ge=0, le=100)] = 5
    steps_c: Annotated[int, Field(ge=1, le=10_000_000)] = 2000
    lr_c: PositiveFloat = 0.05
    batch_c: Annotated[int, Field(ge=1, le=1_000_000)] = 256
    init_std_c: PositiveFloat = 0.01
    hessian_iters: Annotated[int, Field(ge=10, le=10_000)] = 200
    log_every: Annotated[int, Field(ge=1)] = 25
    n_examples: Annotated[int, Field(ge=1, le=16)] = 3
    tolerances: Tolerances = Tolerances()

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        return apply_preset(cls, data, "sampled", SAMPLED)

    @model_validator(mode="after")
    def _check(self) -> DecisionListsExperimentConfig:
        if self.M > self.L:
            raise ValueError(f"M: must be <= L={self.L}, got {self.M}")
        if self.sequence_sampler == "subset" and self.n > self.L:
            raise ValueError(f"n: must be <= L={self.L} with the subset sampler, got {self.n}")
        return self

    def task_config(self) -> DecisionListsConfig:
        return DecisionListsConfig(
            L=self.L,
            n=self.n,
            M=self.M,
            list_length=self.list_length,
            sequence_sampler=self.sequence_sampler,
            seed=derive_seed(self.seed, "task") % 2**62,
        )
