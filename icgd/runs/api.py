"""The public Python API: what `icgd run` and `icgd sweep` do, callable from a notebook.

    import icgd
    run = icgd.run("looped-gd", overrides=["loops=2"], preset="smoke", out="runs/mine")
    run.status, run.claims, run.model                # an `icgd.runs.loaded.Run`
    ens = icgd.run("looped-gd", preset="smoke", seeds="0-3")
    sw = icgd.sweep("looped-gd", grid=["loops=1,2"], preset="smoke")
    icgd.load_run("runs/mine")

Both check their whole input before anything is written (an `InputError` names the field), check
the configured sizes against the device's memory, and stop on SIGINT/SIGTERM/SIGHUP by
checkpointing the current step and recording `interrupted` (`StopRequested` is raised to the
caller). A crash records `error` and raises `RunError`. Figures are not drawn here (that is the
reporting layer's: `icgd.runs.figures.draw_figures(run.path)`, as the CLI does).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from icgd.core.errors import InputError
from icgd.experiments.api import EXPERIMENTS, ExperimentConfig
from icgd.runs.folder import prepare_run_dir, resumable
from icgd.runs.loaded import Run, load_run
from icgd.runs.memory import check_memory
from icgd.runs.runner import resolve_config, run_experiment
from icgd.runs.seeds import parse_seeds, run_seeds
from icgd.runs.signals import stop_on_signals

__all__ = ["SweepOutcome", "prepare", "run", "sweep"]

Progress = Callable[[str, int, int, dict], None]


def _parse_seeds(seeds: str | Sequence[int] | None) -> list[int] | None:
    if seeds is None:
        return None
    if isinstance(seeds, str):
        return parse_seeds(seeds)
    return parse_seeds(",".join(str(int(s)) for s in seeds))


@dataclass(frozen=True)
class Prepared:
    """A run ready to start: its name, config, folder, and whether it resumes."""

    name: str
    config: ExperimentConfig
    run_dir: Path
    resume: bool
    retrying: str = ""


def prepare(
    name: str,
    overrides: Sequence[str] = (),
    *,
    preset: str | None = None,
    config: str | Path | None = None,
    seed: int | None = None,
    seeds: str | Sequence[int] | None = None,
    out: str | Path | None = None,
    device: str | None = None,
    dtype: str | None = None,
    compile: bool | None = None,
    tensorboard: bool | None = None,
    resume: str | Path | None = None,
) -> Prepared:
    """Check every input, then create the run folder (or take the one to resume)."""
    EXPERIMENTS.get(name)  # an unknown name first
    seed_list = _parse_seeds(seeds)
    if seed_list is not None and seed is not None:
        raise InputError("--seeds", "give either --seed or --seeds, not both")
    if seed is not None and seed < 0:
        raise InputError("--seed", f"must be a non-negative integer, got {seed}")
    if resume is not None:
        given = (preset, config, seed, seed_list, out, device, dtype, compile, tensorboard)
        if overrides or any(x is not None and x is not False for x in given):
            raise InputError(
                "--resume",
                "continues a run with its saved config; drop --preset/--config/--set/--seed/"
                "--seeds/--device/--dtype/--compile/--tensorboard/--out",
            )
        cfg, previous = resumable(name, resume)
        retrying = "retrying a run that crashed" if previous.status == "error" else ""
        _check_tensorboard(cfg)
        return Prepared(name, cfg, Path(resume), True, retrying)
    for text in overrides:
        if "=" not in text:
            raise InputError("--set", f"expected key=value, got {text!r}")
    extra = [f"seeds={seed_list}"] if seed_list is not None else []
    cfg = resolve_config(
        name, config, [*overrides, *extra], seed, device, dtype, compile, tensorboard, preset
    )
    _check_tensorboard(cfg)
    check_memory(EXPERIMENTS.get(name), cfg)
    return Prepared(name, cfg, prepare_run_dir(name, cfg, out), False)


def _check_tensorboard(config: ExperimentConfig) -> None:
    """With `tensorboard: true`, fail early (exit 2) when the optional package is missing."""
    if config.tensorboard:
        from icgd.training.tensorboard import require_tensorboard

        require_tensorboard("--tensorboard")


def start(prepared: Prepared, progress: Progress | None = None) -> Run:
    """Run a prepared run (signals handled) and load its folder."""
    p = prepared
    with stop_on_signals():
        if p.config.seeds is not None:
            run_seeds(
                p.name, p.config, p.config.seeds, p.run_dir, resume=p.resume, progress=progress
            )
        else:
            run_experiment(
                p.name, p.config, p.run_dir, resume=p.resume, retrying=p.retrying, progress=progress
            )
    return load_run(p.run_dir)


def run(
    name: str, overrides: Sequence[str] = (), *, progress: Progress | None = None, **options
) -> Run:
    """Run experiment `name` as `icgd run` does and return the loaded run folder.

    `overrides`: `key=value` strings (`--set`); `options`: `preset`, `config` (a YAML path),
    `seed`, `seeds` ("0-15" or a list), `out`, `device`, `dtype`, `compile`, `tensorboard`,
    `resume` (a folder). `progress(task, step, total, record)` is called after every update.
    """
    return start(prepare(name, overrides, **options), progress)


@dataclass(frozen=True)
class SweepOutcome:
    """A finished (or partly finished) sweep: its folder, each point's status and the tables."""

    root: Path
    statuses: dict[int, str]
    tables: tuple[Path, Path]
    runs: list[Path]


def sweep(
    name: str,
    grid: Sequence[str],
    overrides: Sequence[str] = (),
    *,
    backend: str = "local",
    address: str | None = None,
    max_concurrent: int = 1,
    out: str | Path | None = None,
    seeds: str | Sequence[int] | None = None,
    report=None,
    on_plan=None,
    **options,
) -> SweepOutcome:
    """Run the product of `grid` axes (`"key=v1,v2"`), one run folder per point, as `icgd sweep`
    does; write sweep.json and sweep.csv. Rerunning it skips finished points and resumes
    unfinished ones. `options`: `preset`, `config`, `device`, `dtype`, `compile`, `tensorboard`.
    `report(point, event, status, message)` hears of every point's start and end; `on_plan(plan)`
    of the plan, once its folder is ready."""
    from icgd.runs.sweep import check_backend, plan_sweep, prepare_sweep_dir, write_tables

    check_backend(backend, address, max_concurrent)
    for text in overrides:
        if "=" not in text:
            raise InputError("--set", f"expected key=value, got {text!r}")
    base = resolve_config(
        name,
        options.pop("config", None),
        list(overrides),
        None,
        options.pop("device", None),
        options.pop("dtype", None),
        options.pop("compile", None),
        options.pop("tensorboard", None),
        options.pop("preset", None),
    )
    if options:
        raise InputError("sweep", f"unknown options {', '.join(sorted(options))}")
    _check_tensorboard(base)
    plan = plan_sweep(name, base, list(grid), seeds=_parse_seeds(seeds), out=out)
    for point in plan.points:
        check_memory(EXPERIMENTS.get(name), point.config)
    prepare_sweep_dir(plan)
    if on_plan is not None:
        on_plan(plan)
    with stop_on_signals():
        try:
            statuses = _run_points(plan, backend, address, max_concurrent, report)
        finally:
            tables = write_tables(plan)
    return SweepOutcome(plan.root, statuses, tables, [plan.folder(p) for p in plan.points])


def _run_points(plan, backend, address, max_concurrent, report) -> dict[int, str]:
    if backend == "ray":
        from icgd.runs.sweep.ray import run_sweep_ray

        return run_sweep_ray(plan, address=address, max_concurrent=max_concurrent, report=report)
    from icgd.runs.sweep import run_sweep_local

    return run_sweep_local(plan, max_concurrent=max_concurrent, report=report)
