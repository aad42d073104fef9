"""The summary figure of a sweep, drawn from its `sweep.json` only: `draw_sweep(sweep_dir)`.

`figures/sweep.png`: a metric against the first grid key, one line per combination of the other
grid keys. The metric is a column of the table (`metrics.loss`, `claims.<name>.measured`) or a
bare metric or claim name; by default the first claim's measured value.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from icgd.core.errors import InputError


def read_table(path: Path) -> dict[str, Any]:
    """The content of a `sweep.json` (written by `icgd.runs.sweep.write_tables`)."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(str(path), "no sweep.json here (is this a sweep folder?)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(str(path), f"cannot read sweep.json ({exc.__class__.__name__})") from None


def resolve_metric(columns: list[str], metric: str | None) -> str:
    """The table column to plot for `metric` (see the module docstring)."""
    numeric = [c for c in columns if c.startswith("metrics.") or c.endswith(".measured")]
    if metric is None:
        claims = [c for c in columns if c.startswith("claims.") and c.endswith(".measured")]
        if claims:
            return claims[0]
        if numeric:
            return numeric[0]
        raise InputError("--metric", "the sweep has no metrics to plot yet")
    for column in (metric, f"metrics.{metric}", f"claims.{metric}.measured"):
        if column in numeric:
            return column
    allowed = ", ".join(
        c.removeprefix("metrics.").removeprefix("claims.").removesuffix(".measured")
        for c in numeric
    )
    raise InputError("--metric", f"unknown metric {metric!r}; allowed: {allowed}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def draw_sweep(sweep_dir: str | Path, metric: str | None = None) -> Path:
    """Draw `figures/sweep.png` of the sweep in `sweep_dir`; returns its path."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    from icgd.core.figures import save
    from icgd.core.style import apply_style

    apply_style()
    sweep_dir = Path(sweep_dir)
    table = read_table(sweep_dir / "sweep.json")
    columns, rows = table["columns"], table["rows"]
    column = resolve_metric(columns, metric)
    keys = [g["key"] for g in table["grid"]]
    x_key, others = keys[0], keys[1:]
    x_values = [g["values"] for g in table["grid"]][0]
    numeric_x = all(_is_number(v) for v in x_values)

    def x_of(value: Any) -> float:
        return float(value) if numeric_x else float(x_values.index(value))

    lines: dict[tuple, list[tuple[float, float]]] = {}
    for row in rows:
        group = tuple(str(row[k]) for k in others)
        y = row.get(column)
        y = float(y) if _is_number(y) else math.nan
        lines.setdefault(group, []).append((x_of(row[x_key]), y))

    fig, ax = plt.subplots(figsize=(6, 4))
    for group, pairs in lines.items():
        pairs.sort()
        label = ", ".join(f"{k}={v}" for k, v in zip(others, group, strict=True)) or None
        ax.plot([p[0] for p in pairs], [p[1] for p in pairs], marker="o", label=label)
    if numeric_x:
        positive = [float(v) for v in x_values if float(v) > 0]
        if len(positive) == len(x_values) and max(positive) >= 100 * min(positive):
            ax.set_xscale("log")
    else:
        ax.set_xticks(range(len(x_values)), [_label(v) for v in x_values])
    ys = [y for pairs in lines.values() for _, y in pairs if math.isfinite(y)]
    if ys and min(ys) > 0 and max(ys) >= 100 * min(ys):
        ax.set_yscale("log")
    ax.set(xlabel=x_key, ylabel=column, title=f"{table['experiment']}: {column} vs {x_key}")
    if others:
        ax.legend(fontsize="small")
    out = sweep_dir / "figures"
    out.mkdir(exist_ok=True)
    return save(fig, out / "sweep.png")
