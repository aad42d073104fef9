"""What every experiment provides, and what the runner hands it.

An experiment is a class registered with `@register(name)` that has
- `Config`: its closed config class (derived from `ExperimentConfig`),
- `summary`: one line for `icgd list`,
- `paper`: the paper (authors, year) whose claims it checks, for the README's status table,
- `run(config, ctx) -> Outcome`: trains/evaluates and returns metrics and arrays,
- `check(config, metrics) -> list[Claim]`: the paper's claims, each with measured value,
  expected value and tolerance, computed for whatever setting ran.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import torch
from pydantic import Field, field_validator

from icgd.core.config import Config
from icgd.core.results import Claim, Metric


class ExperimentConfig(Config):
    """Fields every experiment has: the run seed, the device and the floating-point type.

    `compile`: run the training steps' loss through `torch.compile` (`icgd.training.train`'s
    `compile`); it changes speed, not the math (numbers agree with eager up to floating-point
    reassociation). Ignored by seed ensembles, which train stacked under `vmap`.

    `tensorboard`: also write TensorBoard events of every training run into the run folder's
    `tensorboard/` (a model trained into a sub-folder, e.g. looped-gd's `stacked/`, into
    `tensorboard/stacked/`; each seed of an ensemble into its own `seed{k}/tensorboard/`):
    scalars `train/loss`, `train/lr`, `train/grad_norm`, `eval/loss`, `eval/<tracked metric>`
    and weight heat maps at checkpoints (`icgd.training.tensorboard`). Needs the optional
    package (`pip install icgd[track]`); changes what is logged, not the numbers.
    """

    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0  # torch generators take 64-bit seeds
    device: Literal["cpu", "cuda"] = "cpu"
    dtype: Literal["float32", "float64"] = "float32"
    compile: bool = False
    tensorboard: bool = False
    # A seed ensemble (`icgd run NAME --seeds 0-15`): train every seed in one process, stacked
    # (`icgd.experiments.seeds`). None: a single run with `seed`.
    seeds: list[Annotated[int, Field(ge=0, lt=2**63)]] | None = None

    @field_validator("seeds")
    @classmethod
    def _seeds_distinct(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or len(set(value)) != len(value)):
            raise ValueError("must be a non-empty list of distinct seeds, e.g. [0, 1, 2]")
        return value

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch.float64 if self.dtype == "float64" else torch.float32


@dataclass
class RunContext:
    """What the runner gives an experiment: where to write, whether to resume, how to report,
    whether the trainer compiles its training step (`ExperimentConfig.compile`) and whether it
    writes TensorBoard events (`ExperimentConfig.tensorboard`; see `tensorboard_dir`)."""

    run_dir: Path
    resume: bool = False
    compile: bool = False
    tensorboard: bool = False
    progress: Callable[[str, int, int, dict], None] | None = None  # (task, step, total, record)

    def tensorboard_dir(self, sub: str = "") -> Path | None:
        """The TensorBoard folder of a model trained into `run_dir / sub`: `run_dir/tensorboard`
        `/sub`; None when `tensorboard` is off."""
        if not self.tensorboard:
            return None
        folder = self.run_dir / "tensorboard"
        return folder / sub if sub else folder

    def progress_for(self, task: str) -> Callable[[int, int, dict], None] | None:
        """A trainer-shaped progress callback labelled with `task`."""
        if self.progress is None:
            return None
        report = self.progress
        return lambda step, total, record: report(task, step, total, record)


@dataclass
class Outcome:
    """What `run` returns: scalar/list metrics, tensors for `arrays.safetensors`, and a status."""

    metrics: dict[str, Metric]
    arrays: dict[str, torch.Tensor] = field(default_factory=dict)
    diverged: bool = False
    message: str = ""


class Experiment:
    """Base class (documentation of the contract; subclasses override everything)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    paper: ClassVar[str]
    Config: ClassVar[type[ExperimentConfig]]

    def run(self, config: Any, ctx: RunContext) -> Outcome:  # pragma: no cover - contract
        raise NotImplementedError

    def check(self, config: Any, metrics: dict[str, Metric]) -> list[Claim]:  # pragma: no cover
        raise NotImplementedError
