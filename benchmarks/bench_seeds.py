"""Throughput of a seed ensemble: K looped-gd seeds trained stacked vs one after another.

`looped-gd` at its default sizes (d = 5, n = 20, L = 3 loops, sparse_u, batch 4096, Adam with
per-matrix clipping; `DEFAULT_TRAIN`), K = 16 seeds. Measures training steps only: the time between
the progress callbacks after update 1 and after update S − 1 (no eval in between, no run folder),
so model construction, the initial eval and the final eval are excluded. Rounds interleave the two
ways (stacked, then sequential) so that load on a shared machine hits both alike; reports the
median over rounds of seed-steps per second and the ratio stacked / sequential.

- stacked: `icgd.training.ensemble.train_stacked` over the K calls (one process, vmapped);
- sequential: `train(...)` K times, one seed after another (what K single runs do);
- sampling alone: the K seeds' batch draws of one step, one after another and through the stacked
  loop's thread pool (`BatchDrawer`). The stacked loop must draw K batches per step whatever it
  batches, so `ceiling` = (sequential seconds per seed-step) / (pooled draw seconds per seed) is
  the ratio stacking could reach if all the rest of a stacked step cost nothing (Amdahl's bound).

Usage: python benchmarks/bench_seeds.py [--seeds 16] [--steps 40] [--rounds 2] [--threads 2]
       [--batch 4096] [--device cpu|cuda] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def _calls(K: int, steps: int, batch: int, timer: dict, device: str = "cpu"):
    from icgd.core.rng import derive_seed, make_generator
    from icgd.experiments.common import prompt_mse, regression_sampler
    from icgd.experiments.looped_gd import LoopedGDConfig
    from icgd.models import LinearSelfAttention, LSAConfig
    from icgd.tasks import LinearRegression
    from icgd.training.ensemble import TrainCall

    base = LoopedGDConfig()
    train_config = base.train.model_copy(
        update={"steps": steps, "batch_size": batch, "eval_every": 10 * steps}
    )
    calls = []
    for seed in range(K):
        task = LinearRegression(
            base.task_config(),
            rotation_seed=derive_seed(seed, "rotation"),
            dtype=torch.float32,
            device=device,
        )
        held_out = task.sample(1024, make_generator(derive_seed(seed, "eval"), device))
        model = LinearSelfAttention(
            LSAConfig(d=base.d, n_layers=base.loops, looped=True, parametrisation="sparse_u"),
            generator=make_generator(derive_seed(seed, "init", "looped")),  # as the experiment
        ).to(device)

        def progress(step: int, total: int, record: dict, seed=seed) -> None:
            if step in (1, total - 1):
                _sync(device)  # a GPU's queued work belongs to the window
                timer.setdefault(seed, {})[step] = time.perf_counter()

        calls.append(
            TrainCall(
                model,
                regression_sampler(task),
                prompt_mse,
                train_config,
                make_generator(derive_seed(seed, "train", "looped"), device),
                (held_out.prompt(), held_out.y_q),
                progress=progress,
            )
        )
    return calls


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _sampling_seconds(K: int, batch: int, device: str, repeats: int = 5) -> tuple[float, float]:
    """Median seconds to draw one batch for each of K seeds: (one after another, thread pool)."""
    from icgd.training.batches import BatchDrawer

    calls = _calls(K, 4, batch, {}, device)
    alone, pooled = [], []
    with BatchDrawer(calls, batch) as draw:
        draw()  # warm-up
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            for c in calls:
                c.sample_batch(batch, c.generator)
            _sync(device)
            alone.append(time.perf_counter() - start)
            start = time.perf_counter()
            draw()
            _sync(device)
            pooled.append(time.perf_counter() - start)
    return statistics.median(alone), statistics.median(pooled)


def _measured(timer: dict, steps: int) -> float:
    """Seconds of the S − 2 measured updates, summed over seeds (sequential) or of seed 0's
    window (stacked: all seeds step together)."""
    return sum(t[steps - 1] - t[1] for t in timer.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from icgd.training.ensemble import train_stacked

    K, S = args.seeds, args.steps
    stacked_rates, sequential_rates = [], []
    for _ in range(args.rounds):
        timer: dict = {}
        outcome = train_stacked(_calls(K, S, args.batch, timer, args.device))
        assert outcome.batched, outcome.reason
        window = timer[0][S - 1] - timer[0][1]
        stacked_rates.append(K * (S - 2) / window)

        timer = {}
        for call in _calls(K, S, args.batch, timer, args.device):
            call.run_alone()
        sequential_rates.append(K * (S - 2) / _measured(timer, S))
        print(
            f"round: stacked {stacked_rates[-1]:.2f} seed-steps/s, "
            f"sequential {sequential_rates[-1]:.2f} seed-steps/s",
            flush=True,
        )
    stacked, sequential = statistics.median(stacked_rates), statistics.median(sequential_rates)
    sample_alone, sample_pooled = _sampling_seconds(K, args.batch, args.device)
    report = {
        "seeds": K,
        "steps_timed_per_seed": S - 2,
        "batch_size": args.batch,
        "threads": args.threads,
        "device": args.device,
        "stacked_seed_steps_per_s": stacked,
        "sequential_seed_steps_per_s": sequential,
        "ratio": stacked / sequential,
        "sampling_ms_per_seed_one_after_another": 1e3 * sample_alone / K,
        "sampling_ms_per_seed_thread_pool": 1e3 * sample_pooled / K,
        "sequential_ms_per_seed_step": 1e3 / sequential,
        "ceiling": (1 / sequential) / (sample_pooled / K),
    }
    print(json.dumps(report, indent=1))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)


if __name__ == "__main__":
    main()
