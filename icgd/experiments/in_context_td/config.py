"""The config of `in-context-td`: the Markov reward processes, the model, the multi-task TD
training recipe, the analysis sizes and the claim tolerances."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from icgd.core.config import Config
from icgd.experiments.api import ExperimentConfig
from icgd.tasks import MarkovRewardConfig
from icgd.training import OptimizerConfig, TrainConfig


class Tolerances(Config):
    """Thresholds of the claims, fixed before the default run was looked at (reasons in
    `InContextTD.claims`)."""

    p_mass: Annotated[float, Field(gt=0, le=1)] = 0.5
    q_mass: Annotated[float, Field(gt=0, le=1)] = 0.5
    q_pair_cos: Annotated[float, Field(ge=0, le=2)] = 0.2
    relative_msve: PositiveFloat = 0.1
    fall_z: PositiveFloat = 4.0


class InContextTDConfig(ExperimentConfig):
    """Settings of `in-context-td`; every one can be overridden with `--set key=value`.

    The task: `d` features, `s` states, context length `n`, discount `gamma`, `mrp` (transition
    family) and `rewards` ("random" U(−1, 1) or "representable" r = (I − γP)Φw). The model:
    `n_layers` (loops when `looped`), `activation`, `init_std`. Training: `processes` Markov
    reward processes, each giving `minibatch` windows used for `minibatches_per_process` Adam
    steps (lr `lr`, coupled weight decay `weight_decay`), `processes_per_batch` processes per
    step (1: the reference's one process at a time); `eval_every` (steps) for the tracked weight
    measures, `snapshots` P/Q heat maps along training. Analysis: `eval_processes` per
    evaluation set; `model_context_lengths`: the trained model's MSVE-vs-context-length curve (on
    the training reward law); `context_lengths`, `curve_rewards`: the TD transformer's and
    explicit TD's curve (claim 4); `construction_alpha`, `construction_layers`: the TD
    transformer (15 layers and step 0.2: the reference code's `demo.py` defaults).
    """

    dtype: Literal["float32", "float64"] = "float32"
    d: Annotated[int, Field(ge=1, le=64)] = 4
    s: Annotated[int, Field(ge=3, le=1000)] = 10
    n: Annotated[int, Field(ge=1, le=1000)] = 30
    gamma: Annotated[float, Field(ge=0, lt=1)] = 0.9
    mrp: Literal["boyan", "loop", "random_walk"] = "boyan"
    rewards: Literal["random", "representable"] = "random"
    n_layers: Annotated[int, Field(ge=1, le=64)] = 3
    looped: bool = True
    activation: Literal["linear", "softmax", "relu"] = "linear"
    init_std: PositiveFloat = 0.03
    processes: Annotated[int, Field(ge=1, le=10_000_000)] = 4000
    minibatch: Annotated[int, Field(ge=1, le=100_000)] = 64
    minibatches_per_process: Annotated[int, Field(ge=1, le=1000)] = 5
    processes_per_batch: Annotated[int, Field(ge=1, le=100_000)] = 1
    lr: PositiveFloat = 1e-3
    weight_decay: Annotated[float, Field(ge=0)] = 1e-6
    eval_every: Annotated[int, Field(ge=1)] = 250
    snapshots: Annotated[int, Field(ge=2, le=12)] = 5
    eval_processes: Annotated[int, Field(ge=2, le=100_000)] = 512
    model_context_lengths: list[PositiveInt] = [5, 10, 20, 30, 40, 80]
    context_lengths: list[PositiveInt] = [1, 2, 5, 10, 20, 40, 80]
    curve_rewards: Literal["random", "representable"] = "representable"
    construction_alpha: PositiveFloat = 0.2
    construction_layers: Annotated[int, Field(ge=1, le=1000)] = 15
    tolerances: Tolerances = Tolerances()

    @model_validator(mode="after")
    def _check(self) -> InContextTDConfig:
        for field in ("context_lengths", "model_context_lengths"):
            lengths = getattr(self, field)
            if len(lengths) < 2 or sorted(set(lengths)) != list(lengths):
                raise ValueError(f"{field}: must be at least two increasing lengths, got {lengths}")
        if self.processes % self.processes_per_batch:
            raise ValueError(
                f"processes: must be a multiple of processes_per_batch="
                f"{self.processes_per_batch}, got {self.processes}"
            )
        return self

    def task_config(self) -> MarkovRewardConfig:
        return MarkovRewardConfig(
            kind=self.mrp, s=self.s, d=self.d, gamma=self.gamma, rewards=self.rewards
        )

    def train_config(self) -> TrainConfig:
        steps = self.processes // self.processes_per_batch * self.minibatches_per_process
        return TrainConfig(
            steps=steps,
            batch_size=self.minibatch,
            optimizer=OptimizerConfig(kind="adam", lr=self.lr, weight_decay=self.weight_decay),
            resample_every=self.minibatches_per_process,
            eval_every=self.eval_every,
            eval_batch_size=self.minibatch,
            checkpoint_every=max(steps // 4, 1),
        )
