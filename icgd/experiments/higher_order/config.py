"""The config of `higher-order`: the prompts, the GPT's sizes, its training, the layer probes,
the identification of the final output, the CPU and paper presets and the claims' tolerances
(Fu, Chen, Jia, Sharan 2024; the module docstring of `experiment.py` describes what runs)."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, PositiveFloat, model_validator

from icgd.core.config import Config
from icgd.experiments.api import ExperimentConfig
from icgd.experiments.common import apply_preset
from icgd.experiments.common.garg import GARG_TRAIN, check_curriculum, cpu_train, linear_task
from icgd.models import GPTConfig
from icgd.tasks import CurriculumConfig, FunctionClass, ScheduleConfig
from icgd.training import TrainConfig

# The candidates `identify` fits to the final output by default (all of icgd's but
# preconditioned GD, whose d × d Γ is the slowest fit and, on isotropic x, is GD again).
IDENTIFY_ALGORITHMS = (
    "gd",
    "iterative-newton",
    "ols",
    "ridge",
    "chebyshev",
    "debiased-gd",
    "gd-beta",
)

# CPU recipe; the measurements behind it are in the module docstring of `experiment.py`.
CPU_TRAIN = cpu_train(steps=3000, checkpoint_every=500)
CPU_CURRICULUM = CurriculumConfig(
    dims=ScheduleConfig(start=2, end=3, inc=1, interval=300),
    points=ScheduleConfig(start=4, end=7, inc=1, interval=200),
)

# Fu et al. probe Garg et al.'s trained linear-regression model: d = 20, 41 points, the
# "standard" GPT-2 (width 256, 12 layers, 8 heads), Adam lr 1e-4, batch 64, 500k steps with
# Garg's curriculum (their `conf/base.yaml`, `conf/linear_regression.yaml`); they compare
# Newton k = 1 … 23 and GD steps up to 2^12 (their `eval_similarity.py`).
PAPER: dict[str, Any] = {
    "d": 20,
    "n_points": 41,
    "n_embd": 256,
    "n_layer": 12,
    "n_head": 8,
    "train": GARG_TRAIN.model_dump(),
    "curriculum": CurriculumConfig().model_dump(),
    "newton_steps": 23,
    "gd_steps": 4096,
    "probe_prompts": 8192,
    "identify_prompts": 8192,
}


class Tolerances(Config):
    """The claims' thresholds, fixed from Fu et al.'s statements before any default run (the
    reasons are in `HigherOrder.claims`)."""

    probe_r2: Annotated[float, Field(gt=0, lt=1)] = 0.5  # layers fitted: y_q probe R² ≥ this
    least_squares_gap: PositiveFloat = 0.1  # query error − least squares' ≤ this
    newton_slope: PositiveFloat = 0.5  # matched Newton k per layer ≥ this
    newton_fit_r2: Annotated[float, Field(gt=0, le=1)] = 0.8  # linear fit of k_Newton: R² ≥ this
    ratio_slope: PositiveFloat = 0.25  # log₂(GD steps / Newton steps) per layer ≥ this


class HigherOrderConfig(ExperimentConfig):
    """Settings of `higher-order`; every one can be overridden with `--set key=value`.

    `d`, `n_points`: the prompts (isotropic x ~ N(0, I_d), w ~ N(0, I_d), noiseless); the probes
    read the query `x_{n_points}` after n_points − 1 context points. `n_embd`, `n_layer`,
    `n_head`: the GPT. `train`, `curriculum`: its training (Garg's loss over all prefixes;
    curriculum None: every batch has d dimensions and n_points points). `newton_steps`,
    `gd_steps`: the iterations K compared with each layer; `gd_eta`: GD's step on
    `Ŝ = XᵀX/n`, shared by all prompts (None: `1/(2(1 + √(d/n))²)`, half the inverse of the
    Marchenko–Pastur upper edge of Ŝ's spectrum; see `eta`); Newton's α is `1/‖Ŝ‖₂²` per
    prompt. `tie_tol`: iterates whose SimE is within this of a layer's best tie,
    and the fewest steps among them is the match. `probe_prompts`: fitting prompts of the
    probes (as many held out). `identify_algorithms`, `identify_prompts`,
    `identify_bootstrap`: `identify` on the final output. `test_batch_size`: prompts of the
    error-per-prefix test.
    """

    preset: Literal["cpu", "paper"] = "cpu"
    d: Annotated[int, Field(ge=2, le=64)] = 3
    n_points: Annotated[int, Field(ge=3, le=256)] = 7
    n_embd: Annotated[int, Field(ge=8, le=4096)] = 64
    n_layer: Annotated[int, Field(ge=3, le=64)] = 6
    n_head: Annotated[int, Field(ge=1, le=64)] = 4
    train: TrainConfig = CPU_TRAIN
    curriculum: CurriculumConfig | None = CPU_CURRICULUM
    newton_steps: Annotated[int, Field(ge=1, le=64)] = 20
    gd_steps: Annotated[int, Field(ge=1, le=8192)] = 1024
    gd_eta: Annotated[float, Field(gt=0, le=10)] | None = None
    tie_tol: Annotated[float, Field(ge=0, le=0.1)] = 1e-9
    probe_prompts: Annotated[int, Field(ge=64, le=200_000)] = 4096
    identify_algorithms: Annotated[tuple[str, ...], Field(min_length=1)] = IDENTIFY_ALGORITHMS
    identify_prompts: Annotated[int, Field(ge=64, le=200_000)] = 4096
    identify_bootstrap: Annotated[int, Field(ge=0, le=1000)] = 16
    test_batch_size: Annotated[int, Field(ge=16, le=200_000)] = 2000
    tolerances: Tolerances = Tolerances()

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        return apply_preset(cls, data, "paper", PAPER)

    @model_validator(mode="after")
    def _check(self) -> HigherOrderConfig:
        from icgd.analysis.identify import CANDIDATES

        unknown = [a for a in self.identify_algorithms if a not in CANDIDATES]
        if unknown or len(set(self.identify_algorithms)) != len(self.identify_algorithms):
            raise ValueError(
                f"identify_algorithms: distinct names from {', '.join(CANDIDATES)}; "
                f"got {list(self.identify_algorithms)}"
            )
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"n_embd: must be divisible by n_head={self.n_head}")
        check_curriculum(self.curriculum, self.d, self.n_points, self.train)
        return self

    @property
    def n_context(self) -> int:
        """Context points before the probed query."""
        return self.n_points - 1

    @property
    def eta(self) -> float:
        """GD's step: `gd_eta`, or half the inverse Marchenko–Pastur edge, `1/(2(1 + √(d/n))²)`.

        GD with a step η shared by all prompts diverges on a prompt with `‖Ŝ‖₂ > 2/η`, and one
        such prompt's iterates (e.g. 1e130 at k = 512) swamp every SimE and calibration fit of
        later iterates. At the edge itself, η = 1/(1 + √(d/n))², that happened to 1.4e−4 of
        prompts at d = 3, n = 6 (2·10⁶ drawn; 1 in the 8192 probe prompts); at half of it,
        to none of 2·10⁶ (`‖Ŝ‖₂` above 4× the edge), at d/n = 1/2 or 2/5.
        """
        if self.gd_eta is not None:
            return self.gd_eta
        return 0.5 / (1.0 + math.sqrt(self.d / self.n_context)) ** 2

    def task(self, device, dtype) -> FunctionClass:
        """Noiseless isotropic linear regression (Garg et al.'s linear class)."""
        return linear_task(self.d, self.n_points, device, dtype)

    def gpt_config(self) -> GPTConfig:
        return GPTConfig(
            d_in=self.d,
            max_points=self.n_points,
            size=None,
            n_embd=self.n_embd,
            n_layer=self.n_layer,
            n_head=self.n_head,
        )
