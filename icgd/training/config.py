"""Typed configs of the training loop: optimizer, learning-rate schedule, and the loop itself.

Defaults follow the recipe that trains linear self-attention in the Ahn et al. setting (SPEC §1.2):
Adam, lr 0.01 halved every ~1000 steps, per-matrix gradient clipping, a fresh batch of thousands
of prompts every step (or every ~100 steps), float32.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

from icgd.core.config import Config

UnitInterval = Annotated[float, Field(ge=0.0, lt=1.0)]


class OptimizerConfig(Config):
    """Which optimizer and its hyper-parameters.

    `weight_decay` is coupled L2 for `adam` and `sgd` (added to the gradient) and decoupled for
    `adamw` (torch's conventions). `momentum` is used by `sgd` only, so it must stay 0 otherwise.
    """

    kind: Literal["adam", "adamw", "sgd"] = "adam"
    lr: PositiveFloat = 0.01
    weight_decay: NonNegativeFloat = 0.0
    betas: tuple[UnitInterval, UnitInterval] = (0.9, 0.999)
    momentum: UnitInterval = 0.0

    @model_validator(mode="after")
    def _momentum_is_sgd_only(self) -> OptimizerConfig:
        if self.momentum != 0.0 and self.kind != "sgd":
            raise ValueError(
                f"momentum is used by kind='sgd' only (got kind={self.kind!r}, "
                f"momentum={self.momentum}); set momentum=0 or kind='sgd'"
            )
        return self


class ScheduleConfig(Config):
    """Learning-rate schedule, as a factor on the base lr at update t (0-based).

    - `constant`: 1.
    - `step_halving`: 0.5^⌊t/every⌋ (the lr halves every `every` updates).
    - `cosine`: min + (1 − min)(1 + cos(π t/T))/2 with T the total number of steps and
      min = `min_lr_ratio`; held at min for t ≥ T.
    """

    kind: Literal["constant", "step_halving", "cosine"] = "constant"
    every: PositiveInt = 1000
    min_lr_ratio: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0


class TrainConfig(Config):
    """The training loop.

    - `steps`: number of optimizer updates.
    - `batch_size`: prompts per training batch; `resample_every`: draw a fresh batch every k
      updates (k = 1: online SGD on fresh data; k > 1 reuses one batch for k updates).
    - `clip_norm`: per-matrix clipping — each parameter tensor's gradient is rescaled separately,
      g ← g·min(1, c/‖g‖_F); `None` disables it.
    - `eval_every` / `eval_batch_size`: held-out loss every k updates (and at step 0 and the end).
    - `checkpoint_every`: write a checkpoint every k updates, and always at the end.
    """

    steps: PositiveInt = 2000
    batch_size: PositiveInt = 4096
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    clip_norm: PositiveFloat | None = None
    resample_every: PositiveInt = 1
    eval_every: PositiveInt = 100
    eval_batch_size: PositiveInt = 8192
    checkpoint_every: PositiveInt = 1000
