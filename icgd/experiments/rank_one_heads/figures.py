"""Figures of `rank-one-heads`: the held-out loss curve with the detected drops marked and the
theoretical plateau levels, the learning rate of the loss in log-time, and each component's learned
amplitude `u_jᵀ Γ u_j / γ*_j` over training."""

from __future__ import annotations

from pathlib import Path

from icgd.core.figures import read_arrays, save
from icgd.core.results import Result


def draw(run_dir: Path, result: Result, out: Path) -> list[Path]:
    """Every figure of a rank-one-heads run folder (module docstring); returns their paths."""
    import matplotlib.pyplot as plt

    arrays = read_arrays(run_dir / "arrays.safetensors")
    if "steps" not in arrays:  # a diverged run has no curve to draw
        return []
    return [_loss_curve(plt, result, arrays, out), _amplitudes(plt, result, arrays, out)]


def _positive(arrays: dict) -> tuple:
    """Steps > 0 (a log-time axis) and the matching slices of the curves."""
    steps = arrays["steps"].double().numpy()
    keep = steps > 0
    return steps, keep


def _loss_curve(plt, result: Result, arrays: dict, out: Path) -> Path:
    m = result.metrics
    steps, keep = _positive(arrays)
    fig, (ax, ax_rate) = plt.subplots(
        2, 1, figsize=(6.5, 6.0), sharex=True, gridspec_kw={"height_ratios": [2.2, 1]}
    )
    fig.subplots_adjust(hspace=0.3)
    ax.plot(steps[keep], arrays["loss"].numpy()[keep], lw=1.2, label="held-out loss")
    ax.plot(
        steps[keep],
        arrays["population_loss"].numpy()[keep],
        lw=0.8,
        ls="--",
        color="C2",
        label="population loss of Γ (exact)",
    )
    for k, level in enumerate(m.get("plateau_losses_theory") or []):
        ax.axhline(level, color="grey", lw=0.7, ls=":")
        ax.annotate(
            f"L_{k}", (1.0, level), xycoords=("axes fraction", "data"), fontsize=7, va="bottom"
        )
    for i, (step, component) in enumerate(
        zip(m.get("drop_steps") or [], m.get("learned_order") or [], strict=False)
    ):
        for axis in (ax, ax_rate):
            axis.axvline(step, color="C3", lw=0.8, alpha=0.7)
        ax.annotate(
            f"drop {i + 1}: u_{int(component)}",
            (step, 1.0),
            xycoords=("data", "axes fraction"),
            rotation=90,
            fontsize=7,
            va="top",
            ha="right",
            color="C3",
        )
    ax.set(
        xlabel="step",
        ylabel="MSE",
        yscale="log",
        xscale="log",
        title=f"loss: {m.get('n_drops')} drops detected, {m.get('expected_drops')} expected",
    )
    ax.legend(fontsize=8, loc="lower left")
    rate = arrays["rate"].numpy()
    ax_rate.plot(steps[keep], rate[keep], lw=1.0, color="C1")
    threshold = result.config.get("detector", {}).get("rate_threshold")
    if threshold is not None:
        ax_rate.axhline(threshold, color="k", ls="--", lw=0.8, label="threshold")
        ax_rate.legend(fontsize=8)
    ax_rate.set(xlabel="step", ylabel="−d log L / d log t")
    return save(fig, out / "loss_drops.png")


def _amplitudes(plt, result: Result, arrays: dict, out: Path) -> Path:
    m = result.metrics
    steps, keep = _positive(arrays)
    amps = arrays["amplitudes"].double().numpy()  # (T, d)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for j, lam in enumerate(m.get("eigenvalues") or range(amps.shape[1])):
        ax.plot(steps[keep], amps[keep, j], lw=1.2, label=f"u_{j + 1} (λ = {lam:g})")
    for step in m.get("drop_steps") or []:
        ax.axvline(step, color="C3", lw=0.8, alpha=0.5)
    ax.axhline(1.0, color="k", ls=":", lw=0.8)
    ax.set(
        xlabel="step",
        ylabel="u_jᵀ Γ u_j / γ*_j",
        xscale="log",
        title="learned amplitude per principal component (1 = learned optimally)",
    )
    ax.legend(fontsize=8, loc="upper left")
    return save(fig, out / "component_amplitudes.png")
