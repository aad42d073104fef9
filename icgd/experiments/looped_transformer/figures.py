"""Figures of `looped-transformer`: the looped model's error against the loop index (line at b),
the normalised error against the number of in-context points for both models and the baselines,
and the training curves of both models."""

from __future__ import annotations

from pathlib import Path

from icgd.core.figures import read_metrics, save
from icgd.core.results import Result


def draw(run_dir: Path, result: Result, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    m = result.metrics
    b = result.config.get("n_loops", 0)
    depth = result.config.get("depth", 0)
    d = result.config.get("d", 1)
    paths = []

    if m.get("err_vs_loops"):
        fig, ax = plt.subplots(figsize=(5.8, 3.8))
        ax.plot(m["loop_index"], m["err_vs_loops"], "o-", ms=3, label="looped (1 block)")
        if m.get("err_multilayer_k_ge_d") is not None:
            ax.axhline(m["err_multilayer_k_ge_d"], color="C1", ls="--", label=f"{depth}-layer GPT")
        ax.axvline(b, color="k", lw=0.8, ls=":", label=f"b = {b} (trained)")
        ax.set(
            xlabel="loop index t",
            ylabel="normalised error, mean over k ≥ d",
            yscale="log",
            title="test-time looping",
        )
        ax.legend(fontsize=8)
        paths.append(save(fig, out / "error_vs_loops.png"))

    if m.get("k"):
        fig, ax = plt.subplots(figsize=(5.8, 3.8))
        series = (
            ("err_looped", "o-", f"looped, b = {b}"),
            ("err_multilayer", "s-", f"{depth}-layer GPT"),
            ("err_least_squares", "k--", "least squares"),
            ("err_knn3", "^:", "3-NN"),
            ("err_averaging", "v:", "averaging"),
        )
        for key, style, label in series:
            if m.get(key) is not None:
                ax.plot(m["k"], m[key], style, ms=4, label=label)
        ax.axvline(d, color="grey", lw=0.8)
        ax.set(
            xlabel="in-context points k",
            ylabel="normalised squared error (/d)",
            ylim=(-0.05, 1.6),
            title="linear regression",
        )
        ax.legend(fontsize=8)
        paths.append(save(fig, out / "error_vs_points.png"))

    fig, ax = plt.subplots(figsize=(5.8, 3.8))
    drawn = False
    for sub, label in (("looped", f"looped, b = {b}"), ("multilayer", f"{depth}-layer GPT")):
        evals = [
            r for r in read_metrics(run_dir / sub / "metrics.jsonl") if r.get("kind") == "eval"
        ]
        if evals:
            ax.plot(
                [r["step"] for r in evals],
                [r.get("normalised_error", r["loss"] / d) for r in evals],
                label=label,
            )
            drawn = True
    if drawn:
        ax.set(xlabel="step", ylabel="held-out normalised error", yscale="log", title="training")
        ax.legend(fontsize=8)
        paths.append(save(fig, out / "training_curves.png"))
    else:
        plt.close(fig)
    return paths
