"""Figures of `one-step-gd`: training loss vs the Γ* optimum, heat maps of P and Q (which blocks
survive), Γ next to Γ*, risk vs test length, and the population gradient flow from ZFB's init."""

from __future__ import annotations

from pathlib import Path

from icgd.core.figures import read_arrays, read_metrics, save
from icgd.core.results import Result


def _heatmap(fig, ax, M, title: str, bound: float | None = None) -> None:
    bound = bound or float(abs(M).max()) or 1.0
    image = ax.imshow(M, cmap="RdBu_r", vmin=-bound, vmax=bound)
    ax.set(title=title, xticks=[], yticks=[])
    fig.colorbar(image, ax=ax, shrink=0.8)


def draw(run_dir: Path, result: Result, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    m = result.metrics
    evals = [r for r in read_metrics(run_dir / "metrics.jsonl") if r.get("kind") == "eval"]
    arrays = read_arrays(run_dir / "arrays.safetensors")
    setting = result.config.get("setting", "")
    paths = []

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    if evals:
        ax.plot(
            [r["step"] for r in evals], [r["loss"] for r in evals], label="one-layer LSA (full)"
        )
    if m.get("loss_theory") is not None:
        ax.axhline(m["loss_theory"], color="k", ls="--", lw=1, label="theory: one GD step with Γ*")
    if m.get("loss_zero") is not None:
        ax.axhline(m["loss_zero"], color="grey", ls=":", lw=1, label="predict 0")
    ax.set(xlabel="step", ylabel="held-out MSE", yscale="log", title=f"training loss ({setting})")
    ax.legend()
    paths.append(save(fig, out / "training_loss.png"))

    if evals and "leak_ratio" in evals[0]:
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        steps = [r["step"] for r in evals]
        ax.plot(steps, [r["leak_ratio"] for r in evals], label="leak ratio")
        ax.plot(steps, [r["gamma_rel_error"] for r in evals], label="‖Γ − Γ*‖_F / ‖Γ*‖_F")
        ax.set(xlabel="step", ylabel="relative error (no unit)", yscale="log",
               title="convergence to one GD step with Γ*")  # fmt: skip
        ax.legend()
        paths.append(save(fig, out / "convergence.png"))

    if "P" in arrays and "Q" in arrays:
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
        # P's last row and Q's x-columns feed ŷ; P[d,d]·Q[:d,:d] is the GD block. The x-rows of
        # P and Q's last column never reach ŷ and keep their initial values.
        _heatmap(fig, axes[0], arrays["P"].numpy(), "P (last row feeds ŷ)")
        _heatmap(fig, axes[1], arrays["Q"].numpy(), "Q (last column never feeds ŷ)")
        paths.append(save(fig, out / "P_Q_heatmaps.png"))

    if "gamma" in arrays and "gamma_theory" in arrays:
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
        G, G_star = arrays["gamma"].numpy(), arrays["gamma_theory"].numpy()
        bound = float(max(abs(G).max(), abs(G_star).max()))
        _heatmap(fig, axes[0], G, "trained Γ = −P[d,d]Q[:d,:d]ᵀ", bound)
        _heatmap(fig, axes[1], G_star, "theory Γ*", bound)
        _heatmap(fig, axes[2], G - G_star, "Γ − Γ*")
        paths.append(save(fig, out / "gamma_heatmaps.png"))
    if "length_M" in arrays:
        paths.append(_test_length_figure(plt, arrays, m, out, setting))
    if "flow_t" in arrays:
        tol = next((c.tolerance for c in result.claims if c.name == "flow_ends_at_zfb_gamma"), None)
        paths.append(_flow_figure(plt, arrays, m, out, setting, tol))
    return paths


def _flow_figure(plt, arrays, m: dict, out: Path, setting: str, tol: float | None) -> Path:
    """ZFB Thm 4.1: the population loss along the gradient flow from their init (minus the
    closed-form optimum) and the distance of its preconditioner cAᵀ from Γ⁻¹ (log axes; t = 0
    and points at or below the rounding level are left out)."""
    t = arrays["flow_t"].numpy()
    gap = arrays["flow_loss"].numpy() - m.get("flow_loss_theory", 0.0)
    dist = arrays["flow_gamma_rel"].numpy()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.9))
    keep = (t > 0) & (gap > 1e-15)
    axes[0].plot(t[keep], gap[keep], "C0-")
    axes[0].set(xscale="log", yscale="log", xlabel="flow time t (loss without ½)",
                ylabel="L(θ(t)) − L*",
                title=f"loss along the flow from ZFB's init ({setting})")  # fmt: skip
    keep = (t > 0) & (dist > 0)
    axes[1].plot(t[keep], dist[keep], "C1-", label="‖cAᵀ − Γ⁻¹‖_F / ‖Γ⁻¹‖_F")
    if m.get("flow_rate_bound"):
        axes[1].axvline(1 / m["flow_rate_bound"], color="grey", ls=":", lw=1,
                        label="1 / (slowest-rate bound)")  # fmt: skip
    if tol:
        axes[1].axhline(tol, color="k", ls="--", lw=1, label="claim's tolerance")
    axes[1].set(xscale="log", yscale="log", xlabel="flow time t", ylabel="relative distance",
                title="preconditioner vs ZFB's Γ⁻¹")  # fmt: skip
    axes[1].legend(fontsize=8)
    return save(fig, out / "zfb_flow.png")


def _test_length_figure(plt, arrays, m: dict, out: Path, setting: str) -> Path:
    """Risk of the trained layer vs test length M (1/M and kept 1/n scale) next to ZFB's closed
    forms at Γ* (and at the trained Γ̂), with the floor lim R(M) as M → ∞."""
    M, grid = arrays["length_M"].numpy(), arrays["length_grid"].numpy()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.9))
    ax = axes[0]
    ax.errorbar(M, arrays["length_risk"].numpy(), yerr=2 * arrays["length_risk_se"].numpy(),
                fmt="o", label="trained layer (± 2 SE)")  # fmt: skip
    ax.plot(grid, arrays["length_curve_theory"].numpy(), "k-", lw=1, label="R(M) at Γ*")
    ax.plot(
        grid, arrays["length_curve_trained_gamma"].numpy(), "C1--", lw=1, label="R(M) at trained Γ"
    )
    if m.get("risk_floor_fit_theory") is not None:
        ax.axhline(m["risk_floor_fit_theory"], color="grey", ls=":", label="floor R(∞)")
    if m.get("risk_floor_fit") is not None:
        ax.axhline(m["risk_floor_fit"], color="C0", ls=":", lw=1, label="fitted floor (a + b/M)")
    ax.set(xscale="log", xlabel="test context length M", ylabel="test MSE",
           title=f"risk vs test length, 1/M scale ({setting})")  # fmt: skip
    ax.legend(fontsize=8)
    ax = axes[1]
    ax.plot(M, arrays["length_risk_kept"].numpy(), "o", label="trained layer, prediction × M/n")
    ax.plot(grid, arrays["length_curve_kept_theory"].numpy(), "k-", lw=1, label="closed form at Γ*")
    ax.set(xscale="log", yscale="log", xlabel="test context length M", ylabel="test MSE",
           title="training scale 1/n kept")  # fmt: skip
    ax.legend(fontsize=8)
    return save(fig, out / "test_length_risk.png")
