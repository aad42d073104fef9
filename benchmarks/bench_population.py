"""Speed of the looped population loss and its gradient (issue 19, item 7), and of the
`looped-landscape` default run.

At looped-gd's default setting (L = 3, n = 20, d = 5) with 10⁶ fixed Wishart draws S̃ (common
random numbers), times one value-and-gradient of ``f(Γ) = E‖(I − ΓS̃)^L‖_F²``:

- `whitened_gradient` (the adjoint recursion, a numba-compiled loop per draw on two threads);
- `whitened_loss` + torch autograd (the differentiable path, for batches of Γ and tests);
- the reference, measured interleaved in the same run: one stacked product ``S̃ @ S̃`` of the same
  shapes in torch. The gradient needs at least 3L − 3 = 6 such products, so ``ratio ≈ 6`` means
  the fast path costs what its arithmetic costs. Target: ≤ 1 s on 2 cores.

The kernel's first call in a fresh environment compiles it (seconds; numba caches it on disk),
so it is called once before the timings and that first call is reported on its own.

Drawing the 10⁶ matrices is a one-time cost (reported, not part of the target). With
``--landscape`` also times ``icgd run looped-landscape`` (target ≤ 3 min).

Usage: python benchmarks/bench_population.py [--draws 1000000] [--repeats 3] [--landscape]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from icgd.theory.landscape import whitened_draws, whitened_gradient, whitened_loss


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(draws: int, repeats: int, L: int = 3, n: int = 20, d: int = 5) -> dict[str, float]:
    start = time.perf_counter()
    S = whitened_draws(n, d, draws, seed=0)
    drawing = time.perf_counter() - start
    gamma = 0.7 * torch.eye(d, dtype=torch.float64) + 0.01 * torch.ones(d, d, dtype=torch.float64)

    def autograd() -> None:
        leaf = gamma.clone().requires_grad_(True)
        torch.autograd.grad(whitened_loss(leaf, L, S)[0], leaf)

    first_call = _timed(lambda: whitened_gradient(gamma, L, S))  # compiles or loads the kernel
    timings: dict[str, list[float]] = {"compiled adjoint": [], "torch autograd": [], "one bmm": []}
    for _ in range(repeats):  # interleaved, so a load change hits all three alike
        timings["compiled adjoint"].append(_timed(lambda: whitened_gradient(gamma, L, S)))
        timings["torch autograd"].append(_timed(autograd))
        timings["one bmm"].append(_timed(lambda: S @ S))
    out = {name: statistics.median(values) for name, values in timings.items()}
    out["drawing"] = drawing
    out["first call"] = first_call
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--landscape", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    r = bench(args.draws, args.repeats)
    print(f"L=3 n=20 d=5, {args.draws:,} draws, threads={torch.get_num_threads()}")
    print(f"drawing the matrices (once): {r['drawing']:.2f} s")
    print(f"first kernel call (compile or cache load, once): {r['first call']:.2f} s")
    for name in ("compiled adjoint", "torch autograd"):
        ratio = r[name] / r["one bmm"]
        verdict = "meets" if r[name] <= 1.0 else "misses"
        print(f"{name:<16} {r[name]:7.3f} s  = {ratio:4.1f} bmm  ({verdict} the 1 s target)")
    print(f"{'one bmm':<16} {r['one bmm']:7.3f} s  (reference)")
    if args.landscape:
        with tempfile.TemporaryDirectory() as folder:
            cmd = [sys.executable, "-m", "icgd.cli", "run", "looped-landscape", "--out", folder]
            seconds = _timed(lambda: subprocess.run(cmd, check=True, capture_output=True))
        verdict = "meets" if seconds <= 180 else "misses"
        print(f"icgd run looped-landscape: {seconds:.0f} s ({verdict} the 3 min target)")


if __name__ == "__main__":
    main()
