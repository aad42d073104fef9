"""Wall time of the default `icgd run looped-gd` (training both models, baselines, theory, analysis,
figures), against the issue's target of 2 minutes on 2 CPU cores.

Usage: python benchmarks/bench_looped_gd_run.py [--set key=value ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from icgd.runs.figures import draw_figures
from icgd.runs.runner import prepare_run_dir, resolve_config, run_experiment

TARGET_SECONDS = 120.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", nargs="*", default=[], dest="overrides")
    args = parser.parse_args()
    config = resolve_config("looped-gd", overrides=args.overrides)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = prepare_run_dir("looped-gd", config, Path(tmp) / "run")
        start = time.perf_counter()
        result = run_experiment("looped-gd", config, run_dir)
        ran = time.perf_counter() - start
        figures = draw_figures(run_dir)
        total = time.perf_counter() - start
    print(f"threads={torch.get_num_threads()} torch {torch.__version__} device={config.device}")
    passed = sum(c.passed for c in result.claims)
    print(f"status: {result.status}; claims passed {passed}/{len(result.claims)}")
    print(f"run (train ×2, baselines, theory, analysis): {ran:7.1f} s")
    print(f"figures ({len(figures)}):                          {total - ran:7.1f} s")
    print(f"total:                                       {total:7.1f} s", end="")
    print(f"  = {total / TARGET_SECONDS:.2f} × the {TARGET_SECONDS:.0f} s target")


if __name__ == "__main__":
    main()
