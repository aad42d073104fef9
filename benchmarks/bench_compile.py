"""Training-step time, eager vs `torch.compile` (`train(..., compile=True)`), CPU or GPU.

Two models at their experiment's CPU preset, default batch size (128) and Adam:

- `looped`: `icgd.models.LoopedTransformer` of `looped-transformer` (d = 2, 5 points, width 64,
  2 heads, one block looped b = 10 times, loss over the last T = 5 loops, Yang et al.'s loss);
- `gpt`: `icgd.models.GPT` of `function-classes` (size "tiny": width 64, 3 layers, 2 heads; d = 5,
  11 points; Garg et al.'s loss over all prefixes).

Shapes are fixed (b = 10, all 11 points): the presets' curricula change b or n every few hundred
updates, and each new value costs one recompilation (`dynamic=False`), not measured here.

What is timed: one training update as `icgd.training.train` does it (draw a batch, zero the
grads, the loss forward + backward, Adam; the divergence bookkeeping, the same either way, is left
out), with the loss either eager or through the same
`torch.compile(loss_fn, dynamic=False)` that `train(..., compile=True)` uses. An eager copy and a
compiled copy of the model (same initial weights) are trained side by side, alternating one update
each, so that load on a shared machine hits both alike; reported: the median ms per update over
`--steps` updates after `--warmup`, and eager / compiled. Compile time is reported separately: the
first compiled update's time minus the median eager update's, on a cold inductor cache (a fresh
`TORCHINDUCTOR_CACHE_DIR`, unless `--warm-cache`). Both copies must end with equal weights up to
float reassociation (reported: the largest weight difference).

Usage: python benchmarks/bench_compile.py [--threads 2] [--steps 200] [--warmup 10]
       [--warm-cache] [--models looped,gpt] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import warnings


def _setup(kind: str, device: str):
    """(model factory, sampler, loss, eval batch) of one preset."""
    from icgd.core.rng import derive_seed, make_generator
    from icgd.experiments.common.causal import curriculum_sampler, gpt_loss
    from icgd.experiments.function_classes import FunctionClassesConfig
    from icgd.experiments.looped_transformer import LoopedTransformerConfig
    from icgd.experiments.looped_transformer.experiment import _looped_loss
    from icgd.models import GPT, LoopedTransformer
    from icgd.tasks import ShiftConfig

    if kind == "looped":
        config = LoopedTransformerConfig()
        task = config.task(device, config.torch_dtype)

        def make():
            init = make_generator(derive_seed(0, "init", "looped"), "cpu")
            return LoopedTransformer(config.looped_config(), generator=init).to(device)

        loss, n_loops = _looped_loss, config.n_loops
    else:
        config = FunctionClassesConfig()
        task = config.task("linear", ShiftConfig(), device, config.torch_dtype)

        def make():
            init = make_generator(derive_seed(0, "init", "linear"), "cpu")
            return GPT(config.gpt_config(), generator=init).to(device)

        loss, n_loops = gpt_loss, None
    sampler = curriculum_sampler(task, 0, None, None, n_loops)  # fixed shapes: no curriculum
    eval_set = task.sample(256, make_generator(derive_seed(0, "eval"), device))
    return make, sampler, loss, (eval_set.X, eval_set.y, n_loops), config.train


def _bench(kind: str, steps: int, warmup: int, device: str) -> dict:
    """Train an eager and a compiled copy side by side; per-update seconds of each."""
    import torch

    from icgd.core.rng import make_generator
    from icgd.training.optim import make_optimizer

    make, sampler, loss, _, preset = _setup(kind, device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sides = {}
    for name, fn in (("eager", loss), ("compiled", torch.compile(loss, dynamic=False))):
        model = make()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = make_optimizer(params, preset.optimizer)
        sides[name] = (model, fn, optimizer, make_generator(1, device))
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(warmup + steps):
        for name, (model, fn, optimizer, generator) in sides.items():
            sync()
            start = time.perf_counter()
            batch = sampler(preset.batch_size, generator)  # same stream on both sides
            optimizer.zero_grad(set_to_none=True)
            fn(model, batch).backward()
            optimizer.step()
            sync()
            times[name].append(time.perf_counter() - start)
    pairs = zip(sides["eager"][0].parameters(), sides["compiled"][0].parameters(), strict=True)
    max_diff = max(float((a - b).detach().abs().max()) for a, b in pairs)
    eager = statistics.median(times["eager"][warmup:])
    compiled = statistics.median(times["compiled"][warmup:])
    return {
        "eager_ms": round(1e3 * eager, 3),
        "compiled_ms": round(1e3 * compiled, 3),
        "speedup": round(eager / compiled, 3),
        "compile_s": round(times["compiled"][0] - eager, 2),
        "max_weight_diff": max_diff,  # eager vs compiled copy after all updates
        "eager_ms_quartiles": [
            round(1e3 * q, 3) for q in statistics.quantiles(times["eager"][warmup:])
        ],
        "compiled_ms_quartiles": [
            round(1e3 * q, 3) for q in statistics.quantiles(times["compiled"][warmup:])
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--warm-cache", action="store_true", help="keep inductor's disk cache")
    parser.add_argument("--models", default="looped,gpt")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    if not args.warm_cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="icgd-bench-inductor-")
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # torch.jit, on inductor import

    import torch

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.device}, {args.threads} threads, median of "
          f"{args.steps} updates after {args.warmup} warm-up, eager and compiled "
          "alternating")  # fmt: skip
    print(f"{'model':<8} {'eager ms':>9} {'compiled ms':>12} {'speed-up':>9} {'compile s':>10}")
    report = {}
    for kind in args.models.split(","):
        r = report[kind] = _bench(kind, args.steps, args.warmup, args.device)
        print(f"{kind:<8} {r['eager_ms']:>9.2f} {r['compiled_ms']:>12.2f} {r['speedup']:>8.2f}x "
              f"{r['compile_s']:>10.1f}")  # fmt: skip
    print(json.dumps(report))


if __name__ == "__main__":
    main()
