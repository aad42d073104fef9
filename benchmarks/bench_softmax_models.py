"""Speed of one Adam training step of the softmax-attention models on in-context linear regression.

(a) GPT `standard` (Garg et al.: width 256, 12 layers, 8 heads), loss = MSE over all prefixes;
(b) looped transformer (Yang et al.): 1 block × 30 loops, width 256, 8 heads, loss over the last 15
    loops (the first 15 run under no_grad).
Both at d = 20, 41 points, batch 64, float32. A step = sample a batch (x ~ N(0, I), w ~ N(0, I),
y = x·w), zero_grad, forward, backward, Adam. Reports ms/step (median) and steps/s.

Usage: python benchmarks/bench_softmax_models.py [--batch 64] [--threads 2] [--device cpu|cuda]
       [--reps 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from icgd.core.rng import make_generator
from icgd.models import GPT, GPTConfig, LoopedConfig, LoopedTransformer


def timed(fn: Callable[[], None], reps: int, device: str, warmup: int = 1) -> float:
    """Median wall seconds of `fn()` over `reps` calls after `warmup` calls."""
    for _ in range(warmup):
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    B, d, k, device = args.batch, 20, 41, args.device
    torch.set_num_threads(args.threads)
    g = make_generator(1, device)

    def sample() -> tuple[torch.Tensor, torch.Tensor]:
        X = torch.randn(B, k, d, generator=g, device=device)  # (B, k, d)
        w = torch.randn(B, d, 1, generator=g, device=device)  # (B, d, 1)
        return X, (X @ w).squeeze(-1)  # (B, k)

    gpt = GPT(GPTConfig(d_in=d, max_points=k, size="standard"), generator=make_generator(0))
    looped = LoopedTransformer(
        LoopedConfig(d_in=d, max_points=k, n_embd=256, n_head=8, n_loops=30, grad_last=15),
        generator=make_generator(0),
    )
    gpt, looped = gpt.to(device), looped.to(device)
    opt_gpt = torch.optim.Adam(gpt.parameters(), lr=1e-4)
    opt_looped = torch.optim.Adam(looped.parameters(), lr=1e-4)

    def gpt_step() -> None:
        X, y = sample()
        opt_gpt.zero_grad(set_to_none=True)
        ((gpt(X, y) - y) ** 2).mean().backward()
        opt_gpt.step()

    def looped_step() -> None:
        X, y = sample()
        opt_looped.zero_grad(set_to_none=True)
        looped.loss_over_last_loops(X, y, n_loops=30, last=15).backward()
        opt_looped.step()

    rows = {
        "GPT standard 256/12/8": (gpt, timed(gpt_step, args.reps, device)),
        "looped 1 block x30, last 15": (looped, timed(looped_step, args.reps, device)),
    }
    print(
        f"device={device} threads={torch.get_num_threads()} B={B} d={d} points={k} fp32 "
        f"torch {torch.__version__}"
    )
    print(f"{'model':<30}{'params':>12}{'ms/step':>12}{'steps/s':>10}")
    for name, (model, seconds) in rows.items():
        n_params = sum(p.numel() for p in model.parameters())
        print(f"{name:<30}{n_params:>12,}{seconds * 1e3:12.1f}{1 / seconds:10.3f}")


if __name__ == "__main__":
    main()
