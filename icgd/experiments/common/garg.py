"""Pieces shared by the experiments in Garg et al.'s function-class setting (2022): a GPT-style
model reads `x_1, y_1, …, x_n, y_n` and predicts every `y_k` from the prefix before it.

`function-classes`, `looped-transformer` (Yang et al. 2024) and `higher-order` (Fu et al. 2024)
train on these prompts with the same optimiser recipes and Garg's curriculum:

- `GARG_TRAIN`: Garg et al.'s recipe (their `conf/base.yaml`): Adam lr 1e-4, batch 64, 500k
  steps at a constant rate, fresh prompts every step; the `preset=paper` of each experiment;
- `cpu_train(steps, checkpoint_every)`: the CPU recipe they share: Adam lr 1e-3 with a cosine
  decay, batch 128 fresh prompts per update (each experiment's docstring has its measurements);
- `linear_task`: Garg's noiseless isotropic linear class at (d, n_points);
- `check_curriculum`: a curriculum must end inside the task, and needs fresh prompts each step.
"""

from __future__ import annotations

from icgd.tasks import CurriculumConfig, FunctionClass, FunctionClassConfig
from icgd.training import OptimizerConfig, TrainConfig
from icgd.training import ScheduleConfig as LRScheduleConfig


def _adam(steps: int, lr: float, batch: int, schedule: str, every: tuple[int, int, int]):
    eval_every, eval_batch_size, checkpoint_every = every
    return TrainConfig(
        steps=steps,
        batch_size=batch,
        optimizer=OptimizerConfig(kind="adam", lr=lr),
        schedule=LRScheduleConfig(kind=schedule),
        clip_norm=None,
        resample_every=1,
        eval_every=eval_every,
        eval_batch_size=eval_batch_size,
        checkpoint_every=checkpoint_every,
    )


GARG_TRAIN = _adam(500_000, 1e-4, 64, "constant", (1000, 1280, 10_000))


def cpu_train(steps: int, checkpoint_every: int) -> TrainConfig:
    """Adam lr 1e-3, cosine decay, batch 128 fresh prompts, evaluated every 250 updates."""
    return _adam(steps, 1e-3, 128, "cosine", (250, 1000, checkpoint_every))


def linear_task(d: int, n_points: int, device, dtype) -> FunctionClass:
    """Noiseless isotropic linear regression, x ~ N(0, I_d), w ~ N(0, I_d) (Garg's `linear`)."""
    config = FunctionClassConfig(kind="linear", d=d, n_points=n_points)
    return FunctionClass(config, device=device, dtype=dtype)


def check_curriculum(
    curriculum: CurriculumConfig | None, d: int, n_points: int, train: TrainConfig
) -> None:
    """ValueError naming the field if the curriculum ends past (d, n_points) or the prompts are
    reused across steps (the curriculum changes them every step)."""
    if curriculum is None:
        return
    if curriculum.dims.end > d:
        raise ValueError(f"curriculum: dims.end must be <= d={d}")
    if curriculum.points.end > n_points:
        raise ValueError(f"curriculum: points.end must be <= n_points={n_points}")
    if train.resample_every != 1:
        raise ValueError("train.resample_every: must be 1 with a curriculum")
