"""Figures of `identify`: the candidates ranked (held-out R² and SPD), and the layer ↔
iteration map (SimE of each layer's read-out against k iterations, per algorithm)."""

from __future__ import annotations

from pathlib import Path

from icgd.core.figures import read_arrays, save
from icgd.core.results import Result


def draw(run_dir: Path, result: Result, out: Path) -> list[Path]:
    """Every figure of an identify run folder (module docstring); returns their paths."""
    import matplotlib.pyplot as plt

    arrays = read_arrays(run_dir / "arrays.safetensors")
    paths = [_ranking(plt, result, out)]
    maps = {k.split(".", 2)[2]: v for k, v in arrays.items() if k.startswith("probe.sime.")}
    if maps:
        paths.append(_layer_map(plt, result, maps, out))
    return paths


def _ranking(plt, result: Result, out: Path) -> Path:
    m = result.metrics
    names = sorted(
        (k[: -len(".rank")] for k in m if k.endswith(".rank")),
        key=lambda name: m[f"{name}.rank"],
    )
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.45 * len(names) + 1.6))
    axes[0].barh(names, [m[f"{name}.r2"] for name in names], color="C0")
    axes[0].set(
        xlabel="held-out R² of the model's predictions",
        xlim=(min(0.0, *[m[f"{name}.r2"] for name in names]), 1.0),
    )
    axes[1].barh(names, [max(m[f"{name}.spd"], 1e-30) for name in names], color="C1")
    axes[1].set(xscale="log", xlabel="held-out SPD (mean squared prediction difference)")
    for ax in axes:
        ax.invert_yaxis()
        ax.set_ylabel("candidate (best first)")
    fig.suptitle(f"identify: {result.config.get('source')} (best first)")
    return save(fig, out / "ranking.png")


def _layer_map(plt, result: Result, maps: dict, out: Path) -> Path:
    steps = result.metrics.get("probe_steps", [])
    fig, axes = plt.subplots(1, len(maps), figsize=(4.6 * len(maps), 3.8), squeeze=False)
    for ax, (name, table) in zip(axes[0], sorted(maps.items()), strict=True):
        # the colour range starts at the table's least SimE: TD iterates all correlate > 0.9
        # with the read-outs, and a fixed [−1, 1] range would paint them one colour
        finite = table[table.isfinite()]
        low = min(float(finite.min()), 0.99) if finite.numel() else -1.0
        image = ax.imshow(table.numpy(), aspect="auto", cmap="viridis", vmin=low, vmax=1)
        best = result.metrics.get(f"layer_map.{name}", [])
        ax.plot(best, range(len(best)), "rx", label="best k (SimE)")
        ax.set(xlabel="iterations k", ylabel="layer (0: the embedding)", title=name)
        ax.set_yticks(range(table.shape[0]))
        ax.grid(False)
        if steps:
            ax.set_xticks(range(len(steps)), [int(k) for k in steps])
        ax.legend(fontsize=7, loc="lower right")
        fig.colorbar(image, ax=ax, shrink=0.8, label="SimE")
    return save(fig, out / "layer_map.png")
