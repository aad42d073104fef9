"""Figures of `stacked-gd`: training loss vs theory, per-layer heat maps of Γ_l and Σ^½Γ_lΣ^½
(and B_l for the relaxed set), sorted per-layer scales over training, and loss vs L and vs n."""

from __future__ import annotations

from pathlib import Path

from icgd.core.figures import read_arrays, read_metrics, save
from icgd.core.results import Result


def _heatmaps(arrays: dict, rows: list[tuple[str, str]], L: int):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), L, figsize=(2.6 * L + 0.8, 2.5 * len(rows)), squeeze=False)
    for r, (key, title) in enumerate(rows):
        M_all = arrays[key].double().numpy()
        for layer in range(L):
            ax = axes[r][layer]
            M = M_all[layer]
            bound = abs(M).max() or 1.0
            image = ax.imshow(M, cmap="RdBu_r", vmin=-bound, vmax=bound)
            ax.set(title=f"{title}, layer {layer + 1}", xticks=[], yticks=[])
            fig.colorbar(image, ax=ax, shrink=0.75)
    return fig


def _loss_curve(ax, xs, m: dict, prefix: str, xlabel: str) -> None:
    series = (
        ("loss_trained", "o-", "trained LSA"),
        ("loss_gd", "s--", "GD, line-searched"),
        ("loss_pgd", "^--", "Σ⁻¹-PGD, line-searched"),
        ("loss_optimal_pgd", "x:", "per-layer a_l*·Σ⁻¹ (held-out)"),
        ("loss_theory", "k-", "theory optimum (population)"),
    )
    for key, style, label in series:
        values = m.get(f"{prefix}{key}")
        if values is not None:
            ax.plot(xs, values, style, label=label, lw=1 if key == "loss_theory" else 1.5)
    ax.set(xlabel=xlabel, ylabel="held-out MSE", yscale="log")
    ax.legend(fontsize=8)


def draw(run_dir: Path, result: Result, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    m = result.metrics
    L = result.config["layers"]
    evals = [r for r in read_metrics(run_dir / "metrics.jsonl") if r.get("kind") == "eval"]
    arrays = read_arrays(run_dir / "arrays.safetensors")
    paths = []

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    if evals:
        ax.plot([r["step"] for r in evals], [r["loss"] for r in evals], label=f"{L} stacked layers")
    if m.get("loss_theory") is not None:
        ax.axhline(m["loss_theory"], color="k", ls="--", lw=1, label="theory: a_l*·Σ⁻¹")
    if m.get("loss_pgd") is not None:
        ax.axhline(m["loss_pgd"], color="C2", ls=":", lw=1, label=f"{L}-step Σ⁻¹-PGD")
    if m.get("loss_gd") is not None:
        ax.axhline(m["loss_gd"], color="grey", ls="-.", lw=1, label=f"{L}-step GD")
    ax.set(xlabel="step", ylabel="held-out MSE", yscale="log", title="training loss")
    ax.legend()
    paths.append(save(fig, out / "training_loss.png"))

    if "preconditioners" in arrays:
        rows = [("preconditioners", "Γ"), ("whitened", "Σ^½ Γ Σ^½")]
        if "B" in arrays:
            rows.append(("B", "B"))
        paths.append(save(_heatmaps(arrays, rows, L), out / "layer_heatmaps.png"))

    if evals and "alpha_0" in evals[0]:
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        steps = [r["step"] for r in evals]
        for i in range(L):
            ax.plot(steps, [r[f"alpha_{i}"] for r in evals], color=f"C{i}", label=f"α_({i + 1})")
        for i, a in enumerate(m.get("alphas_theory", [])):
            ax.axhline(a, color=f"C{i}", ls=":", lw=1)
        ax.set(xlabel="step", ylabel="sorted per-layer scale", title="α_l → a_l* (dotted)")
        ax.legend()
        paths.append(save(fig, out / "layer_scales.png"))

    if "sweep_layers" in m:
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        _loss_curve(ax, m["sweep_layers"], m, "sweep_L_", "layers / steps L")
        ax.set(title=f"loss vs depth (n = {result.config['n']})")
        paths.append(save(fig, out / "loss_vs_layers.png"))
    if "sweep_contexts" in m:
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        _loss_curve(ax, m["sweep_contexts"], m, "sweep_n_", "context length n")
        ax.set(xscale="log", title=f"loss vs context length (L = {L})")
        paths.append(save(fig, out / "loss_vs_context.png"))
    return paths
