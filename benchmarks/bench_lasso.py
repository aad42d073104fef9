"""Speed of `prefix_lasso`: the Lasso (FISTA) fitted on every prefix of every prompt at once.

10,000 prompts, d = 20, n = 40 (Garg et al. 2022's sparse linear regression at the end of the
curriculum: w with 3 non-zeros, Gaussian x, noiseless y), α = 0.1, one query per prompt, so
400,000 Lasso problems in one batch. Reports ms (one timed call after a warm-up on a small batch),
the iterations used (median / max over problems) and the number not converged, in float32 and
float64 at the default tolerances (KKT violation ≤ tol·α_max, tol 1e-5 / 1e-8).

Usage: python benchmarks/bench_lasso.py [--batch 10000] [--alpha 0.1] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from icgd.algorithms import fista_lasso_gram, prefix_lasso


def bench_prefix_lasso(batch: int = 10_000, alpha: float = 0.1, dtype=torch.float32) -> dict:
    """Time one `prefix_lasso` call on `batch` prompts (d = 20, n = 40); returns ms and stats."""
    B, n, d, k = batch, 40, 20, 3
    g = torch.Generator().manual_seed(0)
    X = torch.randn(B, n, d, generator=g, dtype=dtype)
    w = torch.randn(B, d, generator=g, dtype=dtype)
    support = torch.rand(B, d, generator=g).argsort(-1)[:, :k]  # (B, k)
    w = w * torch.zeros(B, d, dtype=dtype).scatter_(1, support, 1.0)
    y = torch.einsum("bnd,bd->bn", X, w)
    x_q = torch.randn(B, d, generator=g, dtype=dtype)
    prefix_lasso(X[:64], y[:64], x_q[:64], alpha)  # warm-up
    start = time.perf_counter()
    pred = prefix_lasso(X, y, x_q, alpha)
    seconds = time.perf_counter() - start
    assert pred.shape == (B, n) and torch.isfinite(pred).all()
    # iteration statistics of the same problems (not timed)
    kk = torch.arange(1, n + 1, dtype=dtype)
    G = (torch.cumsum(X.unsqueeze(-1) * X.unsqueeze(-2), 1) / kk[:, None, None]).reshape(-1, d, d)
    b = (torch.cumsum(X * y.unsqueeze(-1), 1) / kk[:, None]).reshape(-1, d)
    res = fista_lasso_gram(G, b, alpha)
    return {
        "ms": seconds * 1e3,
        "median_iter": float(res.n_iter.double().median()),
        "max_iter": int(res.n_iter.max()),
        "unconverged": int((~res.converged).sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"B={args.batch} n=40 d=20 α={args.alpha} threads={torch.get_num_threads()}")
    print(f"{'dtype':<16}{'ms':>10}{'median it':>11}{'max it':>8}{'unconverged':>13}")
    for dtype in (torch.float32, torch.float64):
        r = bench_prefix_lasso(args.batch, args.alpha, dtype)
        print(
            f"{str(dtype):<16}{r['ms']:10.0f}{r['median_iter']:11.0f}{r['max_iter']:8d}"
            f"{r['unconverged']:13d}"
        )


if __name__ == "__main__":
    main()
