"""Figures of `optimal-transport`: the errors to Sinkhorn's solution against depth (plan, objective,
column marginals) for every (n, ε); the transformer's plan at a few depths next to Sinkhorn's;
the sorting error in grid units against depth for every (n, ε)."""

from __future__ import annotations

from pathlib import Path

from icgd.core.figures import read_arrays, save
from icgd.core.results import Result


def draw(run_dir: Path, result: Result, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    m, cfg = result.metrics, result.config
    paths = []
    pairs = [(n, e) for e in cfg.get("epsilons", []) for n in cfg.get("ns", [])]

    if m.get("depths") and pairs:
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
        for (n, e), color in zip(pairs, plt.cm.viridis_r(range(0, 256, 256 // len(pairs))),
                                 strict=False):  # fmt: skip
            key = f"n{n}_eps{e:g}"
            for ax, name in zip(axes, ("plan_error", "objective_error", "marginal_error"),
                                strict=True):  # fmt: skip
                if m.get(f"{name}_{key}"):
                    ax.plot(m["depths"], m[f"{name}_{key}"], "o-", ms=3, color=color,
                            label=f"n = {n}, ε = {e:g}")  # fmt: skip
        titles = ("‖P − P*‖₁", "|J(P) − J(P*)|", "‖Pᵀ1 − 1/n‖₁")
        ylabels = ("plan error (mass)", "objective gap (cost units)", "marginal error (mass)")
        for ax, title, ylabel in zip(axes, titles, ylabels, strict=True):
            ax.set(xscale="log", yscale="log", xlabel="depth (layers)", ylabel=ylabel, title=title)
        axes[0].legend(fontsize=7)
        paths.append(save(fig, out / "error_vs_depth.png"))

    arrays = read_arrays(run_dir / "arrays.safetensors")
    for e in cfg.get("epsilons", []):
        key = f"n{min(cfg.get('ns', [0]))}_eps{e:g}"
        shown = sorted(
            (int(k.rsplit("depth", 1)[1]), k) for k in arrays if k.startswith(f"plan_{key}_depth")
        )
        if not shown or f"sinkhorn_plan_{key}" not in arrays:
            continue
        panels = [*(f"depth {d}" for d, _ in shown), "Sinkhorn"]
        mats = [arrays[k] for _, k in shown] + [arrays[f"sinkhorn_plan_{key}"]]
        fig, axes = plt.subplots(1, len(mats), figsize=(3.2 * len(mats), 3.2))
        for ax, mat, title in zip(axes, mats, panels, strict=True):
            ax.imshow(mat, cmap="magma")
            ax.set(title=f"{title} ({key})", xticks=[], yticks=[])
        paths.append(save(fig, out / f"plans_{key}.png"))

    sort_pairs = [(n, e) for e in cfg.get("sort_epsilons", []) for n in cfg.get("sort_ns", [])]
    if m.get("sort_depths") and sort_pairs:
        fig, ax = plt.subplots(figsize=(6, 4))
        styles = ("-", "--", ":", "-.")
        eps_list = list(cfg.get("sort_epsilons", []))
        for n, e in sort_pairs:
            errors = m.get(f"sort_error_n{n}_eps{e:g}")
            if errors:
                ax.plot(m["sort_depths"], errors, styles[eps_list.index(e) % 4], marker="o",
                        ms=3, label=f"n = {n}, ε = {e:g}")  # fmt: skip
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set(xscale="log", yscale="log", xlabel="depth (layers)",
               ylabel="mean |T(x_i) − target| (grid units)", title="sorting")  # fmt: skip
        ax.legend(fontsize=7, ncol=2)
        paths.append(save(fig, out / "sorting_error.png"))
    return paths
