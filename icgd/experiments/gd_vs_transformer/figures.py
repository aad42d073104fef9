"""Figures of `gd-vs-transformer`: training curves against GD / GD++, the loss along the path from
the trained weights to the construction, the out-of-distribution sweep, and the trained P, Q."""

from __future__ import annotations

from pathlib import Path

from icgd.core.figures import read_arrays, read_metrics, save
from icgd.core.results import Result


def _heatmap(fig, ax, M, title: str) -> None:
    bound = float(abs(M).max()) or 1.0
    image = ax.imshow(M, cmap="RdBu_r", vmin=-bound, vmax=bound)
    ax.set(title=title, xticks=[], yticks=[])
    fig.colorbar(image, ax=ax, shrink=0.75)


def draw(run_dir: Path, result: Result, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    m = result.metrics
    L = result.config.get("depth", 0)
    arrays = read_arrays(run_dir / "arrays.safetensors")
    paths = []

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    panels = (
        ("one_layer", "one layer", (("loss_gd", "GD, 1 step (line-searched)"),)),
        (
            "deep",
            f"{L} layers",
            (
                ("loss_gd_steps", f"GD, {L} steps (line-searched)"),
                ("loss_gdpp", f"GD++, {L} steps"),
            ),
        ),
    )
    for ax, (sub, title, lines) in zip(axes, panels, strict=True):
        evals = [
            r for r in read_metrics(run_dir / sub / "metrics.jsonl") if r.get("kind") == "eval"
        ]
        if evals:
            ax.plot([r["step"] for r in evals], [r["loss"] for r in evals], label="trained LSA")
        for (key, label), style in zip(lines, ("--", ":"), strict=False):
            if m.get(key) is not None:
                ax.axhline(m[key], color="k", ls=style, lw=1, label=label)
        ax.set(xlabel="step", ylabel="held-out MSE", yscale="log", title=f"training, {title}")
        ax.legend(fontsize=8)
    paths.append(save(fig, out / "training_loss.png"))

    if m.get("interpolation_t"):
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        ax.plot(m["interpolation_t"], m["interpolation_loss"], "o-", label="interpolated model")
        ax.axhline(m["loss_gd"], color="k", ls="--", lw=1, label="GD, 1 step")
        ax.set(
            xlabel="t  (0 = trained, 1 = GD construction)",
            ylabel="test MSE",
            title="θ(t) = (1 − t) θ_trained + t θ_GD",
        )
        ax.legend(fontsize=8)
        paths.append(save(fig, out / "interpolation.png"))

    if m.get("ood_scales"):
        fig, ax = plt.subplots(figsize=(5.8, 4))
        series = (
            ("ood_loss_one_layer", "o-", "1-layer LSA"),
            ("ood_loss_gd", "s--", "GD, 1 step"),
            ("ood_loss_deep", "o-", f"{L}-layer LSA"),
            ("ood_loss_gd_steps", "s--", f"GD, {L} steps"),
            ("ood_loss_gdpp", "^:", f"GD++, {L} steps"),
        )
        for key, style, label in series:
            if m.get(key) is not None:
                ax.plot(m["ood_scales"], m[key], style, label=label)
        ax.axvline(1.0, color="grey", lw=0.8)
        ax.set(
            xlabel="input range α  (test x ~ U(−α, α)^d, trained at α = 1)",
            ylabel="test MSE",
            yscale="log",
            title="out of distribution",
        )
        ax.legend(fontsize=8)
        paths.append(save(fig, out / "ood_sweep.png"))

    if "one_layer_P" in arrays:
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
        _heatmap(fig, axes[0], arrays["one_layer_P"].numpy(), "one layer: P")
        _heatmap(fig, axes[1], arrays["one_layer_Q"].numpy(), "one layer: Q")
        paths.append(save(fig, out / "one_layer_P_Q.png"))
    if "deep_P" in arrays:
        P, Q = arrays["deep_P"].numpy(), arrays["deep_Q"].numpy()
        fig, axes = plt.subplots(2, P.shape[0], figsize=(3 * P.shape[0] + 0.5, 5.4), squeeze=False)
        for layer in range(P.shape[0]):
            _heatmap(fig, axes[0][layer], P[layer], f"P, layer {layer + 1}")
            _heatmap(fig, axes[1][layer], Q[layer], f"Q, layer {layer + 1}")
        paths.append(save(fig, out / "deep_P_Q.png"))
    return paths
