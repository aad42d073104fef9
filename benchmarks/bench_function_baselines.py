"""Speed of the function-class baselines of Garg et al. 2022 on every prefix of every prompt.

2-layer ReLU-net functions (h = 100, `icgd.tasks.function_classes`), d = 20, n = 41, one query per
prefix (the next point, convention (b)):

- `prefix_relu_net`: B·n nets of width 100, 100 full-batch Adam steps each, in vmapped batches;
- `prefix_decision_tree` (max_depth None) and `prefix_boosting` (100 trees of depth 6): one
  scikit-learn fit per (prompt, prefix), a Python loop.

Reports seconds per call (float32) and the mean squared error per dimension of the predictions of
positions 1 … n−1 (after the prefix of positions 0 … k−1), against averaging.

Usage: python benchmarks/bench_function_baselines.py [--relu-batch 1000] [--tree-batch 100]
       [--boost-batch 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from icgd.algorithms import prefix_averaging, prefix_boosting, prefix_decision_tree, prefix_relu_net
from icgd.tasks.function_classes import FunctionClass, FunctionClassConfig


def _data(kind: str, batch: int):
    sampler = FunctionClass(FunctionClassConfig(kind=kind, d=20, n_points=42))
    s = sampler.sample(batch, torch.Generator().manual_seed(0))
    # prefixes of positions 0 … k−1 (k = 1 … 41), scored at position k
    return s.X[:, :-1], s.y[:, :-1], s.x_q[:, 1:], s.y_q[:, 1:]


def _time(name: str, fn, X, y, xq, yq) -> None:
    start = time.perf_counter()
    pred = fn(X, y, xq)
    sec = time.perf_counter() - start
    mse = float((pred - yq).square().mean() / X.shape[-1])
    avg = float((prefix_averaging(X, y, xq) - yq).square().mean() / X.shape[-1])
    print(
        f"{name:<34}{X.shape[0]:>7}{sec:10.1f}{1e3 * sec / X.shape[0]:12.1f}{mse:10.3f}{avg:10.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relu-batch", type=int, default=1000)
    parser.add_argument("--tree-batch", type=int, default=100)
    parser.add_argument("--boost-batch", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"d=20 n=41 float32 threads={torch.get_num_threads()}")
    print(f"{'baseline':<34}{'B':>7}{'s':>10}{'ms/prompt':>12}{'mse/d':>10}{'avg mse/d':>10}")
    g = torch.Generator().manual_seed(1)
    _time(
        "relu_net (h=100, 100 Adam steps)",
        lambda X, y, q: prefix_relu_net(X, y, q, generator=g),
        *_data("relu_net", args.relu_batch),
    )
    tree_data = _data("decision_tree", max(args.tree_batch, args.boost_batch))
    _time(
        "decision_tree (max_depth None)",
        prefix_decision_tree,
        *[t[: args.tree_batch] for t in tree_data],
    )
    _time(
        "boosting (100 trees, depth 6)",
        prefix_boosting,
        *[t[: args.boost_batch] for t in tree_data],
    )


if __name__ == "__main__":
    main()
