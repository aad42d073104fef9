"""The Ray Tune backend of `icgd sweep` (the optional extra `icgd[ray]`).

Each unfinished point becomes one Tune trial. The trial runs the point into *its own* folder under
the sweep folder, exactly as the local backend does (`icgd.runs.sweep.run_point`), so the
layout and the tables are the same whichever backend ran a point. A failed or preempted trial is
retried (`FailureConfig(max_failures=2)`); the retry finds the point folder interrupted and
resumes it from its checkpoint. Finished points are never submitted.

On a cluster (`--address`), the sweep folder must lie on a filesystem every node sees (it is
passed to the trials as an absolute path), and every node needs the same `icgd` installed.

Ray is imported inside the functions, so `import icgd` and the local backend never need it.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from icgd.core.results import read_result
from icgd.runs.sweep.local import cpu_count, run_point, set_threads
from icgd.runs.sweep.plan import (
    ERROR_FILE,
    Report,
    SweepPlan,
    point_state,
    split_finished,
)


def _trainable(config: dict[str, Any], specs: dict[int, dict[str, Any]]) -> None:
    """A Tune function trainable: run (or resume) one point, then report its final numbers."""
    from ray import tune

    spec = specs[config["point"]]
    set_threads(spec["threads"])
    folder = Path(spec["folder"])
    status = run_point(spec["name"], spec["config"], folder)
    result = read_result(folder / "result.json")
    numbers = {
        f"metrics.{k}": float(v)
        for k, v in result.metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    tune.report({"point": config["point"], "passed": float(status == "passed"), **numbers})


def run_sweep_ray(
    plan: SweepPlan,
    *,
    address: str | None = None,
    max_concurrent: int = 1,
    report: Report | None = None,
) -> dict[int, str]:
    """Run every unfinished point as a Ray Tune trial; returns {point index: status}.

    `address` connects to a running cluster (`ray start --head` prints it; "auto" finds a local
    one); without it a local Ray instance with this machine's cores is started and stopped.
    """
    import ray

    statuses, todo = split_finished(plan, report)
    if not todo:
        return statuses

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=address or None,
            num_cpus=None if address else cpu_count(),
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    try:
        _tuner(plan, todo, max_concurrent).fit()
    finally:
        if started_here:
            ray.shutdown()
    for point in todo:
        folder = plan.folder(point)
        if point_state(folder) == "finished":
            status = read_result(folder / "result.json").status
            event, message = "finished", ""
        else:
            status, event = "error", "error"
            error = folder / ERROR_FILE
            message = error.read_text().strip() if error.is_file() else "the trial did not finish"
        statuses[point.index] = status
        if report is not None:
            report(point, event, status, message)
    return statuses


def _tuner(plan: SweepPlan, todo: list, max_concurrent: int):
    """A Ray Tune `Tuner` with one trial per point of `todo`, retried on failure."""
    import ray
    from ray import tune

    cpus = int(ray.cluster_resources().get("CPU", 1))
    # Threads per trial: a node's cores shared by the trials running at once (at least 1).
    threads = max(1, min(cpus, cpu_count()) // max_concurrent)
    root = plan.root.resolve()
    specs = {
        point.index: {
            "name": plan.name,
            "config": point.config.model_dump(mode="json"),
            "folder": str(root / point.folder),
            "threads": threads,
        }
        for point in todo
    }
    trainable = tune.with_resources(tune.with_parameters(_trainable, specs=specs), {"cpu": threads})
    tuner = tune.Tuner(
        trainable,
        param_space={"point": tune.grid_search(sorted(specs))},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=max_concurrent,
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            name=datetime.now().strftime("tune-%Y%m%d-%H%M%S"),
            storage_path=str(root / "ray"),
            failure_config=tune.FailureConfig(max_failures=2),
            verbose=0,
        ),
    )
    return tuner


def _trial_name(trial) -> str:
    return f"point-{trial.config['point']}"
