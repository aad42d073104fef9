"""Speed of one training step of the default looped model (d=5, n=20, L=3, sparse_u) at batch 4096.

Reports ms/step for sampling, forward, forward+backward and the full Adam step, the achieved
GFLOP/s of the attention math, and, measured in the same run, a plain `torch.bmm` of the prompt's
shapes (the moment Z Zᵀ: (B, d+1, n+1) × (B, n+1, d+1)) as the reference rate, plus the naive
(n+1)×(n+1) score-matrix forward the fast path avoids.

Usage: python benchmarks/bench_looped_step.py [--batch 4096] [--device cpu|cuda] [--reps 50]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from icgd.core.rng import make_generator
from icgd.models import LinearSelfAttention, LSAConfig
from icgd.tasks import LinearRegression, LinearRegressionConfig


def timed(fn, reps: int, device: str) -> float:
    """Median wall seconds of `fn()` over `reps` calls after 5 warm-up calls."""
    for _ in range(5):
        fn()
    times = []
    for _ in range(reps):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def forward_flops(B: int, n: int, d: int, L: int, H: int = 1) -> int:
    """Multiply-adds ×2 of the sparse_u forward: per loop r + Xu (2Hnd), v = Xᵀ(·)/n (2Hnd),
    Σ_h A_hᵀ v_h (2Hd²), −x_jᵀ w for the n+1 columns (2d(n+1))."""
    return B * L * (4 * H * n * d + 2 * H * d * d + 2 * d * (n + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--reps", type=int, default=50)
    args = parser.parse_args()
    B, d, n, L, device = args.batch, 5, 20, 3, args.device
    torch.set_num_threads(torch.get_num_threads())

    task = LinearRegression(
        LinearRegressionConfig(
            d=d,
            n=n,
            covariance="rotated",
            eigenvalues=(1, 1, 0.25, 0.0625, 1),
            weight_prior="inverse_covariance",
        ),
        device=device,
    )
    model = LinearSelfAttention(
        LSAConfig(d=d, n_layers=L, looped=True, parametrisation="sparse_u", init_std=0.1),
        generator=make_generator(0),
    ).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = make_generator(1, device)
    batch = task.sample(B, g)
    Z, y_q = batch.prompt(), batch.y_q

    def sample():
        b = task.sample(B, g)
        return b.prompt()

    def forward():
        with torch.no_grad():
            model.predict(Z)

    def forward_backward():
        loss = ((model.predict(Z) - y_q) ** 2).mean()
        loss.backward()

    def train_step():
        b = task.sample(B, g)
        optimizer.zero_grad(set_to_none=True)
        loss = ((model.predict(b.prompt()) - b.y_q) ** 2).mean()
        loss.backward()
        optimizer.step()

    P, Q = (m.detach() for m in model.layer_matrices())

    def naive_forward():
        """The explicit form Z + (1/n) P Z M (Zᵀ Q Z) with the (n+1)×(n+1) score matrix."""
        Zt = Z
        mask = torch.ones(n + 1, device=device)
        mask[-1] = 0
        for _ in range(L):
            S = Zt.transpose(1, 2) @ Q[0, 0] @ Zt  # (B, n+1, n+1)
            Zt = Zt + P[0, 0] @ (Zt * mask) @ S / n
        return Zt

    moment_flops = 2 * B * (d + 1) * (n + 1) * (d + 1)

    def bmm():
        torch.bmm(Z, Z.transpose(1, 2))

    rows = {
        "sample a batch": timed(sample, args.reps, device),
        "forward (fast path)": timed(forward, args.reps, device),
        "forward (naive scores)": timed(naive_forward, args.reps, device),
        "forward + backward": timed(forward_backward, args.reps, device),
        "full training step": timed(train_step, args.reps, device),
        "reference: torch.bmm Z Zᵀ": timed(bmm, args.reps, device),
    }
    fwd = forward_flops(B, n, d, L)
    gflops = {
        "forward (fast path)": fwd,
        "forward + backward": 3 * fwd,  # backward of matmuls ≈ twice the forward
        "reference: torch.bmm Z Zᵀ": moment_flops,
    }
    print(f"device={device} threads={torch.get_num_threads()} B={B} d={d} n={n} L={L}", end=" ")
    print(f"torch {torch.__version__}")
    print(f"{'what':<28}{'ms':>10}{'GFLOP/s':>10}")
    for name, seconds in rows.items():
        rate = f"{gflops[name] / seconds / 1e9:10.2f}" if name in gflops else f"{'':>10}"
        print(f"{name:<28}{seconds * 1e3:10.3f}{rate}")
    ref = moment_flops / rows["reference: torch.bmm Z Zᵀ"]
    mine = 3 * fwd / rows["forward + backward"]
    print(f"forward+backward rate / bmm rate = {mine / ref:.2f}")
    speedup = rows["forward (naive scores)"] / rows["forward (fast path)"]
    print(f"naive scores forward / fast forward = {speedup:.1f}x")


if __name__ == "__main__":
    main()
