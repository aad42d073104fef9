"""One run: resolve its config, check its memory, run the experiment, check its claims, save.

`resolve_config` applies, in order: the experiment's defaults, a named preset (`--preset`), a
YAML file (`--config`), `--set` overrides, then `--seed/--device/--dtype/--compile/
--tensorboard`, validating at every stage. `run_experiment` runs one configured experiment in a
prepared folder and records how it ended (`icgd.runs.folder`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from icgd.core.config import apply_overrides, load_config
from icgd.core.errors import InputError
from icgd.core.io import atomic_save_safetensors
from icgd.core.results import Result
from icgd.experiments.api import EXPERIMENTS, ExperimentConfig, RunContext
from icgd.runs.folder import RunFolder, prepare_run_dir, resumable

__all__ = ["RunError", "prepare_run_dir", "resolve_config", "resumable", "run_experiment"]


class RunError(RuntimeError):
    """A run crashed: its folder records status "error" (type and message in result.json, the
    traceback in error.log). `cause` is the original exception, `run_dir` the folder."""

    def __init__(self, run_dir: Path, cause: BaseException) -> None:
        text = " ".join(str(cause).split())
        super().__init__(f"{type(cause).__name__}: {text}" if text else type(cause).__name__)
        self.run_dir, self.cause = Path(run_dir), cause


def resolve_config(
    name: str,
    config_path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    seed: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
    compile: bool | None = None,
    tensorboard: bool | None = None,
    preset: str | None = None,
) -> ExperimentConfig:
    """Defaults → preset → YAML file → `--set` overrides → the single flags (module docstring)."""
    experiment = EXPERIMENTS.get(name)
    cls = experiment.Config
    config = load_config(cls, config_path) if config_path is not None else cls()
    extra: list[str] = []
    if preset is not None:
        if preset not in experiment.presets:
            allowed = ", ".join(sorted(experiment.presets))
            raise InputError("--preset", f"unknown preset {preset!r} of {name}; allowed: {allowed}")
        extra += list(experiment.presets[preset])
    extra += list(overrides)
    flags = {"seed": seed, "device": device, "dtype": dtype}
    extra += [f"{key}={value}" for key, value in flags.items() if value is not None]
    for key, value in {"compile": compile, "tensorboard": tensorboard}.items():
        if value is not None:
            extra.append(f"{key}={str(bool(value)).lower()}")
    config = apply_overrides(config, extra) if extra else config
    if config.device == "cuda" and not torch.cuda.is_available():
        raise InputError("device", "cuda is not available on this machine; allowed here: cpu")
    if config.compile and config.seeds is not None:
        raise InputError(
            "compile",
            "a seed ensemble trains its seeds stacked under vmap, which is not compiled; "
            "drop --compile or run the seeds one by one",
        )
    return config


def run_experiment(
    name: str,
    config: ExperimentConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    retrying: str = "",
    progress=None,
    trainer=None,
) -> Result:
    """Run experiment `name` with `config` in `run_dir` and write `result.json`.

    The folder gets `config.yaml` and `result.json` (status "running") before any work starts.
    A signal records "interrupted" and re-raises; any other exception records "error" (with
    error.log) and raises `RunError` from it (an `InputError`, e.g. a damaged checkpoint on
    resume, is recorded the same way and re-raised as it is). `trainer`: what the experiment
    trains with (`RunContext.trainer`; None: `icgd.training.train`).
    """
    experiment = EXPERIMENTS.get(name)
    folder = RunFolder(name, config, run_dir)
    folder.start(resume=resume, retrying=retrying)
    ctx = RunContext(
        run_dir=Path(run_dir),
        resume=resume,
        compile=config.compile,
        tensorboard=config.tensorboard,
        progress=progress,
        trainer=trainer,
    )
    try:
        outcome = experiment.run(config, ctx)
        if outcome.arrays:
            atomic_save_safetensors(Path(run_dir) / "arrays.safetensors", outcome.arrays)
        if outcome.diverged:
            return folder.write(folder.result("diverged", outcome.metrics, message=outcome.message))
        claims = experiment.claims(config, outcome.metrics)
    except KeyboardInterrupt as exc:  # a signal, through icgd.training.interrupt, or Ctrl-C
        folder.interrupted(exc)
        raise
    except InputError as exc:
        folder.errored(exc)
        raise
    except Exception as exc:
        folder.errored(exc)
        raise RunError(Path(run_dir), exc) from exc
    status = "passed" if all(c.passed for c in claims) else "failed"
    return folder.write(folder.result(status, outcome.metrics, claims, message=outcome.message))
