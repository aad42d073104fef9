"""Run one experiment for several seeds in one process and read each claim's pass rate.

`icgd.run(name, seeds=...)` runs every seed's ordinary run into `seed{k}/` and trains the seeds
together (stacked parameters, `torch.func.vmap`); each seed's numbers equal its single run. The
ensemble's `result.json` holds each metric's mean/std/min/max and, in `result.seeds`, each claim's
per-seed verdicts and pass rate; `run.seeds[k]` is seed k's own run. The equivalent command line:

    icgd run one-step-gd --seeds 0-2 --set train.steps=300 ... --out FOLDER

Run:  python examples/seed_ensemble_from_python.py [--tiny] [--out FOLDER]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import icgd

SMALL = [  # a few seconds a seed on one CPU thread (the default trains 2000 steps)
    "train.steps=300",
    "train.batch_size=1024",
    "train.eval_batch_size=1024",
    "train.eval_every=50",
    "train.checkpoint_every=300",
    "test_batch_size=8192",
]
TINY = [  # the test suite's size: the numbers are not meaningful
    "train.steps=20",
    "train.batch_size=256",
    "train.eval_batch_size=256",
    "train.eval_every=10",
    "train.checkpoint_every=10",
    "test_batch_size=1024",
    "length_batch_size=1024",
]


def main(tiny: bool = False, out: str | Path | None = None, seeds=(0, 1, 2)) -> dict:
    """Run the ensemble into `out` (a temporary folder by default); returns
    {"status", "pass_rate": {claim: rate}, "loss": (mean, std)}."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(out) if out is not None else Path(tmp) / "ensemble"
        run = icgd.run("one-step-gd", TINY if tiny else SMALL, seeds=list(seeds), out=folder)
        result = run.result

    summary = result.seeds
    print(f"one-step-gd, seeds {summary.seeds}: {result.status} (statuses {summary.status})")
    print(f"{'claim':<22} {'pass rate':>9}  per seed")
    for name, rate in summary.claim_pass_rate.items():
        print(f"{name:<22} {rate:>9.2f}  {summary.claims[name]}")
    loss = (result.metrics["loss.mean"], result.metrics["loss.std"])
    print(f"held-out loss: {loss[0]:.4f} ± {loss[1]:.4f} (mean ± std over seeds)")
    print(f"training stacked over the seeds: {summary.batched}")
    return {"status": result.status, "pass_rate": dict(summary.claim_pass_rate), "loss": loss}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="20 training steps a seed (tests)")
    parser.add_argument("--out", default=None, help="keep the ensemble folder here")
    args = parser.parse_args()
    main(tiny=args.tiny, out=args.out)
