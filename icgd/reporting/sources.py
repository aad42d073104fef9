"""The folders a report reads: run folders, seed-ensemble folders and sweep folders, as entries
(`load_sources`), and the scalar metrics a comparison lines up (an ensemble's means)."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icgd.core.errors import InputError
from icgd.core.results import Result, read_result


@dataclass
class RunEntry:
    """A run folder (single run or seed ensemble) and its `Result`."""

    label: str
    path: Path
    result: Result
    grid: dict[str, Any] = field(default_factory=dict)  # a sweep point's grid values
    sweep: str | None = None  # label of the sweep it belongs to


@dataclass
class SweepEntry:
    """A sweep folder: its `sweep.json` table and the point folders that have a result."""

    label: str
    path: Path
    table: dict[str, Any]
    points: list[RunEntry]


# --- reading the folders --------------------------------------------------------------------------


def _label(path: Path, given: Path) -> str:
    return path.name or str(given)


def load_sources(paths: Sequence[str | Path]) -> tuple[list[RunEntry], list[SweepEntry]]:
    """Classify each path as a run/ensemble folder (`result.json`) or a sweep folder (`sweep.json`)
    and read it; anything else is an `InputError` naming the path."""
    from icgd.reporting.sweep import read_table

    if not paths:
        raise InputError("FOLDER", "give at least one run folder or sweep folder")
    runs: list[RunEntry] = []
    sweeps: list[SweepEntry] = []
    seen: set[Path] = set()
    for given in map(Path, paths):
        if not given.exists():
            raise InputError(str(given), "no such folder")
        if not given.is_dir():
            raise InputError(str(given), "not a folder (give a run folder or a sweep folder)")
        resolved = given.resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        if (given / "result.json").is_file():
            result = read_result(given / "result.json")
            runs.append(RunEntry(_label(resolved, given), given, result))
        elif (given / "sweep.json").is_file() or (given / "sweep.yaml").is_file():
            table = read_table(given / "sweep.json")
            label = _label(resolved, given)
            keys = [g["key"] for g in table.get("grid", [])]
            points = []
            for row in table.get("rows", []):
                folder = given / str(row.get("folder", ""))
                if row.get("folder") and (folder / "result.json").is_file():
                    try:
                        result = read_result(folder / "result.json")
                    except InputError:
                        continue  # the table row still shows its status
                    grid = {k: row.get(k) for k in keys}
                    points.append(RunEntry(f"{label}/{folder.name}", folder, result, grid, label))
            sweeps.append(SweepEntry(label, given, table, points))
        else:
            raise InputError(
                str(given), "not a run folder or a sweep folder (no result.json or sweep.json)"
            )
    _unique_labels(runs + [p for s in sweeps for p in s.points])
    return runs, sweeps


def _unique_labels(entries: list[RunEntry]) -> None:
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.label] = counts.get(entry.label, 0) + 1
    for entry in entries:
        if counts[entry.label] > 1:
            entry.label = str(entry.path)


def seed_dirs(entry: RunEntry) -> list[Path]:
    if entry.result.seeds is None:
        return []
    return [entry.path / f"seed{s}" for s in entry.result.seeds.seeds]


def redraw_figures(runs: list[RunEntry], draw_figures: Callable[[Path], object]) -> list[str]:
    """Redraw every run's figures from its saved files (each seed's for an ensemble) with
    `draw_figures(folder)` (the caller's: `icgd.runs.figures.draw_figures`, which knows the
    experiments); returns a warning per folder whose figures could not be drawn (a report is
    still written)."""
    warnings = []
    for entry in runs:
        for folder in seed_dirs(entry) or [entry.path]:
            if not (folder / "result.json").is_file():
                continue
            try:
                draw_figures(folder)
            except Exception as exc:  # redrawable later; never lose the report for one figure
                warnings.append(f"figures of {folder} not drawn ({type(exc).__name__}: {exc})")
    return warnings


STATS = ("mean", "std", "min", "max")


def ensemble_stats(result: Result) -> dict[str, dict[str, Any]]:
    """A seed ensemble's scalar metrics `m.mean`, `m.std`, `m.min`, `m.max` grouped by `m`."""
    grouped: dict[str, dict[str, Any]] = {}
    for key, value in result.metrics.items():
        base, _, stat = key.rpartition(".")
        if base and stat in STATS and not isinstance(value, list):
            grouped.setdefault(base, {})[stat] = value
    return {m: v for m, v in grouped.items() if len(v) == len(STATS)}


def scalar_metrics(result: Result) -> dict[str, Any]:
    """The scalar metrics of a run; for a seed ensemble each metric's mean over the seeds (under
    the metric's own name, so runs and ensembles line up in a comparison) and its counts."""
    if result.seeds is None:
        return {k: v for k, v in result.metrics.items() if not isinstance(v, list)}
    stats = ensemble_stats(result)
    grouped = {f"{m}.{s}" for m in stats for s in STATS}
    out = {m: v["mean"] for m, v in stats.items()}
    out |= {
        k: v
        for k, v in result.metrics.items()
        if k not in grouped and not isinstance(v, list) and not k.endswith(".mean")
    }
    return out
