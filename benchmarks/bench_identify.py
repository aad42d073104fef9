"""Speed of `identify` (issue 20, item 7): a 3-layer LSA, 8,192 fitting and 8,192 held-out prompts.

The model: von Oswald et al.'s GD++ construction (3 layers, d = 5, n = 20), float32, with 0.01
weight noise so that no candidate fits it exactly (the fits then do their full work). Times
`identify` with every candidate and 64 bootstrap resamples, and `probe_layers`, on one thread
(what `icgd identify` uses) and on torch's default thread count; the reference measured in the
same run is one forward pass of the model over the same prompts. Target: identify ≤ 30 s.

Usage: python benchmarks/bench_identify.py [--prompts 8192]
"""

from __future__ import annotations

import argparse
import time

import torch

from icgd.analysis.identify import draw_prompts, identify, probe_layers
from icgd.constructions import lsa_from_gd_plus_plus_steps
from icgd.core.rng import make_generator
from icgd.experiments.common import regression_task_config
from icgd.tasks import LinearRegression


def _model(d: int) -> torch.nn.Module:
    model = lsa_from_gd_plus_plus_steps(d, [0.3, 0.3, 0.3], [0.1, 0.1, 0.1]).float()
    with torch.no_grad():
        g = make_generator(0)
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g))
    return model


def bench(prompts: int, threads: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    d, n = 5, 20
    task = LinearRegression(
        regression_task_config(d=d, n=n, covariance="identity", weight_prior="identity"),
    )
    model = _model(d)
    batch = draw_prompts(task, prompts, make_generator(1))
    start = time.perf_counter()
    with torch.no_grad():
        model.predict(task.sample(prompts, make_generator(1)).prompt())
    forward = time.perf_counter() - start
    start = time.perf_counter()
    found = identify(model, task, n_prompts=prompts, n_bootstrap=64)
    fitted = time.perf_counter() - start
    start = time.perf_counter()
    probe_layers(model, task, parameters=found, n_prompts=min(prompts, 4096))
    probed = time.perf_counter() - start
    assert len(batch) == prompts
    return {"forward": forward, "identify": fitted, "probe_layers": probed, "best": found.best.name}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8192)
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    for threads in (1, default_threads):
        r = bench(args.prompts, threads)
        verdict = "meets" if r["identify"] <= 30 else "misses"
        print(
            f"threads={threads}: identify {r['identify']:.1f} s ({verdict} the 30 s target), "
            f"probe_layers {r['probe_layers']:.1f} s, one forward pass {r['forward'] * 1e3:.0f} ms"
            f" (reference); ranked first: {r['best']}"
        )


if __name__ == "__main__":
    main()
