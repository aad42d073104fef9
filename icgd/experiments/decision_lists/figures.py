"""Figures of `decision-lists`: the population loss and the mass of perfectly classified sequences
over training for modes (a), (b) and (c); the uniform-attention run's cosine between V and P; heat
maps of P and of the learned W (mode a) and V (mode b); and mode (a)'s attention on a few
sequences, with each query's label-determining token marked."""

from __future__ import annotations

from pathlib import Path

from icgd.core.figures import read_arrays, save
from icgd.core.results import Result
from icgd.core.style import OKABE_ITO


def draw(run_dir: Path, result: Result, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    m = result.metrics
    paths = []

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    for tag, label in (("a", "(a) W only, V = cP"), ("b", "(b) W and V")):
        if m.get(f"curve_{tag}_step"):
            steps = m[f"curve_{tag}_step"]
            ax_loss.plot(steps, m[f"curve_{tag}_loss"], label=label)
            ax_acc.plot(steps, m[f"curve_{tag}_perfect"], label=label)
    every = result.config.get("log_every", 1)
    for prefix, color, label in (
        ("curve_mode_c", "grey", "(c) random init, Adam"),
        ("curve_mode_c_factored", OKABE_ITO["orange"], "(c) factored W = W_Kᵀ W_Q"),
    ):
        for key in sorted(k for k in m if k.startswith(prefix) and k[len(prefix) :][:1].isdigit()):
            values = m[key]
            ax = ax_loss if key.endswith("_loss") else ax_acc
            ax.plot([every * i for i in range(len(values))], values, color=color, lw=0.7)
        for ax in (ax_loss, ax_acc):
            ax.plot([], [], color=color, lw=0.7, label=label)
    ax_loss.set(xlabel="step", ylabel="loss", yscale="log", title="population loss")
    ax_acc.set(xlabel="step", ylabel="mass", ylim=(-0.02, 1.02), title="perfectly classified")
    ax_loss.legend(fontsize=7)
    ax_acc.legend(fontsize=7)
    paths.append(save(fig, out / "training_curves.png"))

    if m.get("v_cos"):
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        ax.plot(m["v_steps"], m["v_cos"])
        ax.set(xlabel="GD step (W = 0 fixed)", ylabel="cos(V, P)", title="uniform attention")
        paths.append(save(fig, out / "alignment.png"))

    arrays = read_arrays(run_dir / "arrays.safetensors")
    mats = [(k, t) for k, t in (("P", "P"), ("W_a", "W (mode a)"), ("V_b", "V (mode b)"))
            if k in arrays]  # fmt: skip
    if mats:
        fig, axes = plt.subplots(1, len(mats), figsize=(3.6 * len(mats), 3.4))
        for ax, (key, title) in zip(axes if len(mats) > 1 else [axes], mats, strict=True):
            im = ax.imshow(arrays[key], cmap="RdBu_r")
            ax.set(title=title, xlabel="query token" if key == "W_a" else "column", ylabel="row")
            fig.colorbar(im, ax=ax, shrink=0.8)
        paths.append(save(fig, out / "weights.png"))

    if "example_attention" in arrays:
        A, mask, tokens = (
            arrays["example_attention"],
            arrays["example_determining"],
            arrays["example_tokens"],
        )
        k = A.shape[0]
        fig, axes = plt.subplots(1, k, figsize=(3.4 * k, 3.4))
        for e, ax in enumerate(axes if k > 1 else [axes]):
            ax.imshow(A[e], vmin=0, vmax=1, cmap="viridis")
            marks = mask[e].T.nonzero()  # [i, j]: key i is query j's determining token
            ax.scatter(marks[:, 1], marks[:, 0], marker="x", color=OKABE_ITO["vermillion"], s=30)
            labels = [str(int(t)) for t in tokens[e]]
            ax.set_xticks(range(len(labels)), labels)
            ax.set_yticks(range(len(labels)), labels)
            ax.set(xlabel="query (token)", ylabel="key (token)", title=f"sequence {e}")
        paths.append(save(fig, out / "attention.png"))
    return paths
