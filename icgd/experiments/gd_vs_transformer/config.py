"""The config of `gd-vs-transformer`: sizes, the two training recipes, the out-of-distribution
sweep and the claim tolerances."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat

from icgd.core.config import Config
from icgd.experiments.api import ExperimentConfig
from icgd.experiments.common import regression_task_config
from icgd.tasks import LinearRegressionConfig
from icgd.training import OptimizerConfig, ScheduleConfig, TrainConfig

# One layer: Adam lr 0.1, cosine decay over 2000 steps of 2048 fresh prompts, init N(0, 0.01²)
# (the one-step-gd recipe, shorter: d = n = 10 converges faster). Measured, seed 0: model cosine
# to line-searched GD 0.9999, loss within 0.03% of GD's; ≈ 15 s on 2 cores.
ONE_LAYER_TRAIN = TrainConfig(
    steps=2000,
    batch_size=2048,
    optimizer=OptimizerConfig(kind="adam", lr=0.1),
    schedule=ScheduleConfig(kind="cosine"),
    clip_norm=None,
    resample_every=1,
    eval_every=50,
    eval_batch_size=8192,
    checkpoint_every=500,
)

# Several layers: Adam lr 0.01, cosine decay over 2000 steps of 1024 fresh prompts, init
# N(0, 0.01²). Measured at d = n = 10, seed 0 (test losses: GD / GD++ / trained, same prompts):
# - depth 2 (this recipe, the default run): 1.246 / 0.830 / 0.742; model cosine to GD++ 0.991,
#   to GD 0.947. Layer 1 learns P ≈ I, Q ≈ [[−I, 0], [0, 0]] (a covariate step and a GD step at
#   once), layer 2 a pure GD step: the GD++ pattern of `lsa_from_gd_plus_plus_steps`.
# - depth 3, lr 0.01, init 1e-3, clip 0.01: 1.056 / 0.427 / 0.600, still falling at step 2000;
#   lr 0.003: 1.43 (worse than GD; the loss rose after step 300); lr 0.02, batch 2048: diverged
#   on a fraction of prompts. GD++'s fitted steps grow fast with depth (η ≈ 5, 2.7 at L = 2;
#   ≈ 22, 6, 8 at L = 3) because n = d makes Ŝ nearly singular, and the weights the model needs
#   grow with them: deeper models need longer, gentler training than a 3-minute default allows.
DEEP_TRAIN = TrainConfig(
    steps=2000,
    batch_size=1024,
    optimizer=OptimizerConfig(kind="adam", lr=0.01),
    schedule=ScheduleConfig(kind="cosine"),
    clip_norm=None,
    resample_every=1,
    eval_every=50,
    eval_batch_size=8192,
    checkpoint_every=500,
)

OOD_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)


class Tolerances(Config):
    """Tolerances of the claims, fixed before any run was looked at. Why these values:

    - one layer ≈ GD: model cosine ≥ 0.99. A one-layer LSA that is a GD step with Γ = cI has
      cosine exactly 1 whatever c; 0.99 allows Γ an angle of ~8° off the identity direction.
    - one layer's loss within 5% of the line-searched step's ("within a few %", as the issue
      and the paper state it); the optimum of one layer *is* that step for w ~ N(0, I) and
      isotropic inputs (Ahn et al. Thm 1), so a trained model should sit on it.
    - interpolation: the largest loss on the path at most 5% above the worse endpoint. Two
      models at the same minimum, in the same basin, give a flat path; a barrier means the
      trained model found a different solution.
    - deep beats GD: loss ≤ that of `depth` GD steps with the best constant step (no margin:
      GD is inside the model class, so any trained model that is no better has not learnt).
    - deep tracks GD++: model cosine ≥ 0.95 and loss within 20% of the fitted GD++'s. Looser
      than one layer (ours): GD++ has 2L scalars, the model 2L(d+1)² parameters, and the
      paper reports agreement, not identity; the loss claim is two-sided because "tracks"
      means neither much worse nor something else that is much better.
    - OOD: max over α of |loss_model(α) / loss_GD(α) − 1| ≤ 0.1 for the one-layer model:
      twice the in-distribution tolerance, because a step-size error δ shifts the loss by
      ~α²δ relative at α > 1, where the step is no longer at its optimum.
    """

    cosine: NonNegativeFloat = 0.01  # model cosine ≥ 1 − this
    loss_rel: NonNegativeFloat = 0.05  # one layer: |loss − loss_GD| ≤ this·loss_GD
    interpolation_rel: NonNegativeFloat = 0.05  # max loss on the path ≤ (1 + this)·endpoints'
    deep_cosine: NonNegativeFloat = 0.05  # deep model cosine to GD++ ≥ 1 − this
    deep_loss_rel: NonNegativeFloat = 0.2  # |loss_deep − loss_GD++| ≤ this·loss_GD++
    ood_rel: NonNegativeFloat = 0.1  # max_α |loss_model(α)/loss_GD(α) − 1| ≤ this


class GDvsTransformerConfig(ExperimentConfig):
    """Settings of `gd-vs-transformer`; every one can be overridden with `--set key=value`.

    `input_distribution="uniform"` draws `x ~ U(−1, 1)^d` (the paper); "gaussian" `x ~ N(0, I)`.
    `depth` is the number of layers of the multi-layer model (≥ 2). `ood_scales` are the input
    ranges α of the out-of-distribution sweep (`x ~ U(−α, α)^d`, or `α·N(0, I)`).
    """

    d: Annotated[int, Field(gt=0, le=256)] = 10
    n: Annotated[int, Field(gt=0, le=10_000)] = 10
    noise_std: NonNegativeFloat = 0.0
    input_distribution: Literal["uniform", "gaussian"] = "uniform"
    depth: Annotated[int, Field(ge=2, le=16)] = 2
    init_std: NonNegativeFloat = 0.01
    train: TrainConfig = ONE_LAYER_TRAIN
    train_deep: TrainConfig = DEEP_TRAIN
    ood_scales: tuple[PositiveFloat, ...] = Field(default=OOD_SCALES, min_length=1)
    interpolation_points: Annotated[int, Field(ge=2, le=101)] = 11
    test_batch_size: Annotated[int, Field(ge=16)] = 65536
    fit_batch_size: Annotated[int, Field(ge=16)] = 65536
    comparison_batch_size: Annotated[int, Field(ge=16)] = 8192
    tolerances: Tolerances = Tolerances()

    def task_config(self, input_scale: float = 1.0) -> LinearRegressionConfig:
        return regression_task_config(
            d=self.d,
            n=self.n,
            weight_prior="identity",
            noise_std=self.noise_std,
            input_distribution=self.input_distribution,
            input_scale=input_scale,
        )
