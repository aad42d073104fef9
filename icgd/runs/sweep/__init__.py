"""Sweeps: the Cartesian product of config grids, each point a normal run folder.

`plan` validates a grid into points and owns the sweep folder; `local` runs points on this
machine (in order or in a process pool), `ray` on a Ray cluster; `tables` writes the results.

    plan = plan_sweep("one-step-gd", base_config, ["d=3,5", "train.optimizer.lr=0.05,0.1"])
    prepare_sweep_dir(plan)            # writes sweep.yaml (or checks it matches a rerun)
    run_sweep_local(plan, max_concurrent=2)
    write_tables(plan)                 # sweep.json, sweep.csv

Sweep folder layout:
    sweep.yaml          what the sweep is: experiment, grid, seeds, base config (written first)
    000-d=3,train.optimizer.lr=0.05/   one run folder per point (a seed-ensemble folder with
    001-d=3,train.optimizer.lr=0.1/    `--seeds`), named `<index>-<key=value,...>`
    ...
    sweep.json, sweep.csv   one row per point: grid values, status, metrics, claims
    figures/sweep.png       drawn by `icgd.reporting.sweep` from sweep.json
    ray/                    Ray Tune's own bookkeeping (ray backend only)

Point folder names are deterministic: the point's index in the row-major product of the grids
(the first `--grid` varies slowest), zero-padded, then `key=value` pairs of the resolved values
with every character outside `[A-Za-z0-9._+=,-]` replaced by `_` (cut to 100 characters; the
index keeps names unique). The tables map each folder to its exact values.

A point is *finished* when its folder's `result.json` has status passed/failed/diverged; a rerun
skips it and reads its numbers. Any other non-empty folder is *unfinished* and is resumed (from
its checkpoint where one exists). A point that raised gets `error.txt` in its folder (the row
shows status "error"); a rerun retries it.

This module imports no torch at import time: process-pool workers import it under the `spawn`
start method and set their thread counts before torch is loaded.
"""

from __future__ import annotations

from icgd.runs.sweep.local import (
    cpu_count,
    run_point,
    run_sweep_local,
    set_threads,
    threads_per_worker,
)
from icgd.runs.sweep.plan import (
    ERROR_FILE,
    FINISHED,
    SWEEP_FILE,
    TIMING_COLUMNS,
    GridAxis,
    Point,
    Report,
    SweepPlan,
    check_backend,
    parse_grid,
    plan_sweep,
    point_state,
    prepare_sweep_dir,
)
from icgd.runs.sweep.tables import collect_rows, write_tables

__all__ = [
    "ERROR_FILE",
    "FINISHED",
    "SWEEP_FILE",
    "TIMING_COLUMNS",
    "GridAxis",
    "Point",
    "Report",
    "SweepPlan",
    "check_backend",
    "collect_rows",
    "cpu_count",
    "parse_grid",
    "plan_sweep",
    "point_state",
    "prepare_sweep_dir",
    "run_point",
    "run_sweep_local",
    "set_threads",
    "threads_per_worker",
    "write_tables",
]
