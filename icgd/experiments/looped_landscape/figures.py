"""Figures of `looped-landscape`: the phase diagram, n^{L−1}·c against its limit, and the
minimiser sweep (gain, antisymmetric share, loss gap)."""

from __future__ import annotations

from pathlib import Path

from icgd.core.figures import save
from icgd.core.results import Result


def draw(run_dir: Path, result: Result, out: Path) -> list[Path]:
    """Every figure of a looped-landscape run folder (module docstring); returns their paths."""
    import matplotlib.pyplot as plt

    m = result.metrics
    return [_phase(plt, m, out), _scaled(plt, m, out), _sweep(plt, result, out)]


def _points(m: dict, L: int):
    keep = [i for i, value in enumerate(m["grid_L"]) if value == L]
    return [(m["grid_n"][i], m["grid_d"][i], m["grid_c"][i], m["grid_c_se"][i]) for i in keep]


def _phase(plt, m: dict, out: Path) -> Path:
    loops = sorted(set(m["grid_L"]))
    fig, axes = plt.subplots(1, len(loops), figsize=(4.2 * len(loops), 3.6), squeeze=False)
    for ax, L in zip(axes[0], loops, strict=True):
        pts = _points(m, L)
        for sign, colour, label in ((1, "C2", "minimum (c > 0)"), (-1, "C1", "saddle (c < 0)")):
            sel = [(n, d) for n, d, c, _ in pts if c * sign > 0]
            if sel:
                ax.scatter(*zip(*sel, strict=True), c=colour, s=60, label=label)
        bounds = [
            (b, d)
            for Lb, d, b in zip(m["limit_L"], m["limit_d"], m["boundary_n"], strict=True)
            if Lb == L and b == b
        ]
        if bounds:
            ax.plot(*zip(*bounds, strict=True), "k--", lw=1, label="sign change")
        ax.set(xscale="log", xlabel="n", ylabel="d", title=f"L = {int(L)}: a*·Σ⁻¹ is a …")
        ax.legend(fontsize=7, loc="lower right", framealpha=0.9)
    return save(fig, out / "phase_diagram.png")


def _scaled(plt, m: dict, out: Path) -> Path:
    loops = sorted(set(m["grid_L"]))
    fig, axes = plt.subplots(1, len(loops), figsize=(4.2 * len(loops), 3.6), squeeze=False)
    for ax, L in zip(axes[0], loops, strict=True):
        pts = _points(m, L)
        for k, d in enumerate(sorted({p[1] for p in pts})):
            row = [(n, c * n ** (L - 1)) for n, dd, c, _ in pts if dd == d]
            ax.plot(*zip(*row, strict=True), "o-", color=f"C{k}", label=f"d = {d}")
            limit = [
                c
                for Lc, dc, c in zip(m["limit_L"], m["limit_d"], m["limit_C"], strict=True)
                if Lc == L and dc == d
            ]
            ax.axhline(limit[0], color=f"C{k}", ls=":", lw=1)
        ax.axhline(0, color="k", lw=0.5)
        ax.set(
            xscale="log",
            xlabel="n",
            ylabel=f"n^{int(L) - 1} · c",
            title=f"L = {int(L)} (dotted: n → ∞)",
        )
        ax.legend(fontsize=7)
    return save(fig, out / "curvature_scaled.png")


def _sweep(plt, result: Result, out: Path) -> Path:
    m, cfg = result.metrics, result.config
    n = m["sweep_n"]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    axes[0].plot(n, m["sweep_gain"], "o-", label="tr(Γ_min)/d")
    axes[0].plot(n, m["sweep_a"], "k--", label="a*")
    axes[0].set(title="gain", xlabel="n")
    axes[1].plot(n, m["sweep_skew"], "o-", label="‖(Γ−Γᵀ)/2‖/‖Γ‖")
    axes[1].plot(n, m["sweep_rotation"], "s-", label="mean |arg λ(Γ)|")
    axes[1].set(title="antisymmetric part", xlabel="n")
    rel = [g / la for g, la in zip(m["sweep_gap"], m["sweep_loss_a"], strict=True)]
    err = [2 * s / la for s, la in zip(m["sweep_gap_se"], m["sweep_loss_a"], strict=True)]
    axes[2].errorbar(n, rel, yerr=err, fmt="o-", label="(f(Γ_min) − f(a*I)) / f(a*I)")
    stacked = [
        (s - la) / la for s, la in zip(m["sweep_loss_stacked"], m["sweep_loss_a"], strict=True)
    ]
    axes[2].plot(n, stacked, "k--", label="stacked optimum")
    axes[2].axhline(0, color="k", lw=0.5)
    axes[2].set(title="loss relative to a*·Σ⁻¹", xlabel="n")
    for ax in axes:
        ax.set_xscale("log")
        ax.legend(fontsize=7)
    fig.suptitle(f"L = {cfg['sweep_loops']}, d = {cfg['sweep_d']}")
    return save(fig, out / "minimiser_sweep.png")
