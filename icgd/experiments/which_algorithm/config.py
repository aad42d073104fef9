"""The settings of `which-algorithm`: its config, presets, per-family training recipes and
ridge grid (the experiment and its choices are documented in `experiment.py`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
from pydantic import (
    Field,
    FiniteFloat,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    model_validator,
)

from icgd.core.config import Config
from icgd.core.rng import derive_seed
from icgd.experiments.api import ExperimentConfig
from icgd.experiments.common import regression_task_config
from icgd.experiments.which_algorithm.prefixes import bayes_lambda
from icgd.models import LSASpec, ModelSpec
from icgd.tasks import LinearRegression
from icgd.training import OptimizerConfig, ScheduleConfig, TrainConfig

DEFAULT_TRAIN = TrainConfig(
    steps=1000,
    batch_size=1024,
    optimizer=OptimizerConfig(kind="sgd", lr=0.01, momentum=0.9),
    schedule=ScheduleConfig(kind="cosine"),
    clip_norm=0.5,
    resample_every=1,
    eval_every=100,
    eval_batch_size=4096,
    checkpoint_every=500,
)

# Each family's recipe (measured: see `experiment.py`'s docstring); `train` starts from the
# family's and every field set explicitly wins. The LSA recipe is the default of `train`.
FAMILY_TRAIN: dict[str, TrainConfig] = {
    "lsa": DEFAULT_TRAIN,
    "softmax": DEFAULT_TRAIN.model_copy(
        update={"optimizer": OptimizerConfig(kind="adam", lr=3e-3), "clip_norm": None}
    ),
    "gpt": TrainConfig(
        steps=600,
        batch_size=256,
        optimizer=OptimizerConfig(kind="adam", lr=3e-4),
        schedule=ScheduleConfig(kind="cosine"),
        clip_norm=None,
        resample_every=1,
        eval_every=100,
        eval_batch_size=1024,
        checkpoint_every=500,
    ),
}
FAMILY_TRAIN["looped"] = FAMILY_TRAIN["gpt"]

# Tiny sizes for unit tests and the contract suite (`icgd run which-algorithm --preset smoke`):
# seconds on one core.
SMOKE = (
    "d=3",
    "depths=[1,2]",
    "noise_levels=[0,0.5]",
    "train.steps=12",
    "train.batch_size=128",
    "train.eval_batch_size=128",
    "train.eval_every=6",
    "train.checkpoint_every=6",
    "test_batch_size=256",
    "tune_batch_size=256",
    "ilwd_batch_size=32",
)

# The presets choose the sweep; every model trains with `train` (one recipe for all depths).
PRESETS: dict[str, dict[str, tuple]] = {
    "quick": {"depths": (1, 8), "noise_levels": (0.0, 0.5)},
    "full": {"depths": (1, 2, 4, 8), "noise_levels": (0.0, 0.25, 0.5)},
}

# Default ridge grid: λ = 2^j, j = −10 … 4 (≈ 1e-3 … 16). Powers of 2 hold the Bayes λ of the
# preset noise levels exactly (0.25² = 2^-4, 0.5² = 2^-2); the Bayes λ of another σ is added to
# the grid and may sit close to a grid point, which makes claim (a) harder to resolve (the run
# reports the margin and its standard error).
DEFAULT_LAMBDA_EXPONENTS = range(-10, 5)

# The algorithms compared with every model (SPD), and the linear ones (ILWD).
ALGORITHMS = ("gd", "bayes", "ols", "knn")
LINEAR_ALGORITHMS = ("gd", "bayes", "ols")

Depth = Annotated[int, Field(gt=0, le=16)]
Noise = Annotated[FiniteFloat, Field(ge=0, le=100)]
Lambda = Annotated[FiniteFloat, Field(gt=0)]


class Tolerances(Config):
    """Tolerances of the claims, fixed before any run was looked at (reasons in `claims.py`)."""

    ridge_grid_steps: NonNegativeInt = 0  # (a) |argmin_λ test error − Bayes λ| in grid steps
    ordering: NonNegativeFloat = 0.0  # (b)–(d) SPD ratios: ≤ 1 + this (≥ 1 − this)
    lambda_factor: Annotated[float, Field(ge=1.0)] = 2.0  # (e) λ_closest within this factor


class WhichAlgorithmConfig(ExperimentConfig):
    """Settings of `which-algorithm`; every one can be overridden with `--set key=value`.

    `depths` and `noise_levels` (σ/τ) None take the preset's; `n_max` None is 2d, `ilwd_probes`
    None is 2d, `lambda_grid` None is 2^-10 … 2^4; the grid actually used always holds the Bayes
    λ = σ²/τ² of every σ > 0.
    """

    preset: Literal["quick", "full"] = "full"
    d: Annotated[int, Field(gt=0, le=64)] = 8
    n_max: Annotated[int, Field(gt=0, le=256)] | None = None
    depths: tuple[Depth, ...] | None = None
    noise_levels: tuple[Noise, ...] | None = None
    lambda_grid: tuple[Lambda, ...] | None = None
    model: ModelSpec = LSASpec()
    train: TrainConfig = DEFAULT_TRAIN
    test_batch_size: Annotated[int, Field(ge=16, le=1_000_000)] = 8192
    tune_batch_size: Annotated[int, Field(ge=16, le=1_000_000)] = 8192
    ilwd_batch_size: Annotated[int, Field(ge=16, le=100_000)] = 512
    ilwd_probes: Annotated[int, Field(gt=0, le=1024)] | None = None
    knn_neighbors: PositiveInt = 3
    # prompts per model call (× n prefixes for lsa/softmax; sequences of n+1 points for gpt/looped,
    # ILWD's m·n per prompt included): memory only
    eval_chunk: Annotated[int, Field(ge=1)] = 2048
    tolerances: Tolerances = Tolerances()

    @model_validator(mode="before")
    @classmethod
    def _family_recipe(cls, data: Any) -> Any:
        """A non-LSA family trains with its own recipe (`FAMILY_TRAIN`): every `train` field that
        still holds the LSA recipe's value takes the family's (so `--set model.kind=gpt` with
        `--set train.steps=50` gives the GPT recipe with 50 steps; a field set explicitly to the
        LSA value is replaced too, as with `looped-transformer`'s presets)."""
        if not isinstance(data, dict):
            return data
        model = data.get("model", {})
        kind = model.get("kind") if isinstance(model, dict) else getattr(model, "kind", None)
        kind = kind or "lsa"
        if kind == "lsa" or kind not in FAMILY_TRAIN:  # an unknown kind fails on `model.kind`
            return data
        train = data.get("train", DEFAULT_TRAIN)
        train = train.model_dump() if isinstance(train, TrainConfig) else train
        if not isinstance(train, dict):
            return data
        recipe = FAMILY_TRAIN[kind].model_dump()
        return {**data, "train": _keep_changed(train, DEFAULT_TRAIN.model_dump(), recipe)}

    @model_validator(mode="after")
    def _check(self) -> WhichAlgorithmConfig:
        for name, values in (("depths", self.depths), ("noise_levels", self.noise_levels)):
            if values is not None and (len(values) == 0 or len(set(values)) != len(values)):
                raise ValueError(f"{name}: must be a non-empty list of distinct values")
        if len({tag(s) for s in self.resolved_noise}) != len(self.resolved_noise):
            raise ValueError("noise_levels: must differ within their first 6 significant digits")
        if self.lambda_grid is not None and len(self.lambda_grid) == 0:
            raise ValueError("lambda_grid: must hold at least one λ > 0")
        if self.probes < self.d:
            raise ValueError(
                f"ilwd_probes: must be >= d = {self.d} (a linear fit in d dimensions), "
                f"got {self.probes}"
            )
        return self

    # The preset's values for the fields left null.
    @property
    def resolved_depths(self) -> tuple[int, ...]:
        return tuple(sorted(self.depths or PRESETS[self.preset]["depths"]))

    @property
    def resolved_noise(self) -> tuple[float, ...]:
        values = self.noise_levels or PRESETS[self.preset]["noise_levels"]
        return tuple(sorted(float(s) for s in values))

    @property
    def context(self) -> int:
        return self.n_max if self.n_max is not None else 2 * self.d

    @property
    def probes(self) -> int:
        return self.ilwd_probes if self.ilwd_probes is not None else 2 * self.d

    @property
    def grid(self) -> tuple[float, ...]:
        """The ridge λ grid used: the given (or default) grid ∪ {σ²/τ² : σ > 0}, ascending."""
        base = self.lambda_grid or tuple(2.0**j for j in DEFAULT_LAMBDA_EXPONENTS)
        bayes = {bayes_lambda(s) for s in self.resolved_noise if s > 0}
        return tuple(sorted(set(base) | bayes))


def _keep_changed(given: dict, default: dict, recipe: dict) -> dict:
    """`recipe`, with the leaves of `given` that differ from `default` laid over it (nested)."""
    out = dict(recipe)
    for key, value in given.items():
        base = default.get(key)
        if isinstance(value, dict) and isinstance(base, dict):
            out[key] = _keep_changed(value, base, recipe.get(key, {}))
        elif key not in default or value != base:
            out[key] = value
    return out


def tag(noise: float) -> str:
    """Metric-name suffix of a noise level: `s0`, `s0.25`, …"""
    return f"s{noise:g}"


def regression_task(config: WhichAlgorithmConfig, noise: float) -> LinearRegression:
    """Isotropic regression at (d, n_max) with label noise σ = `noise`: every model's task."""
    return LinearRegression(
        regression_task_config(
            d=config.d,
            n=config.context,
            covariance="identity",
            weight_prior="identity",
            noise_std=noise,
        ),
        rotation_seed=derive_seed(config.seed, "rotation"),
        device=torch.device(config.device),
        dtype=config.torch_dtype,
    )
