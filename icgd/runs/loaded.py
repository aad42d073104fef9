"""`load_run(folder)`: a finished (or unfinished) run folder as one typed Python object.

    run = icgd.load_run("runs/looped-gd/20261205-120000-seed0")
    run.status, run.config.loops, run.metrics["loss"], run.claims[0].passed
    run.arrays["A"]                 # tensors of arrays.safetensors
    run.model                       # the trained model, rebuilt from checkpoint.safetensors
    run.models["stacked"]           # a named sub-model (a checkpoint in a sub-folder)
    run.history                     # the records of metrics.jsonl
    run.seeds[3]                    # an ensemble's seed 3, itself a `Run`

Reads files only; tensors and models are loaded on first access.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from icgd.core.config import validate_config
from icgd.core.errors import InputError
from icgd.core.figures import read_arrays, read_metrics
from icgd.core.results import Claim, Metric, Result, read_result
from icgd.experiments.api import EXPERIMENTS
from icgd.training.checkpoint import CHECKPOINT_FILE, build_from_checkpoint

__all__ = ["Run", "load_run"]


@dataclass(frozen=True)
class Run:
    """A run folder: its result, its typed config, and lazily its arrays, history and models."""

    path: Path
    result: Result

    @property
    def experiment(self) -> str:
        return self.result.experiment

    @property
    def status(self) -> str:
        return self.result.status

    @property
    def metrics(self) -> dict[str, Metric]:
        return self.result.metrics

    @property
    def claims(self) -> list[Claim]:
        return self.result.claims

    @functools.cached_property
    def config(self) -> Any:
        """The saved config as the experiment's config class (a dict when the experiment is not
        registered here, e.g. a plugin that is not installed)."""
        if self.experiment not in EXPERIMENTS:
            return dict(self.result.config)
        cls = EXPERIMENTS.get(self.experiment).Config
        return validate_config(cls, self.result.config)

    @functools.cached_property
    def arrays(self) -> dict[str, Tensor]:
        return read_arrays(self.path / "arrays.safetensors")

    @functools.cached_property
    def history(self) -> list[dict]:
        return read_metrics(self.path / "metrics.jsonl")

    @functools.cached_property
    def models(self) -> dict[str, nn.Module]:
        """Every trained model of the run, by the sub-folder its checkpoint is in ("" for the run
        folder itself, e.g. "stacked" for looped-gd's comparison model); seed folders of an
        ensemble are left to `seeds`."""
        found = {}
        for file in sorted(self.path.rglob(CHECKPOINT_FILE)):
            key = file.parent.relative_to(self.path).as_posix()
            key = "" if key == "." else key
            if self.result.seeds is not None and key.split("/")[0].startswith("seed"):
                continue
            found[key] = build_from_checkpoint(file)
        return found

    @property
    def model(self) -> nn.Module:
        """The run's main trained model (the checkpoint in the run folder itself)."""
        if "" not in self.models:
            sub = ", ".join(repr(k) for k in self.models) or "none"
            raise InputError(
                str(self.path), f"no checkpoint in the run folder itself (sub-models: {sub})"
            )
        return self.models[""]

    @functools.cached_property
    def seeds(self) -> list[Run]:
        """The runs of an ensemble's seeds, in the order of its seeds (empty for a single run)."""
        if self.result.seeds is None:
            return []
        return [load_run(self.path / f"seed{s}") for s in self.result.seeds.seeds]


def load_run(folder: str | Path) -> Run:
    """The run folder `folder` (a single run or a seed ensemble) as a `Run`."""
    path = Path(folder)
    if not path.is_dir():
        raise InputError(str(path), "not a folder")
    return Run(path=path, result=read_result(path / "result.json"))
