"""Figures of `in-context-td`: P and Q heat maps over training, the TD-shape measures and the TD
loss along training, and the MSVE to the true values against context length for the trained
model, the hand-built TD transformer and explicit batch TD."""

from __future__ import annotations

from pathlib import Path

from icgd.core.figures import read_arrays, save
from icgd.core.results import Result
from icgd.core.style import OKABE_ITO


def _heatmaps(plt, arrays: dict, steps: list[int], d: int, out: Path) -> Path:
    """One column per snapshot, P on top and Q below, each on a symmetric colour scale; the lines
    mark the φ, γφ', r blocks of the prompt."""
    fig, axes = plt.subplots(2, len(steps), figsize=(2.4 * len(steps), 4.8), squeeze=False)
    for col, step in enumerate(steps):
        for row, name in enumerate(("P", "Q")):
            ax, mat = axes[row, col], arrays[f"{name}_step{step}"].numpy()
            scale = max(abs(mat).max(), 1e-12)
            image = ax.imshow(mat, cmap="RdBu_r", vmin=-scale, vmax=scale)
            for edge in (d - 0.5, 2 * d - 0.5):
                ax.axhline(edge, color="grey", lw=0.5)
                ax.axvline(edge, color="grey", lw=0.5)
            ax.set(xticks=[], yticks=[], title=f"{name}, step {step}")
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle("learned P and Q (blocks: φ, γφ', r); TD: P = e_D e_Dᵀ, Q[:d, :2d] = [−C, C]")
    return save(fig, out / "PQ_over_training.png")


def draw(run_dir: Path, result: Result, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    m, cfg = result.metrics, result.config
    paths: list[Path] = []
    arrays = read_arrays(run_dir / "arrays.safetensors")
    steps = [int(s) for s in m.get("snapshot_steps", []) if f"P_step{int(s)}" in arrays]
    if steps:
        paths.append(_heatmaps(plt, arrays, steps, int(cfg["d"]), out))

    if m.get("curve_step"):
        fig, (ax_loss, ax_shape) = plt.subplots(1, 2, figsize=(11, 3.8))
        ax_loss.plot(m["curve_step"], m["curve_td_loss"], color=OKABE_ITO["blue"])
        ax_loss.set(xlabel="Adam step", ylabel="mean squared TD error (held-out batch)",
                    yscale="log", title="multi-task TD loss")  # fmt: skip
        shape = (
            ("curve_p_mass", "P mass on value entry", "#0072B2"),
            ("curve_q_mass", "Q mass in [:d, :2d]", "#E69F00"),
            ("curve_q_pair_cos", "cos(Q[:d,:d], Q[:d,d:2d])", "#009E73"),
        )
        for key, label, color in shape:
            ax_shape.plot(m["curve_step"], m[key], label=label, color=color)
        ax_shape.axhline(1.0, color="grey", lw=0.6, ls="--")
        ax_shape.axhline(-1.0, color="grey", lw=0.6, ls="--")
        ax_shape.set(xlabel="Adam step", ylabel="measure (TD: 1, 1, −1)", title="TD shape")
        ax_shape.legend(fontsize=8)
        paths.append(save(fig, out / "training.png"))

    if m.get("context_lengths") and m.get("model_context_lengths"):
        fig, (ax_model, ax_td) = plt.subplots(1, 2, figsize=(12, 4.2))
        layers, alpha = cfg["construction_layers"], cfg["construction_alpha"]
        built = f"TD transformer ({layers} layers, α = {alpha:g})"
        panels = (
            (ax_model, m["model_context_lengths"], "_train", cfg["rewards"],
             (("model", f"trained model ({cfg['n_layers']} layers)", "o-", "#0072B2"),
              ("construction", built, "s-", "#E69F00"))),
            (ax_td, m["context_lengths"], "", cfg["curve_rewards"],
             (("construction", built, "s-", "#E69F00"),
              ("td", "explicit batch TD (same α, steps)", "x", "#000000"))),
        )  # fmt: skip
        for ax, n, suffix, rewards, lines in panels:
            for key, label, style, color in lines:
                mean, se = m[f"msve_{key}_vs_n{suffix}"], m[f"msve_{key}_vs_n{suffix}_se"]
                ax.errorbar(n, mean, yerr=se, fmt=style, ms=4, capsize=2, label=label,
                            color=color)  # fmt: skip
            ax.set(xscale="log", yscale="log", xlabel="context length n (transitions)",
                   ylabel="MSVE to the true values",
                   title=f"{cfg['mrp']} processes, {rewards} rewards")  # fmt: skip
            ax.set_xticks(n, [str(int(x)) for x in n])
            ax.xaxis.set_minor_locator(plt.NullLocator())
            ax.legend(fontsize=8)
        ax_model.axvline(cfg["n"], color="grey", lw=0.6, ls=":")
        paths.append(save(fig, out / "msve_vs_context_length.png"))
    return paths
