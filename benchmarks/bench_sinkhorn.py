"""Speed of the batched log-domain `sinkhorn_log` against POT's `ot.sinkhorn` looped over problems.

Problems: B = 1,000 pairs of Gaussian clouds of n = m = 64 points in d = 2 (`x_i ~ N(0, I)`,
`y_j ~ N((1, 0), I)`), uniform weights, cost `C_ij = ‖x_i − y_j‖²` divided by its mean over the
problem (so the mean cost is 1 and ε is relative to it; without a normalisation a few outlying
points make costs ~80 and Sinkhorn needs > 20,000 iterations at ε = 0.05 on some problems),
ε = 0.05, tolerance 1e-6.

Stopping criteria, made comparable: ours stops a problem when `‖Pᵀ1 − b‖₁ ≤ tol` after an
iteration (rows exact), checked every iteration; POT stops when `‖Pᵀ1 − b‖₂ < stopThr`, checked
every 10th iteration. We pass `stopThr = tol/√m`, so POT's criterion implies ours
(`‖·‖₁ ≤ √m ‖·‖₂`); POT is therefore stricter (the √m factor is loose: POT ran ~1.6× more
iterations on average in the 1,000-problem run), so the table also gives µs per
problem-iteration (seconds / Σ iterations), the cost of one iteration free of the stopping rules.
Both get `max_iter = 100,000`. Columns: seconds, ms per problem, µs per problem-iteration,
iterations (mean / max), the largest `‖P1 − a‖₁ + ‖Pᵀ1 − b‖₁` recomputed from the returned plans
(in float32 the rounding floor of that number is ~1e-6 here, as `|C|/ε` reaches ~150, so float32
uses tol 1e-5), the problems that hit max_iter, the largest `|P − P_ours,float64|` over all
entries and problems (plan entries are ≤ 1/64), and seconds / seconds of ours in float64.
POT is run with `method="sinkhorn"` (Sinkhorn–Knopp scaling: two mat-vecs per iteration, no exp)
and `method="sinkhorn_log"` (log domain like ours), one call per problem in a Python loop.

Usage: python benchmarks/bench_sinkhorn.py [--batch 1000] [--n 64] [--eps 0.05] [--tol 1e-6]
       [--threads 1] [--json out.json] [--pot-methods sinkhorn sinkhorn_log]
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings

import torch

from icgd.algorithms import sinkhorn_log, squared_distances


def make_problems(batch: int, n: int, d: int = 2, seed: int = 0) -> torch.Tensor:
    """Mean-normalised squared-distance costs (batch, n, n) of Gaussian clouds, float64."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(batch, n, d, generator=g, dtype=torch.float64)
    shift = torch.zeros(d, dtype=torch.float64)
    shift[0] = 1.0
    Y = torch.randn(batch, n, d, generator=g, dtype=torch.float64) + shift
    C = squared_distances(X, Y)  # (B, n, n)
    return C / C.mean((1, 2), keepdim=True)


def marginal_errors(P: torch.Tensor) -> torch.Tensor:
    """‖P1 − a‖₁ + ‖Pᵀ1 − b‖₁ (B,) for uniform a, b, in float64."""
    P = P.double()
    B, n, m = P.shape
    return (P.sum(-1) - 1 / n).abs().sum(-1) + (P.sum(-2) - 1 / m).abs().sum(-1)


def run_ours(C: torch.Tensor, eps: float, tol: float, dtype: torch.dtype) -> dict:
    Cd = C.to(dtype)
    sinkhorn_log(Cd[:8], eps, tol=tol, max_iter=100_000)  # warm-up
    start = time.perf_counter()
    res = sinkhorn_log(Cd, eps, tol=tol, max_iter=100_000)
    seconds = time.perf_counter() - start
    it = res.iterations.double()
    return {
        "seconds": seconds,
        "mean_iter": float(it.mean()),
        "max_iter": int(it.max()),
        "max_err": float(marginal_errors(res.plan).max()),
        "unconverged": int((~res.converged).sum()),
        "plan": res.plan.double(),
    }


def run_pot(C: torch.Tensor, eps: float, tol: float, method: str) -> dict:
    import numpy as np
    import ot

    B, n, m = C.shape
    a, b = np.full(n, 1 / n), np.full(m, 1 / m)
    Cn = C.numpy()
    plans, iters = np.empty((B, n, m)), np.empty(B)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # POT warns on non-convergence; counted below instead
        for k in range(B):
            P, log = ot.sinkhorn(
                a,
                b,
                Cn[k],
                eps,
                method=method,
                stopThr=tol / math.sqrt(m),
                numItermax=100_000,
                log=True,
            )
            plans[k], iters[k] = P, log["niter"] + 1
    seconds = time.perf_counter() - start
    P = torch.from_numpy(plans)
    return {
        "seconds": seconds,
        "mean_iter": float(iters.mean()),
        "max_iter": int(iters.max()),
        "max_err": float(marginal_errors(P).max()),
        "unconverged": int((iters >= 100_000).sum()),
        "plan": P,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--eps", type=float, default=0.05)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=str, default=None, help="write the numbers to this file")
    parser.add_argument(
        "--pot-methods", nargs="*", default=["sinkhorn", "sinkhorn_log"], help="POT methods"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    C = make_problems(args.batch, args.n)
    print(
        f"B={args.batch} n=m={args.n} d=2 ε={args.eps} (cost/mean cost) tol={args.tol} "
        f"threads={torch.get_num_threads()}"
    )
    rows = {}
    tol32 = max(args.tol, 1e-5)
    rows["ours float64"] = run_ours(C, args.eps, args.tol, torch.float64)
    rows["ours float32"] = run_ours(C, args.eps, tol32, torch.float32)
    try:
        import ot  # noqa: F401
    except ImportError:
        print("POT is not installed (pip install pot, the `oracles` extra): POT timings skipped")
    else:
        for method in args.pot_methods:
            rows[f"POT {method}"] = run_pot(C, args.eps, args.tol, method)
    ref = rows["ours float64"]["plan"]
    base = rows["ours float64"]["seconds"]
    print(
        f"{'solver':<20}{'s':>9}{'ms/problem':>12}{'µs/it':>8}{'mean it':>10}{'max it':>9}"
        f"{'max err':>10}{'unconv':>8}{'max|ΔP|':>10}{'s / ours64':>12}"
    )
    out = {"batch": args.batch, "n": args.n, "eps": args.eps, "tol": args.tol, "solvers": {}}
    out["threads"] = torch.get_num_threads()
    for name, r in rows.items():
        diff = float((r["plan"] - ref).abs().max())
        ratio = r["seconds"] / base
        per_it = 1e6 * r["seconds"] / (r["mean_iter"] * args.batch)  # per problem-iteration
        print(
            f"{name:<20}{r['seconds']:9.2f}{1e3 * r['seconds'] / args.batch:12.3f}{per_it:8.1f}"
            f"{r['mean_iter']:10.1f}{r['max_iter']:9d}{r['max_err']:10.1e}{r['unconverged']:8d}{diff:10.1e}"
            f"{ratio:12.2f}"
        )
        stats = {k: v for k, v in r.items() if k != "plan"}
        out["solvers"][name] = {
            **stats,
            "us_per_problem_iteration": per_it,
            "max_abs_plan_diff": diff,
            "seconds_over_ours64": ratio,
        }
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
