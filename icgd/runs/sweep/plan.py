"""A sweep's plan: the grid axes, the points of their product, and the sweep folder.

See `icgd.runs.sweep` for the folder layout and the rules of folder names and resumption.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from icgd.core.config import apply_overrides, load_yaml
from icgd.core.errors import InputError
from icgd.core.io import atomic_write_text
from icgd.core.results import read_result

if TYPE_CHECKING:
    from icgd.experiments.api import ExperimentConfig

SWEEP_FILE = "sweep.yaml"
ERROR_FILE = "error.txt"
FINISHED = ("passed", "failed", "diverged")
TIMING_COLUMNS = ("wall_seconds",)

PointState = Literal["new", "unfinished", "finished"]
# report(point, event, status, message); event: "skipped" | "started" | "finished" | "error"
Report = Callable[["Point", str, str, str], None]


@dataclass(frozen=True)
class GridAxis:
    """One `--grid key=v1,v2,...`: a dotted config key and the values it takes (parsed YAML)."""

    key: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Point:
    """One point of the product: its index, folder name, resolved grid values and full config."""

    index: int
    folder: str
    values: dict[str, Any]  # grid key → the value in the resolved config (JSON-able)
    config: ExperimentConfig


@dataclass(frozen=True)
class SweepPlan:
    """A validated sweep: nothing is written until `prepare_sweep_dir`."""

    name: str
    root: Path
    axes: tuple[GridAxis, ...]
    seeds: tuple[int, ...] | None
    base: ExperimentConfig
    points: tuple[Point, ...]

    @property
    def keys(self) -> list[str]:
        return [axis.key for axis in self.axes]

    def folder(self, point: Point) -> Path:
        return self.root / point.folder

    def identity(self) -> dict[str, Any]:
        """What `sweep.yaml` stores and what a rerun must match."""
        return {
            "experiment": self.name,
            "grid": [
                {"key": axis.key, "values": _axis_values(self, i)}
                for i, axis in enumerate(self.axes)
            ],
            "seeds": list(self.seeds) if self.seeds is not None else None,
            "base": self.base.model_dump(mode="json"),
        }


# --- grid parsing and planning -------------------------------------------------------------------


def parse_grid(text: str) -> GridAxis:
    """Parse ``key=v1,v2,...``; the values are YAML like `--set` values (`0.1`, `adam`, `[1, 2]`).

    The value list is read as the YAML flow sequence ``[v1,v2,...]``, so a list value is written
    in brackets: ``--grid eigenvalues=[1,1],[1,0.5]``.
    """
    if "=" not in text:
        raise InputError("--grid", f"expected key=v1,v2,..., got {text!r}")
    key, raw = (part.strip() for part in text.split("=", 1))
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise InputError("--grid", f"expected a dotted key before '=', got {text!r}")
    if not raw:
        raise InputError(f"--grid {key}", "no values given; expected key=v1,v2,...")
    try:
        values = yaml.safe_load(f"[{raw}]")
    except yaml.YAMLError:
        raise InputError(
            f"--grid {key}", f"cannot read the values {raw!r} (YAML scalars separated by commas)"
        ) from None
    if not isinstance(values, list) or not values:
        raise InputError(f"--grid {key}", f"cannot read the values {raw!r}")
    return GridAxis(key=key, values=tuple(values))


def _get_dotted(data: Any, key: str) -> Any:
    for part in key.split("."):
        data = data[part]
    return data


def _override(key: str, value: Any) -> str:
    """`key=value` text that `apply_overrides` parses back to `value` (JSON is YAML)."""
    return f"{key}={json.dumps(value)}"


def _slug(values: dict[str, Any]) -> str:
    def show(v: Any) -> str:
        return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))

    text = ",".join(f"{k}={show(v)}" for k, v in values.items())
    return re.sub(r"[^A-Za-z0-9._+=,-]", "_", text)[:100]


def _axis_values(plan: SweepPlan, i: int) -> list[Any]:
    """The resolved values of axis `i`, in grid order."""
    seen: list[Any] = []
    for point in plan.points:
        value = point.values[plan.axes[i].key]
        if value not in seen:
            seen.append(value)
    return seen


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:10]


def plan_sweep(
    name: str,
    base: ExperimentConfig,
    grids: list[str] | tuple[str, ...],
    *,
    seeds: list[int] | tuple[int, ...] | None = None,
    out: str | Path | None = None,
) -> SweepPlan:
    """Parse the grids and validate every point's config; writes nothing.

    A bad key or value raises `InputError` naming the field (`--grid <key>` or the config field).
    Without `out` the folder is `runs/<name>/sweep-<digest of the sweep>`, so rerunning the same
    command finds the same folder.
    """
    if not grids:
        raise InputError("--grid", "give at least one --grid key=v1,v2,...")
    axes = [parse_grid(text) for text in grids]
    keys = [axis.key for axis in axes]
    for key in keys:
        if keys.count(key) > 1:
            raise InputError(f"--grid {key}", "given twice; give each key once")
    if seeds is not None:  # every point becomes a seed ensemble (`icgd.runs.seeds`)
        base = apply_overrides(base, [_override("seeds", [int(s) for s in seeds])])
    if base.seeds is not None and "seed" in keys:
        raise InputError("--grid seed", "cannot sweep 'seed' of seed ensembles (--seeds)")
    # Each value alone: the field's own error message, and its resolved form (1e-3 → 0.001).
    resolved: list[list[Any]] = []
    for axis in axes:
        column = []
        for value in axis.values:
            config = apply_overrides(base, [_override(axis.key, value)])
            column.append(_get_dotted(config.model_dump(mode="json"), axis.key))
        for j, value in enumerate(column):
            if value in column[:j]:
                raise InputError(
                    f"--grid {axis.key}", f"the value {axis.values[j]!r} is given twice"
                )
        resolved.append(column)
    combos = list(itertools.product(*[range(len(axis.values)) for axis in axes]))
    width = max(3, len(str(len(combos) - 1)))
    points = []
    for index, combo in enumerate(combos):
        overrides = [_override(a.key, a.values[j]) for a, j in zip(axes, combo, strict=True)]
        config = apply_overrides(base, overrides)  # every point validated before anything runs
        values = {a.key: resolved[i][j] for i, (a, j) in enumerate(zip(axes, combo, strict=True))}
        folder = f"{index:0{width}d}-{_slug(values)}"
        points.append(Point(index=index, folder=folder, values=values, config=config))
    plan = SweepPlan(
        name=name,
        root=Path("."),
        axes=tuple(axes),
        seeds=tuple(base.seeds) if base.seeds is not None else None,
        base=base,
        points=tuple(points),
    )
    if out is None:
        out = Path("runs") / name / f"sweep-{_digest(plan.identity())}"
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise InputError("--out", f"{root} is a file; give a folder")
    plan = dataclasses.replace(plan, root=root)
    _check_existing(plan)
    return plan


def _first_difference(saved: Any, given: Any, path: str = "") -> str:
    if isinstance(saved, dict) and isinstance(given, dict):
        for key in [*saved, *(k for k in given if k not in saved)]:
            if saved.get(key) != given.get(key):
                return _first_difference(
                    saved.get(key), given.get(key), f"{path}.{key}".lstrip(".")
                )
    return f"{path or 'config'} (saved {saved!r}, given {given!r})"


def _grid_text(grid: list[dict]) -> str:
    return " ".join(
        f"{g['key']}=" + ",".join(json.dumps(v, separators=(",", ":")) for v in g["values"])
        for g in grid
    )


def _check_existing(plan: SweepPlan) -> None:
    """A rerun into an existing folder must be the same sweep; point folders must fit it."""
    root = plan.root
    if not root.exists() or not any(root.iterdir()):
        return
    if not (root / SWEEP_FILE).is_file():
        raise InputError(
            "--out", f"{root} is not empty and holds no {SWEEP_FILE}; give a new folder"
        )
    saved = load_yaml(root / SWEEP_FILE)
    given = plan.identity()
    if not isinstance(saved, dict) or set(saved) != set(given):
        raise InputError(str(root / SWEEP_FILE), "not a sweep file written by icgd")
    where = f"the sweep in {root}"
    if saved["experiment"] != given["experiment"]:
        raise InputError("NAME", f"{where} is of {saved['experiment']!r}, not {plan.name!r}")
    if saved["grid"] != given["grid"]:
        raise InputError(
            "--grid",
            f"differs from {where} (saved: {_grid_text(saved['grid'])}; "
            f"given: {_grid_text(given['grid'])}); rerun with the saved grid or give a new --out",
        )
    if saved["seeds"] != given["seeds"]:
        raise InputError(
            "--seeds", f"differs from {where} (saved {saved['seeds']}, given {given['seeds']})"
        )
    if saved["base"] != given["base"]:
        difference = _first_difference(saved["base"], given["base"])
        raise InputError("--set", f"the base config differs from {where} at {difference}")
    for point in plan.points:
        folder = plan.folder(point)
        if (folder / "result.json").is_file():
            result = read_result(folder / "result.json")
            if result.config != point.config.model_dump(mode="json"):
                raise InputError(
                    str(folder), "holds a run with another config; move it away and rerun"
                )


def prepare_sweep_dir(plan: SweepPlan) -> Path:
    """Create the sweep folder and write `sweep.yaml` (the plan was checked against an old one)."""
    try:
        plan.root.mkdir(parents=True, exist_ok=True)
        if not (plan.root / SWEEP_FILE).is_file():
            text = yaml.safe_dump(plan.identity(), sort_keys=False)
            atomic_write_text(plan.root / SWEEP_FILE, text)
    except OSError as exc:
        raise InputError("--out", f"cannot write to {plan.root} ({exc.strerror or exc})") from None
    return plan.root


def point_state(folder: Path) -> PointState:
    """new: no folder or an empty one; finished: a final result.json; unfinished: anything else."""
    if not folder.is_dir() or not any(folder.iterdir()):
        return "new"
    try:
        status = read_result(folder / "result.json").status
    except InputError:
        return "unfinished"
    return "finished" if status in FINISHED else "unfinished"


def check_backend(backend: str, address: str | None, max_concurrent: int) -> None:
    """Validate the backend flags (before anything is written)."""
    if backend not in ("local", "ray"):
        raise InputError("--backend", f"unknown backend {backend!r}; allowed: local, ray")
    if address is not None and backend != "ray":
        raise InputError("--address", "only with --backend ray")
    if max_concurrent < 1:
        raise InputError("--max-concurrent", f"must be at least 1, got {max_concurrent}")
    if backend == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise InputError(
                "--backend", "ray is not installed; install the extra: pip install 'icgd[ray]'"
            )


def split_finished(plan: SweepPlan, report: Report | None) -> tuple[dict[int, str], list[Point]]:
    """The statuses of the points already finished (each reported as "skipped") and the points
    still to run, in order."""
    statuses: dict[int, str] = {}
    todo = []
    for point in plan.points:
        folder = plan.folder(point)
        if point_state(folder) == "finished":
            statuses[point.index] = read_result(folder / "result.json").status
            if report is not None:
                report(point, "skipped", statuses[point.index], "already finished")
        else:
            todo.append(point)
    return statuses, todo
