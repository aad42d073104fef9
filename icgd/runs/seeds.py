"""Seed ensembles: every seed of any experiment in one process, training stacked over the seeds.

`icgd run NAME --seeds 0-15` (or a config with `seeds: [0, 1, 2]`) runs `run_seeds`:

- each seed k runs the experiment's ordinary `run_experiment` with `seed=k` into `run_dir/seed{k}/`
  (a normal run folder: config, result.json, checkpoints, metrics.jsonl), in its own thread;
- seed k's experiment trains through the trainer of its run context (`RunContext.trainer`): seat k
  of one `icgd.training.rendezvous.Rendezvous`, which hands every call to the coordinating
  (calling) thread; that thread waits until every seed still running has a call pending, then
  trains them together — the seed axis of the one training loop: stacked parameters,
  `torch.func.vmap` over the seeds — and hands each thread its own `TrainResult`. An experiment
  that trains several models in turn (looped-gd: a looped, then a stacked model) does so round by
  round; a seed that stops early (diverged) or never trains (optimal-transport, decision-lists:
  no `train` call) just leaves, so no one waits for it. What is not training (analysis, theory,
  baselines) runs in the seeds' threads concurrently (torch releases the GIL in its kernels);
- `run_dir/result.json` aggregates the seeds (see `aggregate`).

Numbers. Every seed's data streams follow from its own seed as in a single run, so seed k's
folder holds the numbers of `icgd run NAME --seed k` (up to float reassociation in the batched
math, ~1e-12 relative in float64).

Status of the ensemble: "interrupted" if some seed has not finished (the folder is resumable with
`icgd run NAME --resume DIR`, which runs only the unfinished seeds); else "diverged" if some seed
diverged; else "failed" if some seed failed a claim; else "passed" (every seed passed every claim).
"""

from __future__ import annotations

import math
import re
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import torch

from icgd.core.config import config_to_yaml
from icgd.core.errors import InputError
from icgd.core.io import atomic_write_text
from icgd.core.results import (
    Claim,
    ErrorInfo,
    Provenance,
    Result,
    SeedsSummary,
    read_result,
    write_result,
)
from icgd.core.version import __version__
from icgd.experiments.api import ExperimentConfig
from icgd.runs.folder import RESUMABLE, resumable
from icgd.runs.runner import RunError, run_experiment
from icgd.training.rendezvous import EnsembleAborted, Rendezvous

_FORMS = "allowed forms: 0-15, 0,3,7, 0-3,8 (non-negative integers, ranges inclusive)"
_MAX_SEEDS = 4096


def parse_seeds(text: str) -> list[int]:
    """`"0-3,8"` → `[0, 1, 2, 3, 8]`: comma-separated seeds and inclusive ranges, no repeats."""
    seeds: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if match is None:
            raise InputError("--seeds", f"cannot read {text!r}; {_FORMS}")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo:
            raise InputError("--seeds", f"range {part!r} runs backwards; {_FORMS}")
        if hi >= 2**63:
            raise InputError("--seeds", f"seed {hi} is too large (< 2^63)")
        if len(seeds) + hi - lo + 1 > _MAX_SEEDS:
            raise InputError("--seeds", f"more than {_MAX_SEEDS} seeds")
        seeds.extend(range(lo, hi + 1))
    if len(set(seeds)) != len(seeds):
        raise InputError("--seeds", f"{text!r} names a seed twice; {_FORMS}")
    return seeds


def seed_config(config: ExperimentConfig, seed: int) -> ExperimentConfig:
    """The single-run config of one seed of an ensemble."""
    data = config.model_dump(mode="json") | {"seed": int(seed), "seeds": None}
    return type(config).model_validate(data)


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _stats(values: list[Any]) -> dict[str, float | None]:
    """mean, sample std (n − 1), min, max over the finite values (None if there are none)."""
    xs = [x for x in (_finite(v) for v in values) if x is not None]
    if not xs:
        return {"mean": None, "std": None, "min": None, "max": None}
    return {
        "mean": statistics.fmean(xs),
        "std": statistics.stdev(xs) if len(xs) > 1 else None,
        "min": min(xs),
        "max": max(xs),
    }


def _ensemble_status(statuses: list[str]) -> str:
    for status in ("error", "running", "interrupted", "diverged", "failed"):
        if status in statuses:
            return status
    return "passed"


def _metric_stats(results: list[Result]) -> tuple[dict[str, list], dict[str, Any]]:
    """`(per-seed values of every metric, their statistics)` (see `aggregate`)."""
    names: list[str] = []
    for r in results:
        names += [m for m in r.metrics if m not in names]
    per_seed = {m: [r.metrics.get(m) for r in results] for m in names}
    metrics: dict[str, Any] = {}
    for m, values in per_seed.items():
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, list) for v in present):
            lengths = {len(v) for v in present}
            if len(lengths) == 1:
                columns = zip(*present, strict=True)
                metrics[f"{m}.mean"] = [_stats(list(c))["mean"] for c in columns]
            continue
        for stat, value in _stats(values).items():
            metrics[f"{m}.{stat}"] = value
    return per_seed, metrics


def _claim_stats(results: list[Result]) -> tuple[list[Claim], dict[str, list], dict[str, float]]:
    """`(one claim per name over the seeds, per-seed verdicts, pass rates)` (see `aggregate`)."""
    claim_names: list[str] = []
    first: dict[str, Claim] = {}
    for r in results:
        for c in r.claims:
            if c.name not in first:
                claim_names.append(c.name)
                first[c.name] = c
    claims, passed, rates = [], {}, {}
    for cname in claim_names:
        found = [next((c for c in r.claims if c.name == cname), None) for r in results]
        passed[cname] = [c.passed if c is not None else None for c in found]
        checked = [c for c in found if c is not None]
        rates[cname] = sum(c.passed for c in checked) / len(results)
        measured = _stats([c.measured for c in checked])["mean"]
        template = first[cname]
        claims.append(
            Claim(
                name=cname,
                statement=template.statement,
                measured=measured,
                expected=statistics.fmean(c.expected for c in checked),
                tolerance=template.tolerance,
                comparison=template.comparison,
                passed=all(p is True for p in passed[cname]),
            )
        )
    return claims, passed, rates


def aggregate(
    name: str,
    config: ExperimentConfig,
    seeds: list[int],
    results: list[Result],
    *,
    wall_seconds: float,
    batched: bool,
    message: str = "",
) -> Result:
    """The ensemble's `Result` from the seeds' results (same order as `seeds`).

    metrics: for every scalar metric m, `m.mean`, `m.std` (sample, n − 1), `m.min`, `m.max` over
    the seeds with a finite value; for a list metric of equal length in every seed, `m.mean` is
    the elementwise mean; plus `n_seeds`, `seeds_passed` and `ensemble_batched` (1 when every
    `train` call ran stacked, else 0). claims: one per claim name, `measured` = mean of the seeds'
    measured values, `expected` = mean of their expected values, `passed` = every seed passed it.
    The per-seed values and each claim's pass rate are kept in `seeds` (`SeedsSummary`).
    """
    statuses = [r.status for r in results]
    per_seed, metrics = _metric_stats(results)
    metrics |= {
        "n_seeds": len(seeds),
        "seeds_passed": sum(s == "passed" for s in statuses),
        "ensemble_batched": int(batched),
    }
    claims, passed, rates = _claim_stats(results)
    provenance = Provenance(
        icgd=__version__,
        git_commit=results[0].provenance.git_commit if results else None,
        torch=torch.__version__,
        device=config.device,
        dtype=config.dtype,
        seed=seeds[0],
        wall_seconds=round(wall_seconds, 3),
        seeds=list(seeds),
    )
    return Result(
        experiment=name,
        status=_ensemble_status(statuses),
        config=config.model_dump(mode="json"),
        metrics=metrics,
        claims=claims,
        provenance=provenance,
        message=message,
        seeds=SeedsSummary(
            seeds=list(seeds),
            status=statuses,
            metrics=per_seed,
            claims=passed,
            claim_pass_rate=rates,
            batched=batched,
        ),
    )


def _placeholder(
    name: str, config: ExperimentConfig, seed: int, message: str, status: str = "running", **extra
) -> Result:
    return Result(
        experiment=name,
        status=status,
        config=config.model_dump(mode="json"),
        metrics={},
        claims=[],
        provenance=Provenance(
            icgd=__version__,
            torch=torch.__version__,
            device=config.device,
            dtype=config.dtype,
            seed=seed,
            wall_seconds=0.0,
        ),
        message=message,
        **extra,
    )


def run_seeds(
    name: str,
    config: ExperimentConfig,
    seeds: list[int],
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress=None,
) -> Result:
    """Run experiment `name` for every seed of `seeds` in one process (see the module docstring).

    `run_dir` must exist (new or empty, from `prepare_run_dir`, or the ensemble folder to
    resume). With `resume`, seeds whose folder holds a finished result are kept as they are,
    interrupted ones are resumed and missing ones start. `progress(task, step, total, record)`
    reports, per task label, the slowest seed. Raises the first exception of a seed (the others
    are stopped and their folders say "interrupted"); KeyboardInterrupt likewise.
    """
    run_dir = Path(run_dir)
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise InputError("--seeds", "give a non-empty list of distinct seeds")
    if config.compile:  # as `resolve_config`, for a config that did not come through it
        raise InputError("compile", "a seed ensemble trains under vmap, which is not compiled")
    config = type(config).model_validate(config.model_dump(mode="json") | {"seeds": seeds})
    started = time.perf_counter()

    def write(result: Result) -> None:
        write_result(run_dir / "result.json", result)

    if not resume:
        atomic_write_text(run_dir / "config.yaml", config_to_yaml(config))
    write(_placeholder(name, config, seeds[0], "started; not finished"))

    results, todo = _plan(name, config, seeds, run_dir, resume)
    rendezvous = Rendezvous(len(todo))
    threads, errors = _start_seeds(name, todo, rendezvous, results, progress)
    try:
        rendezvous.serve()
    except BaseException as exc:
        rendezvous.abort(exc)
        for thread in threads:
            thread.join()
        _record_failure(write, name, config, seeds[0], exc, run_dir)
    for thread in threads:
        thread.join()
    first = next((e for _, e in errors if not isinstance(e, EnsembleAborted)), None)
    if first is not None:
        _record_failure(write, name, config, seeds[0], first, run_dir)

    batched, message = _how_trained(rendezvous)
    wall = time.perf_counter() - started
    ordered = [results[s] for s in seeds]
    final = aggregate(
        name, config, seeds, ordered, wall_seconds=wall, batched=batched, message=message
    )
    write(final)
    return final


def _record_failure(write, name, config, seed, exc: BaseException, run_dir: Path) -> None:
    """Record why the ensemble stopped and raise: "interrupted" for a signal (re-raised as it
    is), "error" for a crash (raised as `RunError`; the seed's own folder holds error.log)."""
    if isinstance(exc, KeyboardInterrupt):
        what = str(exc) or "interrupted by the user"
        write(_placeholder(name, config, seed, f"{what}; continue with --resume", "interrupted"))
        raise exc
    cause = exc.cause if isinstance(exc, RunError) else exc
    info = ErrorInfo(type=type(cause).__name__, message=" ".join(str(cause).split())[:1000])
    message = "a seed crashed; see its folder's error.log"
    write(_placeholder(name, config, seed, message, "error", error=info))
    if isinstance(exc, (RunError, InputError)):
        raise exc
    raise RunError(run_dir, exc) from exc


_Job = tuple[int, ExperimentConfig, Path, bool]  # seed, its config, its folder, resume it


def _plan(
    name: str, config: ExperimentConfig, seeds: list[int], run_dir: Path, resume: bool
) -> tuple[dict[int, Result], list[_Job]]:
    """`(results of the seeds already finished, the seeds to run)`; each seed's folder made."""
    results: dict[int, Result] = {}
    todo: list[_Job] = []
    for seed in seeds:
        folder = run_dir / f"seed{seed}"
        if resume and (folder / "result.json").is_file():
            previous = read_result(folder / "result.json")
            if previous.status not in RESUMABLE:
                results[seed] = previous
                continue
            todo.append((seed, resumable(name, folder)[0], folder, True))
            continue
        if resume and folder.exists() and any(folder.iterdir()):
            raise InputError("--resume", f"{folder} holds files but no result.json")
        folder.mkdir(parents=True, exist_ok=True)
        todo.append((seed, seed_config(config, seed), folder, False))
    return results, todo


def _start_seeds(
    name: str, todo: list[_Job], rendezvous: Rendezvous, results: dict[int, Result], progress
) -> tuple[list[threading.Thread], list[tuple[int, BaseException]]]:
    """Start one thread per seed of `todo`, seed i running its experiment with the trainer of
    seat i of `rendezvous`; its result goes to `results`, an exception to the returned list
    (and aborts the rendezvous). `progress` hears of the slowest seed of each task."""
    errors: list[tuple[int, BaseException]] = []
    lock = threading.Lock()
    reported: dict[str, dict[int, int]] = {}

    def seed_progress(seed: int):
        if progress is None:
            return None

        def report(task: str, step: int, total: int, record: dict) -> None:
            with lock:
                steps = reported.setdefault(task, {})
                steps[seed] = step
                slowest = min(steps.values())
            progress(task, slowest, total, record)

        return report

    def work(index: int, seed: int, cfg: ExperimentConfig, folder: Path, again: bool) -> None:
        try:
            with rendezvous.seated(index) as trainer:
                results[seed] = run_experiment(
                    name, cfg, folder, resume=again, progress=seed_progress(seed), trainer=trainer
                )
        except BaseException as exc:  # noqa: BLE001 - handed to the coordinating thread
            with lock:
                errors.append((seed, exc))
            if not isinstance(exc, EnsembleAborted):
                rendezvous.abort(EnsembleAborted(f"seed {seed} failed: {type(exc).__name__}"))

    threads = [
        threading.Thread(target=work, args=(i, *job), name=f"icgd-seed{job[0]}", daemon=True)
        for i, job in enumerate(todo)
    ]
    for thread in threads:
        thread.start()
    return threads, errors


def _how_trained(rendezvous: Rendezvous) -> tuple[bool, str]:
    """`(every train call ran stacked, a message when not)`."""
    batched_calls = sum(rendezvous.batched_calls)
    batched = batched_calls > 0 and sum(rendezvous.sequential_calls) == 0
    message = ""
    if rendezvous.reasons:
        message = "some train calls ran one seed after another: " + "; ".join(
            sorted(set(rendezvous.reasons))
        )
    elif batched_calls == 0:
        message = "no train calls to stack: the seeds ran concurrently in threads"
    return batched, message
