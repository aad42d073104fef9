"""Run a small sweep from Python and print its table — what `icgd sweep` does.

The sweep here is over `one-step-gd` (Ahn et al. 2023: one trained LSA layer is one GD step with
the optimal preconditioner Γ*), varying the context length n and Adam's learning rate. Every
point is a normal run folder; the tables are read back from those folders only.

    outcome = icgd.sweep(name, ["n=10,20", ...], overrides, out=folder)   # sweep.json, .csv
    json.loads(outcome.tables[0].read_text())["rows"]                      # one row a point

Rerunning with the same folder skips the finished points. The equivalent command line:

    icgd sweep one-step-gd --grid n=10,20 --grid train.optimizer.lr=0.05,0.1 --out FOLDER

Run:  python examples/sweep_from_python.py [--tiny] [--out FOLDER]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import icgd

# A short training budget: a few seconds a point on one CPU thread (the default is 2000 steps).
SMALL = [
    "train.steps=300",
    "train.batch_size=1024",
    "train.eval_batch_size=1024",
    "train.eval_every=50",
    "train.checkpoint_every=300",
    "test_batch_size=8192",
]
TINY = [  # the test suite's size: seconds for the whole sweep, the numbers are not meaningful
    "train.steps=20",
    "train.batch_size=256",
    "train.eval_batch_size=256",
    "train.eval_every=10",
    "train.checkpoint_every=10",
    "test_batch_size=1024",
    "length_batch_size=1024",
]
GRID = ["n=10,20", "train.optimizer.lr=0.05,0.1"]
SHOWN = ["metrics.loss", "metrics.loss_theory_held_out", "metrics.gamma_rel_error"]


def main(tiny: bool = False, out: str | Path | None = None) -> list[dict]:
    """Run the 2×2 sweep into `out` (a temporary folder by default); returns the table's rows."""

    def report(point, event: str, status: str, message: str) -> None:
        if event in ("finished", "skipped", "error"):
            print(f"  {point.folder}: {status} {message}".rstrip())

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(out) if out is not None else Path(tmp) / "sweep"
        outcome = icgd.sweep(
            "one-step-gd", GRID, TINY if tiny else SMALL, out=folder, report=report
        )
        table = json.loads(outcome.tables[0].read_text())  # sweep.json
        columns, rows = table["columns"], table["rows"]
        keys_of_grid = [axis["key"] for axis in table["grid"]]

    for row in rows:  # claims passed / claims checked, from the `claims.<name>.passed` columns
        verdicts = [v for k, v in row.items() if k.endswith(".passed") and v is not None]
        row["claims_passed"] = f"{sum(verdicts)}/{len(verdicts)}"
    keys = [*keys_of_grid, "status", "claims_passed", *[c for c in SHOWN if c in columns]]
    print("  ".join(f"{k.removeprefix('metrics.'):>20}" for k in keys))
    for row in rows:
        cells = [row[k] for k in keys]
        print("  ".join(f"{c:>20.4g}" if isinstance(c, float) else f"{c!s:>20}" for c in cells))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="20 training steps a point (tests)")
    parser.add_argument("--out", default=None, help="keep the sweep folder here")
    args = parser.parse_args()
    main(tiny=args.tiny, out=args.out)
