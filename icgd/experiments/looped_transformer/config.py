"""The config of `looped-transformer`: sizes of both models, the CPU and paper presets, the
curricula and the claims' tolerances (Yang et al. 2024; the module docstring of `experiment.py`
describes what runs)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, PositiveFloat, model_validator

from icgd.core.config import Config
from icgd.experiments.api import ExperimentConfig
from icgd.experiments.common import apply_preset
from icgd.experiments.common.garg import GARG_TRAIN, check_curriculum, cpu_train, linear_task
from icgd.models import GPTConfig, LoopedConfig
from icgd.tasks import CurriculumConfig, FunctionClass, ScheduleConfig
from icgd.training import TrainConfig

# CPU recipe (both models): d = 2, 5 points, Adam lr 1e-3 with a cosine decay, batch 128 fresh
# prompts per update, 2000 updates; the looped model with a loop curriculum b = 1 → 10 (+1 every
# 150 updates). Measured, seed 0 (error at k ≥ d, looped / GPT; one core, the other busy):
# - Since the GPT read-in/out keep nn.Linear's init (Garg et al.'s code; `icgd.models.gpt`), the
#   GPT leaves the initial plateau within a few hundred updates; with the old N(0, 0.02²) read-in
#   neither model did at d = 5 in 1500 updates, and the previous recipe here (lr 3e-4, batch 256,
#   600 updates) now leaves both on it (0.95 / 0.79: claims 1 and 3 "pass" vacuously).
# - This recipe, without the loop curriculum: 0.61 / 0.16 (274 s); the looped model learns far
#   more slowly than the GPT.
# - This recipe: 0.42 / 0.16 (291 s): looped / GPT 2.5 (claim ≤ 2 fails), flat past b (1.10),
#   models / baselines at k = 2d 0.52 (claim ≤ 0.5 fails narrowly).
# - 3000 updates, loop curriculum +1 every 200: 0.30 / 0.08: the GPT improves faster (ratio 3.7)
#   and the looped error is no longer flat past b (1.48).
# A CPU budget does not give the looped model the many updates Yang et al. train it for: the
# paper's claims need `preset=paper` (GPU).
CPU_TRAIN = cpu_train(steps=2000, checkpoint_every=1000)
CPU_LOOP_CURRICULUM = ScheduleConfig(start=1, end=10, inc=1, interval=150)

PAPER: dict[str, Any] = {
    "d": 20,
    "n_points": 41,
    "n_embd": 256,
    "n_head": 8,
    "n_loops": 30,
    "grad_last": 15,
    "depth": 12,
    "train": GARG_TRAIN.model_dump(),  # Yang et al. train as Garg et al. (GPU)
    "curriculum": CurriculumConfig().model_dump(),
    # ours: b from 1 to 30, +1 every 500 steps (SPEC: "b follows a curriculum")
    "loop_curriculum": ScheduleConfig(start=1, end=30, inc=1, interval=500).model_dump(),
}


class Tolerances(Config):
    """Tolerances of the claims, fixed before the default run was looked at (reasons in
    `claims`)."""

    error_factor: PositiveFloat = 2.0  # looped err_{k≥d} ≤ this × multi-layer's
    param_fraction: PositiveFloat = 0.5  # looped parameters ≤ this × multi-layer's
    loop_flatness: PositiveFloat = 0.1  # max_{t ∈ [b, 4b]} err(t)/err(b) ≤ 1 + this
    baseline_fraction: PositiveFloat = 0.5  # both models' err(2d) ≤ this × min(3-NN, averaging)


class LoopedTransformerConfig(ExperimentConfig):
    """Settings of `looped-transformer`; every one can be overridden with `--set key=value`.

    `d`, `n_points`: the regression task; `n_embd`, `n_head`: the width of both models;
    `n_loops` (b), `grad_last` (T): the looped model's training loops and loss window; `depth`:
    the GPT's layers; `train`: the optimizer budget of each model (the same for both);
    `test_loop_factor`: the looped model is tested for t = 1 … factor·b loops;
    `curriculum`, `loop_curriculum`: optional training curricula (module docstring).
    """

    preset: Literal["cpu", "paper"] = "cpu"
    d: Annotated[int, Field(gt=0, le=256)] = 2
    n_points: Annotated[int, Field(ge=2, le=1024)] = 5
    n_embd: Annotated[int, Field(gt=0, le=4096)] = 64
    n_head: Annotated[int, Field(gt=0, le=64)] = 2
    n_loops: Annotated[int, Field(gt=0, le=256)] = 10
    grad_last: Annotated[int, Field(gt=0, le=256)] = 5
    depth: Annotated[int, Field(gt=0, le=64)] = 4
    train: TrainConfig = CPU_TRAIN
    curriculum: CurriculumConfig | None = None
    loop_curriculum: ScheduleConfig | None = CPU_LOOP_CURRICULUM
    test_loop_factor: Annotated[int, Field(ge=1, le=16)] = 4
    test_batch_size: Annotated[int, Field(ge=16)] = 4000
    tolerances: Tolerances = Tolerances()

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        return apply_preset(cls, data, "paper", PAPER)

    @model_validator(mode="after")
    def _check(self) -> LoopedTransformerConfig:
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_embd: must be divisible by n_head={self.n_head}, got {self.n_embd}"
            )
        if self.grad_last > self.n_loops:
            raise ValueError(f"grad_last: must be <= n_loops={self.n_loops}, got {self.grad_last}")
        if self.n_points <= self.d:
            raise ValueError(
                f"n_points: must exceed d={self.d} (the claims score prefixes with k >= d "
                f"context points), got {self.n_points}"
            )
        check_curriculum(self.curriculum, self.d, self.n_points, self.train)
        if self.loop_curriculum is not None and self.loop_curriculum.end != self.n_loops:
            raise ValueError(
                f"loop_curriculum: end must equal n_loops={self.n_loops} (the model is trained "
                f"and tested at b = n_loops), got {self.loop_curriculum.end}; set "
                "loop_curriculum.end, or loop_curriculum=null for none"
            )
        if self.loop_curriculum is not None and self.train.resample_every != 1:
            raise ValueError("train.resample_every: must be 1 with a curriculum")
        return self

    def task(self, device, dtype) -> FunctionClass:
        return linear_task(self.d, self.n_points, device, dtype)

    def looped_config(self) -> LoopedConfig:
        return LoopedConfig(
            d_in=self.d,
            max_points=self.n_points,
            size=None,
            n_embd=self.n_embd,
            n_head=self.n_head,
            n_blocks=1,
            n_loops=self.n_loops,
            grad_last=self.grad_last,
        )

    def gpt_config(self) -> GPTConfig:
        return GPTConfig(
            d_in=self.d,
            max_points=self.n_points,
            size=None,
            n_embd=self.n_embd,
            n_head=self.n_head,
            n_layer=self.depth,
        )
