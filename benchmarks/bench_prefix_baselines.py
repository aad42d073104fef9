"""Speed of the prefix baselines (OLS, ridge, 3-NN, one-step GD at every context length).

10,000 prompts, d = 20, n = 40 (Garg et al. 2022's linear regression at the end of the
curriculum), Gaussian x and w, noiseless y, one query per prompt. Reports ms per baseline and
their total in float32 and float64, and, measured in the same run, a naive Python loop over the n
prefix lengths calling `icgd.algorithms.ols` (one pinv per prefix, float32) as the reference, with
the speedup, plus the float32 error of `prefix_ols` and of the naive loop against float64.

Usage: python benchmarks/bench_prefix_baselines.py [--batch 10000] [--reps 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from icgd.algorithms import ols, prefix_knn, prefix_ols, prefix_one_step_gd, prefix_ridge


def timed(fn, reps: int) -> float:
    """Median wall seconds of `fn()` over `reps` calls, after one warm-up call if reps > 1."""
    if reps > 1:
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def naive_prefix_ols(X, y, x_q):
    """The reference: a Python loop over prefix lengths, one `ols` (pinv) per prefix → (B, n)."""
    n = X.shape[1]
    return torch.stack([(ols(X[:, :k], y[:, :k]) * x_q).sum(-1) for k in range(1, n + 1)], 1)


def baseline_times(X, y, x_q, Xq, reps: int) -> dict[str, float]:
    return {
        "prefix_ols": timed(lambda: prefix_ols(X, y, x_q), reps),
        "prefix_ridge (λ=0.5)": timed(lambda: prefix_ridge(X, y, x_q, 0.5), reps),
        "prefix_knn (k=3)": timed(lambda: prefix_knn(X, y, x_q, 3), reps),
        "prefix_one_step_gd": timed(lambda: prefix_one_step_gd(X, y, x_q, 1.0), reps),
        "(b) prefix_ols, next-point queries": timed(lambda: prefix_ols(X, y, Xq), reps),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    B, n, d = args.batch, 40, 20
    g = torch.Generator().manual_seed(0)
    X64 = torch.randn(B, n + 1, d, generator=g, dtype=torch.float64)
    w = torch.randn(B, d, generator=g, dtype=torch.float64)
    y64 = torch.einsum("bnd,bd->bn", X64, w)
    Xq64, X64, y64 = X64[:, 1:], X64[:, :n], y64[:, :n]  # (b): prefix k predicts x_{k+1}
    xq64 = torch.randn(B, d, generator=g, dtype=torch.float64)
    print(f"B={B} n={n} d={d} threads={torch.get_num_threads()} torch {torch.__version__}")
    ref = prefix_ols(X64, y64, xq64)  # float64 reference for the error report
    for dtype in (torch.float32, torch.float64):
        X, y, x_q, Xq = (t.to(dtype) for t in (X64, y64, xq64, Xq64))
        rows = baseline_times(X, y, x_q, Xq, args.reps)
        total = sum(v for k, v in rows.items() if not k.startswith("(b)"))
        print(f"\n{str(dtype):<36}{'ms':>10}")
        for name, seconds in rows.items():
            print(f"{name:<36}{seconds * 1e3:10.1f}")
        print(f"{'total (OLS, ridge, 3-NN, GD)':<36}{total * 1e3:10.1f}")
        if dtype == torch.float32:
            naive_s = timed(lambda: naive_prefix_ols(X, y, x_q), 1)  # noqa: B023
            print(f"{'reference: loop of ols over k':<36}{naive_s * 1e3:10.1f}")
            print(f"speedup of prefix_ols over the loop: {naive_s / rows['prefix_ols']:.0f}x")
            scale = ref.abs().clamp_min(1.0)
            err = (prefix_ols(X, y, x_q).double() - ref).abs() / scale  # (B, n)
            err_naive = (naive_prefix_ols(X, y, x_q).double() - ref).abs() / scale
            for name, e in (("prefix_ols", err), ("loop of ols", err_naive)):
                print(
                    f"float32 {name} error vs float64, |Δ|/max(|ŷ|,1): median {e.median():.1e}, "
                    f"99.9th pct {e.quantile(0.999):.1e}, max {e.max():.1e}"
                )


if __name__ == "__main__":
    main()
