"""What every experiment provides (`Experiment`), what the runner hands it, and the registry.

An experiment is one package `icgd/experiments/<name>/` (or a plugin's, found through the
entry-point group `icgd.experiments`) whose object satisfies the `Experiment` protocol:

- `name`, `summary` (one line for `icgd list`), `paper` (authors, year);
- `Config`: its closed config class, derived from `ExperimentConfig`;
- `presets`: named lists of `key=value` overrides (`icgd run NAME --preset smoke`); `smoke` is
  required and must finish in seconds: the contract suite runs it for every registered
  experiment;
- `run(config, ctx) -> Outcome`: train / evaluate; metrics, arrays and a status;
- `claims(config, metrics) -> list[Claim]`: the paper's claims for whatever setting ran, each
  with measured value, expected value and tolerance, so they can be recomputed from result.json;
- `figures(run_dir, result, out) -> list[Path]`: draw from the saved run folder only (matplotlib
  is imported inside, so listing or running experiments never imports it);
- `memory(config) -> MemoryEstimate | None`: the bytes the configured sizes need at their peak,
  checked by the runner against the device before anything is allocated.

Optional: `task(config, sub="") -> Task`, the task the model saved in the run folder's `sub`
folder was trained on (same law, same rotation), so tools such as `icgd identify` can draw fresh
prompts for a saved model (`task_for`); `known_answer(config, metrics, sub, task) -> dict | None`,
the algorithm that model is known to run, which `icgd identify` turns into claims
(`known_answer_for`).

The experiment knows nothing of folders' life, seeds, sweeps or signals: that is `icgd.runs`.
Built-in experiments are found by scanning this package: every sub-package whose `__init__`
defines `EXPERIMENT`. Nothing else lists them.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

import torch
from pydantic import Field, field_validator

from icgd.core.config import Config
from icgd.core.errors import InputError
from icgd.core.registry import Registry
from icgd.core.results import Claim, Metric, Result

__all__ = [
    "EXPERIMENTS",
    "Experiment",
    "ExperimentConfig",
    "MemoryEstimate",
    "Outcome",
    "RunContext",
    "known_answer_for",
    "task_for",
]


class ExperimentConfig(Config):
    """Fields every experiment has: the run seed, the device and the floating-point type.

    `compile`: run the training steps' loss through `torch.compile` (`icgd.training.train`'s
    `compile`); it changes speed, not the math (numbers agree with eager up to floating-point
    reassociation). Refused together with `seeds` (a seed ensemble trains stacked under `vmap`).

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
    # (`icgd.runs.seeds`). None: a single run with `seed`.
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


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak bytes a configured run needs, and the config fields to shrink when it is too much.

    `parts` names the big allocations (label → bytes), e.g. `{"training batches": …}`; `fields`
    lists the dotted config keys that set them (`train.batch_size`, `test_batch_size`, `n`, …).
    """

    parts: Mapping[str, int]
    fields: Sequence[str]

    @property
    def total(self) -> int:
        return int(sum(self.parts.values()))


@dataclass
class RunContext:
    """What the runner gives an experiment: where to write, whether to resume, how to report,
    whether the trainer compiles its training step (`ExperimentConfig.compile`), whether it
    writes TensorBoard events (`ExperimentConfig.tensorboard`; see `tensorboard_dir`), and the
    trainer to train with.

    `trainer`: a callable with the signature of `icgd.training.train`; None means that plain
    `train`. A seed of an ensemble gets its seat at the ensemble's rendezvous
    (`icgd.training.rendezvous.Seat`), so its models train stacked with the other seeds' without
    the experiment knowing (this module imports nothing of `icgd.training`, hence None).
    """

    run_dir: Path
    resume: bool = False
    compile: bool = False
    tensorboard: bool = False
    progress: Callable[[str, int, int, dict], None] | None = None  # (task, step, total, record)
    trainer: Callable[..., Any] | None = None

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


@runtime_checkable
class Experiment(Protocol):
    """The contract of an experiment (module docstring)."""

    name: str
    summary: str
    paper: str
    Config: type[ExperimentConfig]
    presets: Mapping[str, Sequence[str]]

    def run(self, config: Any, ctx: RunContext) -> Outcome: ...

    def claims(self, config: Any, metrics: dict[str, Metric]) -> list[Claim]: ...

    def figures(self, run_dir: Path, result: Result, out: Path) -> list[Path]: ...

    def memory(self, config: Any) -> MemoryEstimate | None: ...


_TEXT = ("summary", "paper")
_METHODS = ("run", "claims", "figures", "memory")


def _prepare(name: str, obj: Any) -> Experiment:
    """An experiment class is instantiated; the result must satisfy the protocol."""
    experiment = obj() if isinstance(obj, type) else obj
    missing = [a for a in ("name", *_TEXT, "Config", "presets") if not hasattr(experiment, a)]
    missing += [m for m in _METHODS if not callable(getattr(experiment, m, None))]
    if missing:
        raise InputError(
            "experiment", f"{name!r} lacks {', '.join(missing)} (see icgd.experiments.api)"
        )
    if experiment.name != name:
        raise InputError(
            "experiment", f"{name!r} is registered under another name: {experiment.name!r}"
        )
    if not (
        isinstance(experiment.Config, type) and issubclass(experiment.Config, ExperimentConfig)
    ):
        raise InputError("experiment", f"{name!r}: Config must derive from ExperimentConfig")
    if "smoke" not in experiment.presets:
        raise InputError("experiment", f"{name!r} has no 'smoke' preset")
    return experiment


def _builtin_packages() -> Iterator[tuple[str, Any]]:
    """Every sub-package of `icgd.experiments` that defines `EXPERIMENT`."""
    package = importlib.import_module("icgd.experiments")
    for info in pkgutil.iter_modules(package.__path__):
        if not info.ispkg:
            continue
        module = importlib.import_module(f"icgd.experiments.{info.name}")
        experiment = getattr(module, "EXPERIMENT", None)
        if experiment is not None:
            yield experiment.name, experiment


EXPERIMENTS: Registry[Experiment] = Registry(
    "experiment", "icgd.experiments", builtins=_builtin_packages, prepare=_prepare
)


def task_for(experiment: Experiment, config: Any, sub: str = "") -> Any:
    """The task of the model in `sub` of a run of `experiment` with `config` (the optional
    `task` method); a one-line error naming the experiment when it has none."""
    method = getattr(experiment, "task", None)
    if method is None:
        raise InputError(
            "source", f"{experiment.name!r} does not say which task its models were trained on"
        )
    return method(config, sub)


def known_answer_for(
    experiment: Experiment, config: Any, metrics: dict, sub: str, task: Any
) -> dict | None:
    """What the model in `sub` of a run is known to compute, for `icgd identify`'s claims (the
    optional `known_answer(config, metrics, sub, task)` method): a dict of the fields of
    `icgd.experiments.identify.sources.Expected`, or None when the experiment knows no answer."""
    method = getattr(experiment, "known_answer", None)
    return None if method is None else method(config, metrics, sub, task)
