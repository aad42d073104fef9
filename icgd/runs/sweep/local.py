"""Running a sweep's points on this machine: one after another, or in a `spawn` process pool.

`run_point` runs (or resumes, or skips) one point into its folder; `run_sweep_local` runs every
unfinished point. A pool worker limits its math threads before torch loads and stops at the
parent's request at its next training step (its folder says "interrupted" and resumes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from icgd.core.io import atomic_write_text
from icgd.core.results import read_result
from icgd.runs.sweep.plan import (
    ERROR_FILE,
    Report,
    SweepPlan,
    point_state,
    split_finished,
)

if TYPE_CHECKING:
    from icgd.experiments.api import ExperimentConfig

# --- running one point ---------------------------------------------------------------------------


def run_point(
    name: str,
    config: ExperimentConfig | dict,
    folder: str | Path,
    *,
    progress=None,
) -> str:
    """Run (or resume, or skip) one point into `folder`; returns its final status.

    A config with `seeds` runs as a seed ensemble (`run_seeds`), any other as one run.

    A finished folder is left alone. An exception is recorded in `folder/error.txt` and re-raised,
    so the caller decides whether the sweep goes on (local backend) or retries (ray backend).
    """
    from icgd.core.config import validate_config
    from icgd.experiments.api import EXPERIMENTS
    from icgd.runs.runner import resumable, run_experiment

    folder = Path(folder)
    if isinstance(config, dict):
        config = validate_config(EXPERIMENTS.get(name).Config, config)
    state = point_state(folder)
    if state == "finished":
        return read_result(folder / "result.json").status
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ERROR_FILE).unlink(missing_ok=True)
    try:
        if config.seeds is not None:
            from icgd.runs.seeds import run_seeds

            resume = state == "unfinished"
            result = run_seeds(name, config, config.seeds, folder, resume=resume, progress=progress)
        elif state == "unfinished" and (folder / "result.json").is_file():
            saved, previous = resumable(name, folder)
            retrying = "retrying a run that crashed" if previous.status == "error" else ""
            result = run_experiment(
                name, saved, folder, resume=True, retrying=retrying, progress=progress
            )
        else:
            result = run_experiment(name, config, folder, progress=progress)
    except Exception as exc:
        atomic_write_text(folder / ERROR_FILE, describe(exc) + "\n")
        raise
    return result.status


def describe(exc: BaseException) -> str:
    """`Type: message` on one line; a crashed run (`RunError`) is described by its cause."""
    cause = getattr(exc, "cause", None)
    exc = cause if isinstance(cause, BaseException) else exc
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def cpu_count() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def threads_per_worker(max_concurrent: int) -> int:
    return max(1, cpu_count() // max(1, max_concurrent))


def set_threads(threads: int) -> None:
    """Limit this process's math threads (call before torch-heavy work)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)


_STOP = None  # in a pool worker: the parent's "stop" event (set on Ctrl-C)


def _pool_init(threads: int, stop) -> None:
    """Pool worker start-up: threads limited before torch loads; Ctrl-C is the parent's to handle.

    The terminal sends Ctrl-C to every process of the group; a worker ignores it and stops at the
    parent's request instead (`stop`), so a worker never dies between points or starts a new one.
    """
    import signal

    global _STOP
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _STOP = stop
    set_threads(threads)


def _stop_requested(task: str, step: int, total: int, record: dict) -> None:
    """Progress callback of a pool worker: turn the parent's stop request into a Ctrl-C, which
    `run_experiment` records as status "interrupted" (the folder resumes from its checkpoint)."""
    if _STOP is not None and _STOP.is_set():
        raise KeyboardInterrupt


def _pool_run(name: str, config: dict, folder: str) -> tuple[str, str]:
    """A pool worker's job: (status, error message); a failing point does not kill the pool."""
    if _STOP is not None and _STOP.is_set():
        return "pending", "not started"
    try:
        return run_point(name, config, folder, progress=_stop_requested), ""
    except KeyboardInterrupt:
        return "interrupted", "interrupted by the user"
    except Exception as exc:
        return "error", describe(exc)


def run_sweep_local(
    plan: SweepPlan,
    *,
    max_concurrent: int = 1,
    report: Report | None = None,
    progress=None,
) -> dict[int, str]:
    """Run every unfinished point on this machine; returns {point index: status}.

    `max_concurrent == 1` runs the points one after another in this process (`progress` gets the
    trainer's `(task, step, total, record)`); more runs a `spawn` process pool whose workers each
    use `cores // max_concurrent` threads. A point that raises is recorded (status "error") and
    the sweep goes on. Ctrl-C stops the workers at their next training step (their folders say
    "interrupted" and resume from the checkpoint), starts no new point, and re-raises.
    """
    statuses, todo = split_finished(plan, report)
    if max_concurrent <= 1:
        for point in todo:
            if report is not None:
                report(point, "started", "", "")
            try:
                status = run_point(plan.name, point.config, plan.folder(point), progress=progress)
            except Exception as exc:
                statuses[point.index] = "error"
                if report is not None:
                    report(point, "error", "error", describe(exc))
                continue
            statuses[point.index] = status
            if report is not None:
                report(point, "finished", status, "")
        return statuses

    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    executor = ProcessPoolExecutor(
        max_workers=min(max_concurrent, max(1, len(todo))),
        mp_context=context,
        initializer=_pool_init,
        initargs=(threads_per_worker(max_concurrent), stop),
    )
    try:
        futures = {}
        for point in todo:
            config = point.config.model_dump(mode="json")
            future = executor.submit(_pool_run, plan.name, config, str(plan.folder(point)))
            futures[future] = point
            if report is not None:
                report(point, "started", "", "")
        for future in as_completed(futures):
            point = futures[future]
            try:
                status, message = future.result()
            except Exception as exc:  # the worker process died (killed, out of memory)
                status, message = "error", describe(exc)
                atomic_write_text(plan.folder(point) / ERROR_FILE, message + "\n")
            statuses[point.index] = status
            if report is not None:
                report(point, "error" if status == "error" else "finished", status, message)
    except KeyboardInterrupt:
        # Workers stop at their next training step, record "interrupted" and start nothing new.
        stop.set()
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
    return statuses
