"""`icgd sweep --backend ray`: a 4-point sweep on a local Ray instance, one of its points left
interrupted by an earlier local run, gives the tables of the local backend (up to timing).

Slow (starting Ray takes tens of seconds); skipped when ray is not installed (`icgd[ray]`).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from icgd.cli import main
from icgd.core.results import read_result
from icgd.experiments.api import RunContext
from icgd.runs.sweep import TIMING_COLUMNS, point_state

pytest.importorskip("ray", reason="ray is not installed (pip install 'icgd[ray]')")

pytestmark = pytest.mark.slow

TINY = [
    "train.steps=20",
    "train.batch_size=256",
    "train.eval_batch_size=256",
    "train.eval_every=10",
    "train.checkpoint_every=10",
    "test_batch_size=1024",
]
ARGS = [
    "sweep",
    "one-step-gd",
    "--grid",
    "n=10,20",
    "--grid",
    "train.optimizer.lr=0.05,0.1",
    *[arg for item in TINY for arg in ("--set", item)],
]


def sweep(folder: Path, *extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*ARGS, "--out", str(folder), *extra])
    return code, out.getvalue(), err.getvalue()


def rows(folder: Path) -> list[dict]:
    data = json.loads((folder / "sweep.json").read_text())
    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in data["rows"]]


def test_ray_backend_resumes_and_matches_the_local_tables(tmp_path, monkeypatch):
    local = tmp_path / "local"
    code, _, err = sweep(local)
    assert code in (0, 1), err

    # Leave point 1 interrupted at step 15 (checkpoint at 10) and points 2, 3 not started.
    folder = tmp_path / "ray"
    original = RunContext.progress_for

    def interrupting(self, task):
        inner = original(self, task)

        def progress(step, total, record):
            if self.run_dir.name.startswith("001-") and step == 15:
                raise KeyboardInterrupt
            if inner is not None:
                inner(step, total, record)

        return progress

    with monkeypatch.context() as patch:
        patch.setattr(RunContext, "progress_for", interrupting)
        code, _, err = sweep(folder)
    assert code == 130, err
    names = sorted(p.name for p in folder.iterdir() if p.name[0].isdigit())
    assert [point_state(folder / n) for n in names] == ["finished", "unfinished"]
    finished = (folder / names[0] / "result.json").stat().st_mtime_ns

    code, out, err = sweep(folder, "--backend", "ray", "--max-concurrent", "2")
    assert code in (0, 1), err
    assert out.count(": skipped (") == 1 and out.count(": finished (") == 3, out
    assert (folder / names[0] / "result.json").stat().st_mtime_ns == finished
    assert (folder / "ray").is_dir()  # Tune's bookkeeping went into the sweep folder
    resumed = folder / names[1]
    assert read_result(resumed / "result.json").status in ("passed", "failed")
    lines = (resumed / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == 20
    assert list((resumed / "figures").glob("*.png"))
    assert rows(folder) == rows(local)
