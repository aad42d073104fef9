"""Figures drawn from a saved run folder (`result.json`, `metrics.jsonl`, `arrays.safetensors`).

`draw_figures(run_dir)` looks the run's experiment up in the registry and calls its own
`figures(run_dir, result, out)` (each experiment's `figures.py`) in the shared style of
`icgd.core.style`; every figure is written as PNG and SVG (`icgd.core.figures.save`). It reads
files only, so figures can be redrawn without rerunning. The CLI calls it after a run and hands
it to the HTML report for `icgd report --redraw`: the reporting layer reads run folders and never
imports an experiment.
"""

from __future__ import annotations

from pathlib import Path

from icgd.core.results import read_result
from icgd.core.style import apply_style

__all__ = ["draw_figures"]


def draw_figures(run_dir: str | Path) -> list[Path]:
    """Draw every figure of the run's experiment into `run_dir/figures/`; returns the paths.

    A run of an experiment that is not registered here (a plugin not installed), or a run that
    did not finish, has no figures: an empty list.
    """
    import matplotlib

    from icgd.experiments.api import EXPERIMENTS

    matplotlib.use("Agg")  # files only, never a window
    run_dir = Path(run_dir)
    result = read_result(run_dir / "result.json")
    if result.experiment not in EXPERIMENTS or result.status in ("interrupted", "error"):
        return []
    out = run_dir / "figures"
    out.mkdir(exist_ok=True)
    apply_style()
    return list(EXPERIMENTS.get(result.experiment).figures(run_dir, result, out))
