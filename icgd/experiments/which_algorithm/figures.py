"""Figures of `which-algorithm` (Akyürek et al. 2023), drawn from `result.json` and
`arrays.safetensors` only:

- `spd_heatmap.png`: SPD(model, algorithm) averaged over k, depth × algorithm, one panel per σ;
- `spd_vs_k.png`: SPD to one-step GD and to ridge at the Bayes λ, depth × k, one row per σ;
- `loss_vs_k.png`: test loss vs context length k for every model and baseline, one panel per σ;
- `closest_lambda.png`: the ridge λ closest (SPD) to each model vs depth, with the Bayes λ, and
  ridge's test error over the λ grid.

Array layout (written by `icgd.experiments.which_algorithm.experiment`): `spd_k_<a>`, `ilwd_k_<a>`,
`loss_model_k` (S, D, K) for S noise levels, D depths, K context lengths; `spd_ridge`
(S, D, G); `loss_k_<a>` (S, K); `loss_ridge` (S, G); `depths`, `noise_levels`, `lambda_grid`.
"""

from __future__ import annotations

import math
from pathlib import Path

from icgd.core.figures import read_arrays, save
from icgd.core.results import Result

# Same names and order as the experiment's arrays; labels for the plots.
LABELS = {"gd": "one-step GD", "bayes": "ridge, Bayes λ", "ols": "OLS (min-norm)", "knn": "3-NN"}

# The model family (`config.model.kind`; runs before the field existed are LSA) and the letter of
# its depth: layers L, or loops b for the looped model.
FAMILIES = {"lsa": ("LSA", "L"), "softmax": ("softmax", "L"), "gpt": ("GPT", "L"),
            "looped": ("looped", "b")}  # fmt: skip


def _family(result: Result) -> tuple[str, str]:
    model = result.config.get("model") if isinstance(result.config, dict) else None
    kind = model.get("kind", "lsa") if isinstance(model, dict) else "lsa"
    return FAMILIES.get(kind, (kind, "L"))


def _log_image(ax, values, xlabels, ylabels, title: str, fig):
    """A heat map of log10(values) with every cell annotated with its value."""
    import matplotlib.colors as mcolors
    import numpy as np

    V = np.asarray(values, dtype=float)
    finite = V[np.isfinite(V) & (V > 0)]
    lo, hi = (finite.min(), finite.max()) if finite.size else (1e-3, 1.0)
    shown = np.where(np.isfinite(V) & (V > 0), V, np.nan)
    image = ax.imshow(
        shown,
        cmap="viridis",
        norm=mcolors.LogNorm(vmin=lo, vmax=max(hi, lo * 1.0001)),
        aspect="auto",
    )
    ax.set(title=title, xticks=range(len(xlabels)), yticks=range(len(ylabels)))
    ax.set_xticklabels(
        xlabels,
        fontsize=8,
        rotation=30 if len(xlabels) <= 6 else 0,
        ha="right" if len(xlabels) <= 6 else "center",
    )
    ax.set_yticklabels(ylabels, fontsize=8)
    if V.shape[1] <= 6:  # annotate small tables only
        for i in range(V.shape[0]):
            for j in range(V.shape[1]):
                text = "nan" if not math.isfinite(V[i, j]) else f"{V[i, j]:.2g}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color="w")
    fig.colorbar(image, ax=ax, shrink=0.8)


def draw(run_dir: Path, result: Result, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    arrays = read_arrays(run_dir / "arrays.safetensors")
    if "depths" not in arrays:
        return []
    depths = [int(v) for v in arrays["depths"].tolist()]
    noises = arrays["noise_levels"].tolist()
    algos = [a for a in LABELS if f"spd_k_{a}" in arrays]
    K = arrays["loss_model_k"].shape[-1]
    ks = list(range(1, K + 1))
    S = len(noises)
    family, letter = _family(result)
    depth_labels = [f"{letter}={L}" for L in depths]
    paths = []

    fig, axes = plt.subplots(
        1, S, figsize=(4.2 * S, 0.45 * len(depths) + 2.6), squeeze=False, layout="constrained"
    )
    for s, noise in enumerate(noises):
        table = [
            [arrays[f"spd_k_{a}"][s, i].mean().item() for a in algos] for i in range(len(depths))
        ]
        _log_image(
            axes[0][s], table, [LABELS[a] for a in algos], depth_labels, f"SPD, σ={noise:g}", fig
        )
    fig.suptitle(f"SPD({family} model, algorithm), mean over k (log colour)")
    paths.append(save(fig, out / "spd_heatmap.png"))

    main = [a for a in ("gd", "bayes") if a in algos]
    fig, axes = plt.subplots(
        S,
        len(main),
        figsize=(5 * len(main), (0.35 * len(depths) + 1.8) * S),
        squeeze=False,
        layout="constrained",
    )
    for s, noise in enumerate(noises):
        for c, a in enumerate(main):
            values = arrays[f"spd_k_{a}"][s].double().numpy()  # (D, K)
            _log_image(
                axes[s][c], values, ks, depth_labels, f"SPD to {LABELS[a]}, σ={noise:g}", fig
            )
            axes[s][c].set_xlabel("context length k")
    paths.append(save(fig, out / "spd_vs_k.png"))

    fig, axes = plt.subplots(1, S, figsize=(5 * S, 3.8), squeeze=False, layout="constrained")
    for s, noise in enumerate(noises):
        ax = axes[0][s]
        for i, L in enumerate(depths):
            ax.plot(
                ks,
                arrays["loss_model_k"][s, i].tolist(),
                "o-",
                ms=3,
                label=f"{family}, {letter}={L}",
            )
        for a, style in zip(algos, ("k--", "k-", "k:", "k-."), strict=False):
            ax.plot(ks, arrays[f"loss_k_{a}"][s].tolist(), style, lw=1, label=LABELS[a])
        ax.set(xlabel="context length k", ylabel="test MSE", yscale="log", title=f"σ={noise:g}")
        ax.legend(fontsize=7)
    paths.append(save(fig, out / "loss_vs_k.png"))

    paths.append(_closest_lambda(arrays, depths, noises, family, letter, out))
    return paths


def _closest_lambda(arrays, depths, noises, family: str, letter: str, out: Path) -> Path:
    """`closest_lambda.png`: the SPD-closest ridge λ by depth, and ridge's error over the grid."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    grid = arrays["lambda_grid"].tolist()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    closest = {}
    for s, noise in enumerate(noises):
        values = arrays["spd_ridge"][s]  # (D, G)
        closest[noise] = [grid[int(values[i].argmin())] for i in range(len(depths))]
        # Shrinking markers: equal values at several σ stay visible on top of each other.
        left.plot(
            depths,
            closest[noise],
            "-" + "osD^v"[s % 5],
            ms=9 - 2 * (s % 4),
            color=f"C{s}",
            label=f"closest λ, σ={noise:g}",
        )
        if noise > 0:
            left.axhline(noise**2, color=f"C{s}", ls=":", lw=1, label=f"Bayes λ = {noise**2:g}")
        loss = arrays["loss_ridge"][s].tolist()
        right.plot(grid, loss, "o-", ms=3, color=f"C{s}", label=f"σ={noise:g}")
        if noise > 0:
            right.axvline(noise**2, color=f"C{s}", ls=":", lw=1)
    left.set(
        xlabel=f"depth {letter} ({family})",
        ylabel="ridge λ closest in SPD",
        yscale="log",
        xscale="log",
        title="closest ridge λ",
    )
    left.set_xticks(depths, [str(L) for L in depths])
    left.xaxis.set_minor_formatter(NullFormatter())
    left.legend(fontsize=7)
    right.set(
        xlabel="λ",
        ylabel="ridge test MSE (mean over k)",
        xscale="log",
        yscale="log",
        title="ridge over the λ grid (dotted: Bayes λ)",
    )
    right.legend(fontsize=7)
    return save(fig, out / "closest_lambda.png")
