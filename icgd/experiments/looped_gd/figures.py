"""Figures of `looped-gd`: training loss vs theory, heat maps of A and Σ^½AΣ^½, distance to
identity over training, and loss vs test-time loops."""

from __future__ import annotations

from pathlib import Path

from icgd.core.figures import read_arrays, read_metrics, save
from icgd.core.results import Result


def draw(run_dir: Path, result: Result, out: Path) -> list[Path]:
    """Every figure of a looped-gd run folder (module docstring); returns their paths."""
    import matplotlib.pyplot as plt

    evals = [r for r in read_metrics(run_dir / "metrics.jsonl") if r.get("kind") == "eval"]
    stacked = [
        r for r in read_metrics(run_dir / "stacked" / "metrics.jsonl") if r.get("kind") == "eval"
    ]
    arrays = read_arrays(run_dir / "arrays.safetensors")
    paths = [_training_loss(plt, result, evals, stacked, out)]
    if "A" in arrays:
        paths.append(_heatmaps(plt, arrays, out))
    if evals and "dist_whitened" in evals[0]:
        paths.append(_distance_to_identity(plt, result, evals, out))
    if evals and "grad_dominance" in evals[0]:
        paths.append(_gradient_dominance(plt, evals, out))
    if "test_loops" in result.metrics:
        paths.append(_test_time_loops(plt, result, out))
    return paths


def _training_loss(plt, result: Result, evals: list, stacked: list, out: Path) -> Path:
    m, L = result.metrics, result.config["loops"]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    if evals:
        ax.plot([r["step"] for r in evals], [r["loss"] for r in evals], label=f"looped, L={L}")
    if stacked:
        ax.plot(
            [r["step"] for r in stacked],
            [r["loss"] for r in stacked],
            label=f"stacked, {L} layers",
            alpha=0.8,
        )
    if m.get("loss_theory") is not None:
        ax.axhline(
            m["loss_theory"], color="k", ls="--", lw=1, label="theory: looped optimum a*·Σ⁻¹"
        )
    if m.get("loss_stacked_theory") is not None:
        ax.axhline(
            m["loss_stacked_theory"], color="C1", ls=":", lw=1, label="theory: stacked optimum"
        )
    if m.get("loss_gd") is not None:
        ax.axhline(m["loss_gd"], color="grey", ls="-.", lw=1, label=f"{L}-step GD, line-searched")
    ax.set(xlabel="step", ylabel="held-out MSE", yscale="log", title="training loss")
    ax.legend()
    return save(fig, out / "training_loss.png")


def _heatmaps(plt, arrays: dict, out: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    for ax, key, title in ((axes[0], "A", "A"), (axes[1], "whitened", "Σ^½ A Σ^½")):
        M = arrays[key].double().numpy()
        bound = abs(M).max()
        image = ax.imshow(M, cmap="RdBu_r", vmin=-bound, vmax=bound)
        ax.set(title=title, xticks=[], yticks=[])
        fig.colorbar(image, ax=ax, shrink=0.8)
    return save(fig, out / "preconditioner_heatmaps.png")


def _distance_to_identity(plt, result: Result, evals: list, out: Path) -> Path:
    m = result.metrics
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    steps = [r["step"] for r in evals]
    ax.plot(steps, [r["dist_whitened"] for r in evals], label="Dist(Σ^½AΣ^½, I)")
    ax.plot(steps, [r["dist_raw"] for r in evals], label="Dist(A, I)")
    if m.get("dist_raw_theory") is not None:
        ax.axhline(m["dist_raw_theory"], color="k", ls=":", lw=1, label="Dist(Σ⁻¹, I)")
    ax.set(xlabel="step", ylabel="distance to identity", ylim=(0, 1.05), title="A → a*·Σ⁻¹")
    ax.legend()
    return save(fig, out / "distance_to_identity.png")


def _gradient_dominance(plt, evals: list, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot([r["step"] for r in evals[1:]], [r["grad_dominance"] for r in evals[1:]])
    ax.axhline(1 / 16, color="k", ls="--", lw=1, label="1/16 (Gatmiry Thm 3.4, as reported)")
    ax.set(
        xlabel="step",
        ylabel="‖∇_A ℓ‖² / ℓ^{(2L−1)/L}",
        yscale="log",
        title="gradient dominance along training (diagnostic)",
    )
    ax.legend()
    return save(fig, out / "gradient_dominance.png")


def _test_time_loops(plt, result: Result, out: Path) -> Path:
    m, L = result.metrics, result.config["loops"]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(m["test_loops"], m["test_loop_median"], "o-", label="median")
    ax.plot(m["test_loops"], m["test_loop_mean"], "s--", label="mean")
    ax.axvline(L, color="grey", ls=":", lw=1, label=f"trained loops L={L}")
    ax.set(
        xlabel="test-time loops K",
        ylabel="held-out squared error",
        yscale="log",
        title="test-time looping",
    )
    ax.legend()
    return save(fig, out / "test_time_loops.png")
