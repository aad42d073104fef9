"""Figures of `softmax-heads`: KQ and OV heat maps per head, test error vs context length (softmax,
prompt-normalised LSA, fixed-scale LSA), and the training loss of both models."""

from __future__ import annotations

from pathlib import Path

from icgd.core.figures import read_arrays, read_metrics, save
from icgd.core.results import Result


def _heatmap(fig, ax, M, title: str, bound: float) -> None:
    image = ax.imshow(M, cmap="RdBu_r", vmin=-bound, vmax=bound)
    ax.set(title=title, xticks=[], yticks=[])
    fig.colorbar(image, ax=ax, shrink=0.8)


def draw(run_dir: Path, result: Result, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    m = result.metrics
    arrays = read_arrays(run_dir / "arrays.safetensors")
    paths = []

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for sub, name in (("softmax", "softmax, He form"), ("lsa", "linear (LSA full)")):
        evals = [r for r in read_metrics(run_dir / sub / "metrics.jsonl") if r["kind"] == "eval"]
        if evals:
            ax.plot([r["step"] for r in evals], [r["loss"] for r in evals], label=name)
    if m.get("loss_lsa_theory") is not None:
        ax.axhline(m["loss_lsa_theory"], color="k", ls="--", lw=1, label="optimal one GD step")
    ax.set(xlabel="step", ylabel="held-out MSE", yscale="log", title="training loss")
    ax.legend()
    paths.append(save(fig, out / "training_loss.png"))

    if "test_lengths" in m:
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        L = m["test_lengths"]
        ax.plot(L, m["test_mse_softmax"], "o-", label="softmax (He form)")
        ax.plot(L, m["test_mse_lsa"], "s-", label="LSA, 1/n of the prompt")
        ax.plot(L, m["test_mse_lsa_fixed_scale"], "^-", label="LSA, scale fixed at training n")
        ax.axvline(result.config["n"], color="grey", ls=":", lw=1, label="training n")
        ax.set(xlabel="test context length", ylabel="test MSE", xscale="log", yscale="log")
        ax.set_xticks(L, [str(v) for v in L])
        ax.minorticks_off()
        ax.set_title("length generalisation")
        ax.legend()
        paths.append(save(fig, out / "length_generalisation.png"))

    if "KQ" in arrays and "o" in arrays:
        KQ, o = arrays["KQ"].numpy(), arrays["o"].numpy()
        H = KQ.shape[0]
        fig, axes = plt.subplots(1, H, figsize=(3.2 * H, 3.0), squeeze=False)
        bound = float(abs(KQ).max()) or 1.0
        for h in range(H):
            _heatmap(fig, axes[0, h], KQ[h], f"KQ head {h}", bound)
        paths.append(save(fig, out / "kq_heatmaps.png"))

        fig, ax = plt.subplots(figsize=(5.5, 0.6 * H + 1.5))
        _heatmap(fig, ax, o, "OV vectors o_h (last column: y slot)", float(abs(o).max()))
        ax.set(yticks=range(H), ylabel="head")
        paths.append(save(fig, out / "ov_heatmap.png"))
    return paths
