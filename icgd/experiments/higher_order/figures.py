"""Figures of `higher-order`: the iterations each layer matches, Newton and GD (Fu et al.'s
Figure 3, condensed to one panel); the SimE heat maps of every layer against Newton iterations
and against GD steps (GD on a log-spaced grid of k); the error per prefix of the model and of
least squares; and the training curve."""

from __future__ import annotations

import math
from pathlib import Path

from icgd.core.figures import read_arrays, read_metrics, save
from icgd.core.results import Result
from icgd.experiments.higher_order.analysis import fitted_layers


def draw(run_dir: Path, result: Result, out: Path) -> list[Path]:
    """Every figure of a higher-order run folder (module docstring); returns their paths."""
    import matplotlib.pyplot as plt

    m = result.metrics
    paths = []
    if m.get("newton.matched_steps") and m.get("gd.matched_steps"):
        paths.append(_layer_map(plt, result, out))
    arrays = read_arrays(run_dir / "arrays.safetensors")
    for key, name in (("newton", "iterative-newton"), ("gd", "gd")):
        table = arrays.get(f"probe.sime.{name}")
        if table is not None:
            paths.append(_heat_map(plt, table, m.get(f"{key}.matched_steps", []), key, out))
    if m.get("model.err"):
        paths.append(_errors(plt, result, out))
    curve = _training_curve(plt, run_dir, out)
    return paths + ([curve] if curve is not None else [])


def _layer_map(plt, result: Result, out: Path) -> Path:
    m = result.metrics
    r2_min = result.config.get("tolerances", {}).get("probe_r2", 0.5)
    newton, gd = m["newton.matched_steps"], m["gd.matched_steps"]
    layers = list(range(len(newton)))
    fitted = fitted_layers(m.get("probe_r2", []), r2_min)
    fig, ax = plt.subplots(figsize=(6.2, 4.0))
    ax.plot(layers, newton, "o-", color="C3", label="iterative Newton: iterations k")
    slope, intercept = m.get("newton.slope"), m.get("newton.intercept")
    if fitted and slope is not None and intercept is not None and math.isfinite(slope):
        xs = [fitted[0], fitted[-1]]
        ax.plot(xs, [intercept + slope * x for x in xs], "--", color="C3", lw=1, label="linear fit")
    ax.set(xlabel="layer ℓ (0: the embedding)", ylabel="Newton iterations matched")
    twin = ax.twinx()
    twin.plot(layers, [g + 1 for g in gd], "s-", color="C0", label="GD: steps k (+1, log scale)")
    # the twin's x axis is hidden; its label only names the shared axis
    twin.set(yscale="log", ylabel="GD steps matched + 1", xlabel=ax.get_xlabel())
    for layer in fitted:
        ax.axvspan(layer - 0.5, layer + 0.5, color="grey", alpha=0.08, lw=0)
    handles = ax.get_legend_handles_labels()
    extra = twin.get_legend_handles_labels()
    ax.legend(handles[0] + extra[0], handles[1] + extra[1], fontsize=7, loc="upper left")
    ax.set_title(f"iterations each layer matches (SimE); shaded: probe R² ≥ {r2_min:g}")
    return save(fig, out / "layer_map.png")


def _log_columns(K: int) -> list[int]:
    """k = 0, 1, 2, 4, 8, … up to K (and K itself)."""
    cols, k = [0], 1
    while k < K:
        cols.append(k)
        k *= 2
    return [*cols, K] if K > 0 else cols


def _heat_map(plt, table, matched: list, key: str, out: Path) -> Path:
    K = table.shape[1] - 1
    cols = list(range(K + 1)) if key == "newton" else _log_columns(K)
    shown = table[:, cols].double().nan_to_num(nan=-1.0).numpy()
    fig, ax = plt.subplots(figsize=(0.36 * len(cols) + 2.6, 0.42 * table.shape[0] + 1.6))
    image = ax.imshow(shown, aspect="auto", cmap="viridis", vmin=min(0.0, shown.min()), vmax=1)
    for layer, k in enumerate(matched):
        col = min(range(len(cols)), key=lambda j: abs(math.log1p(cols[j]) - math.log1p(k)))
        ax.add_patch(
            plt.Rectangle((col - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor="red", lw=1.5)
        )
    ax.set_xticks(range(len(cols)), [str(c) for c in cols], fontsize=7)
    ax.set_yticks(range(table.shape[0]))
    title = "iterative Newton: iterations k" if key == "newton" else "GD: steps k (log grid)"
    ax.set(xlabel=title, ylabel="layer (0: the embedding)", title="SimE, layer vs iterate")
    ax.grid(False)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return save(fig, out / f"sime_{key}.png")


def _errors(plt, result: Result, out: Path) -> Path:
    m = result.metrics
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    for name, style, label in (
        ("model", "o-", "transformer"),
        ("least_squares", "k--", "least squares"),
    ):
        err = m.get(f"{name}.err") or []
        ax.plot(
            range(len(err)), [math.nan if e is None else e for e in err], style, ms=4, label=label
        )
    ax.axvline(result.config.get("d", 1), color="grey", lw=0.8)
    ax.set(xlabel="in-context points k", ylabel="normalised squared error (/d)", ylim=(-0.05, 1.4))
    ax.legend(fontsize=8)
    return save(fig, out / "error_vs_points.png")


def _training_curve(plt, run_dir: Path, out: Path) -> Path | None:
    evals = [r for r in read_metrics(run_dir / "metrics.jsonl") if r.get("kind") == "eval"]
    if not evals:
        return None
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    ax.plot([r["step"] for r in evals], [r.get("normalised_error", math.nan) for r in evals])
    ax.set(xlabel="step", ylabel="held-out normalised error (all prefixes)", yscale="log")
    ax.set_title("training")
    return save(fig, out / "training_curve.png")
