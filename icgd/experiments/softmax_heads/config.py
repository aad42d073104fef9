"""The config of `softmax-heads`: sizes, the softmax model's and the LSA's training recipes, the
test context lengths and the claim tolerances."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, NonNegativeFloat, PositiveInt, model_validator

from icgd.core.config import Config
from icgd.experiments.api import ExperimentConfig
from icgd.experiments.common import regression_task_config
from icgd.tasks import LinearRegressionConfig
from icgd.training import OptimizerConfig, ScheduleConfig, TrainConfig

# AdamW with weight decay 1.0 for the softmax model, plain Adam for the LSA: the recipe table and
# the reasons are in the docstring of `icgd.experiments.softmax_heads.experiment`.
DEFAULT_TRAIN = TrainConfig(
    steps=2000,
    batch_size=1024,
    optimizer=OptimizerConfig(kind="adamw", lr=0.01, weight_decay=1.0),
    schedule=ScheduleConfig(kind="cosine"),
    clip_norm=None,
    resample_every=1,
    eval_every=100,
    eval_batch_size=4096,
    checkpoint_every=500,
)
DEFAULT_LSA_TRAIN = DEFAULT_TRAIN.model_copy(
    update={"optimizer": OptimizerConfig(kind="adam", lr=0.01)}
)


class Tolerances(Config):
    """Tolerances of the claims, fixed before the default run was looked at. Why these values:

    - max_h Dist(KQ_h[:d,:d], I) ≤ 0.2: Dist² is the share of ‖KQ_h[:d,:d]‖² off the identity
      direction, so 0.2 leaves ≥ 96% of it on ω_h I; SGD noise of a 1024-prompt batch keeps
      off-diagonal entries of a few % of ω (lead's scratch run: off-diagonal norms 0.05–0.09 vs
      ‖ω I‖ ≈ 0.63), so a much tighter bound would test the optimiser's noise floor. (The
      recipe probes then showed Dist up to 0.22 without weight decay: see the module docstring.)
    - y-row/column mass ≤ 0.2 of ‖KQ_h‖, per head: the same 4%-of-the-squared-norm allowance.
    - effective x-readout ‖Σ_h o_h[:d]‖ ≤ 0.1·‖o[:, d]‖: 10% of the label readout, the
      5% allowance of a non-GD path in `looped-gd`/`one-step-gd` doubled, since the x-entries
      sit in near-flat directions set by the optimiser's noise, not at an exact zero of the
      optimum (the head-sum cancelled to ≈ 0.01 in every recipe probe, with or without decay).
    - per head ‖o_h[:d]‖ ≤ 0.1·‖o_h‖: the same 10%; it holds only because of the weight decay
      of the default recipe (module docstring) and is expected to fail without it.
    - zero-sum |Σ_h μ_h| ≤ 0.1·Σ_h |μ_h|: a 10% imbalance would leave a ȳ-readout of that size.
    - R²: debiased > plain (paired on the same prompts, tolerance 0) and R²(debiased) ≥ 0.8:
      the trained |ω| ≈ 0.28–0.36 gives `ω² Var(x_ℓᵀ x_q) ≈ 0.4–0.65`, so the first-order
      expansion leaves an O(ω³) remainder of a few tens of % of the signal; 0.8: the debiased
      step explains most of the variance without pretending the expansion is exact.
    - length: softmax MSE at 2n ≤ MSE at n (ratio ≤ 1, no tolerance: a paired comparison,
      and the expected drop is ~40%); fixed-scale linear attention MSE at 2n > MSE at n
      (ratio ≥ 1, no tolerance; theory predicts ≈ 2.8).
    - first-order step Σ_h μ_h ω_h within 7.5% (relative) of m* = n b / (n b + d (b + σ²)), and
      the test MSE at n within 7.5% of the MC floor (debiased one-step GD at m* on the same test
      prompts): set from seeds 1 and 2 of this recipe, measured before these claims existed (step
      0.8146 in both, +1.9% over m* = 0.7997; test MSE at n 1.243 and 1.232, +2.6% and +1.7% over
      the exact floor 1.2115, whose MC estimate has an SE of ≈ 1%). The gap is systematic (the
      O(ω³) remainder; the weight decay's ≈ 1.6% MSE bias), so 7.5% ≈ 3× the largest measured gap,
      and still below the 10% error the tests require it to catch.
    """

    kq_dist: NonNegativeFloat = 0.2  # max_h Dist(KQ_h[:d,:d], I) ≤ this
    y_mass: NonNegativeFloat = 0.2  # max_h ‖(KQ_h[d,:], KQ_h[:d,d])‖/‖KQ_h‖ ≤ this
    ov_sum_x: NonNegativeFloat = 0.1  # ‖Σ_h o_h[:d]‖ / ‖o[:, d]‖ ≤ this
    ov_x: NonNegativeFloat = 0.1  # max_h ‖o_h[:d]‖ / ‖o_h‖ ≤ this
    zero_sum: NonNegativeFloat = 0.1  # |Σ_h o_h[d]| / Σ_h |o_h[d]| ≤ this
    r2_debiased: NonNegativeFloat = 0.8  # R²(debiased GD) ≥ this
    step: NonNegativeFloat = 0.075  # |Σ_h μ_h ω_h − m*| ≤ this · m*
    mse_floor: NonNegativeFloat = 0.075  # |MSE(softmax, n) − MC floor| ≤ this · floor


class SoftmaxHeadsConfig(ExperimentConfig):
    """Settings of `softmax-heads`; every one can be overridden with `--set key=value`.

    `test_lengths` None means (n//2, n, 2n, 4n); given, it must contain n and 2n (the length
    claims compare those two). `train`/`init_std`: the softmax model's recipe;
    `lsa_train`/`lsa_init_std`: the LSA's (the module docstring says why they differ).
    """

    d: Annotated[int, Field(gt=0, le=256)] = 5
    n: Annotated[int, Field(ge=2, le=10_000)] = 20
    n_heads: Annotated[int, Field(ge=2, le=64)] = 4
    noise_std: NonNegativeFloat = 0.1
    init_std: NonNegativeFloat = 0.02
    lsa_init_std: NonNegativeFloat = 0.02
    train: TrainConfig = DEFAULT_TRAIN
    lsa_train: TrainConfig = DEFAULT_LSA_TRAIN
    test_batch_size: Annotated[int, Field(ge=16)] = 16384
    test_lengths: tuple[PositiveInt, ...] | None = None
    tolerances: Tolerances = Tolerances()

    @model_validator(mode="after")
    def _lengths_are_valid(self) -> SoftmaxHeadsConfig:
        if self.test_lengths is not None:
            missing = {self.n, 2 * self.n} - set(self.test_lengths)
            if missing:
                raise ValueError(
                    f"test_lengths: must contain n = {self.n} and 2n = {2 * self.n} "
                    f"(the length claims compare them), got {list(self.test_lengths)}"
                )
        self.task_config()
        return self

    @property
    def lengths(self) -> tuple[int, ...]:
        if self.test_lengths is not None:
            return tuple(sorted(set(self.test_lengths)))
        return tuple(sorted({max(1, self.n // 2), self.n, 2 * self.n, 4 * self.n}))

    def task_config(self, n: int | None = None) -> LinearRegressionConfig:
        return regression_task_config(d=self.d, n=n or self.n, noise_std=self.noise_std)
