"""Figures of `function-classes`: per class, the normalised error against the number of
in-context points for the model and every baseline (Garg et al.'s Figures 2–4); the shift table
(each shift's error, mean over k < d and over k ≥ d, for the model and the baselines); and the
training curves of every class's model."""

from __future__ import annotations

import math
from pathlib import Path

from icgd.core.figures import read_metrics, save
from icgd.core.results import Result

STYLE = {
    "model": ("o-", "transformer"),
    "least_squares": ("k--", "least squares"),
    "ridge": ("--", "ridge (Bayes λ)"),
    "lasso": ("--", "Lasso"),
    "knn3": ("^:", "3-NN"),
    "averaging": ("v:", "averaging"),
    "relu_net": ("s:", "2-layer ReLU net (per prompt)"),
    "decision_tree": ("d:", "greedy tree"),
    "boosting": ("x:", "gradient boosting"),
}


def _predictors(metrics: dict, kind: str) -> list[str]:
    return [p for p in STYLE if f"{kind}.{p}.err" in metrics]


def _shift_names(config: dict) -> list[str]:
    """Row names of the shift table: "none", then each shift of the config, in order."""
    names = ["none"]
    for shift in config.get("shifts", []):
        kind = shift.get("kind", "?")
        if kind in ("scale_x", "scale_y"):
            kind += f" ×{shift.get('factor', 0):g}"
        elif kind == "noisy_y":
            kind += f" σ={shift.get('noise_std', 0):g}"
        names.append(kind)
    return names


def draw(run_dir: Path, result: Result, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    m = result.metrics
    d = result.config.get("d", 1)
    classes = list(result.config.get("classes", []))
    paths = []

    for kind in classes:
        if not m.get(f"{kind}.model.err"):
            continue
        fig, ax = plt.subplots(figsize=(5.8, 3.8))
        for name in _predictors(m, kind):
            style, label = STYLE[name]
            err = m[f"{kind}.{name}.err"]
            ax.plot(range(len(err)), err, style, ms=4, label=label)
        ax.axvline(d, color="grey", lw=0.8)
        ax.set(
            xlabel="in-context points k",
            ylabel="normalised squared error (/d)",
            ylim=(-0.05, 1.6),
            title=kind.replace("_", " "),
        )
        ax.legend(fontsize=7)
        paths.append(save(fig, out / f"error_vs_points_{kind}.png"))

    rows, row_labels, columns = [], [], list(STYLE)
    shift_names = _shift_names(result.config)
    for kind in classes:
        for i, shift in enumerate(shift_names):
            cells = []
            for name in columns:
                lo = m.get(f"{kind}.{name}.shift_err_k_lt_d") or []
                hi = m.get(f"{kind}.{name}.shift_err_k_ge_d") or []
                cells.append(f"{_num(lo[i])} / {_num(hi[i])}" if i < len(hi) else "")
            rows.append(cells)
            row_labels.append(f"{kind}: {shift}")
    used = [j for j in range(len(columns)) if any(r[j] for r in rows)]
    if rows and used:
        fig, ax = plt.subplots(figsize=(1.7 * len(used) + 2.5, 0.32 * len(rows) + 1.2))
        ax.axis("off")
        table = ax.table(
            cellText=[[r[j] for j in used] for r in rows],
            rowLabels=row_labels,
            colLabels=[STYLE[columns[j]][1] for j in used],
            loc="center",
        )
        table.auto_set_font_size(False)
        table.set_fontsize(7)
        ax.set_title("normalised error under test-time shifts: mean over k < d / over k ≥ d")
        paths.append(save(fig, out / "shift_table.png"))

    fig, ax = plt.subplots(figsize=(5.8, 3.8))
    drawn = False
    for kind in classes:
        evals = [
            r for r in read_metrics(run_dir / kind / "metrics.jsonl") if r.get("kind") == "eval"
        ]
        if evals:
            ax.plot(
                [r["step"] for r in evals],
                [r.get("normalised_error", math.nan) for r in evals],
                label=kind,
            )
            drawn = True
    if drawn:
        ax.set(xlabel="step", ylabel="held-out normalised error", yscale="log", title="training")
        ax.legend(fontsize=8)
        paths.append(save(fig, out / "training_curves.png"))
    else:
        plt.close(fig)
    return paths


def _num(x) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.3g}"
