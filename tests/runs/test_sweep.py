"""`icgd sweep`: grid parsing and point names; a 2×2 sweep of tiny one-step-gd runs (folders,
tables, figure); a rerun skips every finished point; an interrupted sweep resumes to the numbers
of an uninterrupted one; a failing point is recorded and retried; bad input exits 2 with one line
and writes nothing; a process pool gives the tables of the sequential run; seed ensembles."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from pathlib import Path

import pytest
import torch

from icgd.cli import main
from icgd.core.errors import InputError
from icgd.core.results import read_result
from icgd.experiments.api import RunContext
from icgd.runs.runner import resolve_config
from icgd.runs.sweep import TIMING_COLUMNS, parse_grid, plan_sweep, point_state

TINY = [
    "train.steps=20",
    "train.batch_size=256",
    "train.eval_batch_size=256",
    "train.eval_every=10",
    "train.checkpoint_every=10",
    "test_batch_size=1024",
]
SETS = [arg for item in TINY for arg in ("--set", item)]
GRID = ["--grid", "n=10,20", "--grid", "train.optimizer.lr=0.05,1e-1"]
VALUES = [(10, 0.05), (10, 0.1), (20, 0.05), (20, 0.1)]
FOLDERS = [
    "000-n=10,train.optimizer.lr=0.05",
    "001-n=10,train.optimizer.lr=0.1",
    "002-n=20,train.optimizer.lr=0.05",
    "003-n=20,train.optimizer.lr=0.1",
]


def sweep(folder: Path, *extra: str) -> tuple[int, str, str]:
    """`icgd sweep one-step-gd` on the 2×2 grid into `folder`: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    argv = ["sweep", "one-step-gd", *GRID, *SETS, "--out", str(folder), *extra]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def table(folder: Path) -> dict:
    return json.loads((folder / "sweep.json").read_text())


def without_timing(data: dict) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in data["rows"]]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder` with its bytes and modification time."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> Path:
    """The 2×2 sweep run sequentially, uninterrupted."""
    folder = tmp_path_factory.mktemp("sweep") / "s"
    code, out, err = sweep(folder)
    assert code in (0, 1) and "Traceback" not in err, err
    assert out.count(": finished (") == 4
    return folder


# --- parsing and planning ------------------------------------------------------------------------


def test_parse_grid_reads_yaml_values():
    axis = parse_grid("train.optimizer.kind=adam,sgd")
    assert axis.key == "train.optimizer.kind" and axis.values == ("adam", "sgd")
    assert parse_grid("x=1, 2.5,true,null").values == (1, 2.5, True, None)
    assert parse_grid("eigenvalues=[1,1],[1, 0.5]").values == ([1, 1], [1, 0.5])
    for bad in ("n", "=1,2", "n=", "n=[1,2", "a..b=1"):
        with pytest.raises(InputError) as info:
            parse_grid(bad)
        assert info.value.field.startswith("--grid")


def test_plan_validates_every_point_and_names_folders(tmp_path):
    base = resolve_config("one-step-gd", None, TINY)
    plan = plan_sweep(
        "one-step-gd", base, ["n=10,20", "train.optimizer.lr=0.05,1e-1"], out=tmp_path
    )
    assert [p.folder for p in plan.points] == FOLDERS
    # values are those of the resolved config (YAML's "1e-1" is a string; the config's a float)
    assert [tuple(p.values.values()) for p in plan.points] == VALUES
    assert [(p.config.n, p.config.train.optimizer.lr) for p in plan.points] == VALUES
    assert plan.points[0].config.train.steps == 20
    assert list(tmp_path.iterdir()) == []  # planning writes nothing
    # a value with characters unsafe in a file name
    odd = plan_sweep("one-step-gd", base, ["eigenvalues=[1,1,1,1,0.5]"], out=tmp_path / "o")
    assert odd.points[0].folder == "000-eigenvalues=_1.0,1.0,1.0,1.0,0.5_"
    # the default folder is a digest of the sweep, so the same command finds the same folder
    a = plan_sweep("one-step-gd", base, ["n=10,20"])
    b = plan_sweep("one-step-gd", base, ["n=10,20"])
    c = plan_sweep("one-step-gd", base, ["n=10,30"])
    assert a.root == b.root != c.root and a.root.parent == Path("runs/one-step-gd")


# --- a sweep end to end --------------------------------------------------------------------------


def test_sweep_writes_point_folders_tables_and_figure(done):
    assert sorted(p.name for p in done.iterdir() if p.name[0].isdigit()) == FOLDERS
    assert (done / "sweep.yaml").is_file() and (done / "figures" / "sweep.png").is_file()
    data = table(done)
    assert data["experiment"] == "one-step-gd" and data["seeds"] is None
    assert data["grid"] == [
        {"key": "n", "values": [10, 20]},
        {"key": "train.optimizer.lr", "values": [0.05, 0.1]},
    ]
    rows = data["rows"]
    assert len(rows) == 4
    assert [(r["n"], r["train.optimizer.lr"]) for r in rows] == VALUES
    for row, name in zip(rows, FOLDERS, strict=True):
        result = read_result(done / name / "result.json")
        assert row["folder"] == name and row["status"] == result.status
        assert list((done / name / "figures").glob("*.png"))  # a normal run folder
        assert result.config["n"] == row["n"]
        assert result.config["train"]["optimizer"]["lr"] == row["train.optimizer.lr"]
        assert row["wall_seconds"] == result.provenance.wall_seconds
        for key, value in result.metrics.items():
            if not isinstance(value, list):
                assert row[f"metrics.{key}"] == value, key
        assert result.claims
        for claim in result.claims:
            assert row[f"claims.{claim.name}.measured"] == claim.measured
            assert row[f"claims.{claim.name}.passed"] is claim.passed
    # the CSV holds the same table
    with open(done / "sweep.csv", newline="") as handle:
        lines = list(csv.reader(handle))
    assert lines[0] == data["columns"] and len(lines) == 5
    for line, row in zip(lines[1:], rows, strict=True):
        cells = dict(zip(lines[0], line, strict=True))
        assert cells["folder"] == row["folder"] and cells["status"] == row["status"]
        assert float(cells["metrics.loss"]) == row["metrics.loss"]
        passed = cells["claims.leak_vanishes.passed"]
        assert passed == ("true" if row["claims.leak_vanishes.passed"] else "false")


def test_rerun_skips_every_finished_point(done, monkeypatch):
    before = {name: snapshot(done / name) for name in FOLDERS}

    def no_run(*args, **kwargs):
        raise AssertionError("a finished point was run again")

    monkeypatch.setattr("icgd.runs.runner.run_experiment", no_run)
    code, out, err = sweep(done)
    assert code in (0, 1) and "Traceback" not in err, err
    assert out.count(": skipped (") == 4
    assert {name: snapshot(done / name) for name in FOLDERS} == before


def test_interrupted_sweep_resumes_to_the_same_tables(done, tmp_path, monkeypatch):
    folder = tmp_path / "s"
    original = RunContext.progress_for

    def interrupting(self, task):
        inner = original(self, task)

        def progress(step, total, record):
            # Ctrl-C at step 15 of the second point (its checkpoint is at step 10)
            if self.run_dir.name == FOLDERS[1] and step == 15:
                raise KeyboardInterrupt
            if inner is not None:
                inner(step, total, record)

        return progress

    with monkeypatch.context() as patch:
        patch.setattr(RunContext, "progress_for", interrupting)
        code, _, err = sweep(folder)
    assert code == 130, err
    assert "Traceback" not in err
    assert [point_state(folder / name) for name in FOLDERS] == [
        "finished",
        "unfinished",
        "new",
        "new",
    ]
    assert read_result(folder / FOLDERS[1] / "result.json").status == "interrupted"
    assert [r["status"] for r in table(folder)["rows"]][1:] == ["interrupted", "pending", "pending"]
    first = snapshot(folder / FOLDERS[0])

    code, out, err = sweep(folder)
    assert code in (0, 1) and "Traceback" not in err, err
    assert out.count(": skipped (") == 1 and out.count(": finished (") == 3
    assert snapshot(folder / FOLDERS[0]) == first  # the finished point was not touched
    lines = (folder / FOLDERS[1] / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines if line.strip()]
    assert steps[-1] == 20
    # the resumed point continued from its checkpoint to the numbers of an uninterrupted run
    assert without_timing(table(folder)) == without_timing(table(done))
    assert table(folder)["columns"] == table(done)["columns"]


def test_a_failing_point_is_recorded_and_retried(done, tmp_path, monkeypatch):
    from icgd.experiments.one_step_gd import OneStepGD

    folder = tmp_path / "s"
    original = OneStepGD.run

    def failing(self, config, ctx):
        if config.n == 20:
            raise RuntimeError("boom")
        return original(self, config, ctx)

    with monkeypatch.context() as patch:
        patch.setattr(OneStepGD, "run", failing)
        code, out, err = sweep(folder)
    assert code == 1 and "Traceback" not in err, err
    rows = table(folder)["rows"]
    assert [r["status"] for r in rows[2:]] == ["error", "error"]
    assert all(r["message"] == "RuntimeError: boom" for r in rows[2:])
    assert [r["status"] for r in rows[:2]] == [r["status"] for r in table(done)["rows"][:2]]
    assert (folder / FOLDERS[2] / "error.txt").is_file()
    # a rerun retries the failed points only
    code, out, err = sweep(folder)
    assert out.count(": skipped (") == 2 and out.count(": finished (") == 2, out
    assert not (folder / FOLDERS[2] / "error.txt").exists()
    assert without_timing(table(folder)) == without_timing(table(done))


def test_process_pool_gives_the_sequential_tables(tmp_path):
    # The pool's 2 workers get max(1, cores // 2) torch threads each; float32 sums depend on the
    # thread count, so the sequential reference runs with the same count.
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))
    try:
        code, _, err = sweep(tmp_path / "ref")
    finally:
        torch.set_num_threads(threads)
    assert code in (0, 1), err
    folder = tmp_path / "s"
    code, out, err = sweep(folder, "--max-concurrent", "2")
    assert code in (0, 1) and "Traceback" not in err, err
    assert out.count(": finished (") == 4
    ref = table(tmp_path / "ref")
    assert table(folder)["columns"] == ref["columns"]
    assert without_timing(table(folder)) == without_timing(ref)


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "grid, words",
    [
        (["--grid", "nn=1,2"], ["nn", "unknown key"]),
        (["--grid", "n=10,x"], ["n:", "integer"]),
        (["--grid", "train.optimizer.kind=adam,foo"], ["train.optimizer.kind"]),
        (["--grid", "n=10,10.0"], ["--grid n", "twice"]),
        (["--grid", "n=1,2", "--grid", "n=3"], ["--grid n", "twice"]),
        (["--grid", "n"], ["--grid", "key=v1,v2"]),
        (["--grid", "n=[1,2"], ["--grid n"]),
        ([], ["--grid"]),
        (["--grid", "n=10", "--backend", "spark"], ["--backend", "local, ray"]),
        (["--grid", "n=10", "--address", "x:1"], ["--address"]),
        (["--grid", "n=10", "--max-concurrent", "0"], ["--max-concurrent"]),
        (["--grid", "seed=1,2", "--seeds", "0,1"], ["--grid seed"]),
        (["--grid", "n=10", "--seeds", "1-0"], ["--seeds"]),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, grid, words):
    folder = tmp_path / "s"
    code = main(["sweep", "one-step-gd", *grid, "--out", str(folder)])
    assert_one_line_error(code, capsys.readouterr().err, *words)
    assert not folder.exists()


def test_a_rerun_with_another_grid_or_base_is_refused(done, capsys):
    before = snapshot(done)
    cases = [
        (["--grid", "n=10,30", "--grid", "train.optimizer.lr=0.05,0.1", *SETS], "--grid"),
        (["--grid", "n=10", "--grid", "train.optimizer.lr=0.05,0.1", *SETS], "--grid"),
        ([*GRID, *SETS, "--set", "d=3"], "--set"),
        ([*GRID, *SETS, "--seeds", "0,1"], "--seeds"),
    ]
    for args, field in cases:
        code = main(["sweep", "one-step-gd", *args, "--out", str(done)])
        assert_one_line_error(code, capsys.readouterr().err, field, str(done))
    code = main(["sweep", "looped-gd", "--grid", "loops=1,2", "--out", str(done)])
    assert_one_line_error(code, capsys.readouterr().err, "one-step-gd")
    assert snapshot(done) == before


def test_a_folder_that_is_not_a_sweep_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    code = main(["sweep", "one-step-gd", *GRID, "--out", str(tmp_path)])
    assert_one_line_error(code, capsys.readouterr().err, "--out", "sweep.yaml")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_unknown_figure_metric_warns_and_keeps_the_tables(done):
    code, out, err = sweep(done, "--metric", "nope")
    assert code in (0, 1) and "Traceback" not in err, err
    assert "warning: figure not drawn (--metric: unknown metric 'nope'" in " ".join(out.split())
    code, out, _ = sweep(done, "--metric", "loss")
    assert "figure:" in out


# --- seed ensembles ------------------------------------------------------------------------------


def test_seed_ensemble_points(tmp_path):
    pytest.importorskip("icgd.runs.seeds", reason="seed ensembles not in this version")
    folder = tmp_path / "s"
    args = ["sweep", "one-step-gd", "--grid", "n=10,20", *SETS, "--seeds", "0,1"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main([*args, "--out", str(folder)])
    assert code in (0, 1)
    data = table(folder)
    assert data["seeds"] == [0, 1] and len(data["rows"]) == 2
    for row in data["rows"]:
        ensemble = read_result(folder / row["folder"] / "result.json")
        assert ensemble.config["seeds"] == [0, 1]
        assert row["metrics.n_seeds"] == 2 and row["status"] == ensemble.status
        assert row["metrics.loss.mean"] == ensemble.metrics["loss.mean"]
        for seed in (0, 1):
            single = read_result(folder / row["folder"] / f"seed{seed}" / "result.json")
            assert single.config["n"] == row["n"] and single.provenance.seed == seed
    before = snapshot(folder)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main([*args, "--out", str(folder)])  # a rerun skips both ensembles
    assert code in (0, 1)
    after = snapshot(folder)
    assert {k: v for k, v in after.items() if k[0].isdigit()} == {
        k: v for k, v in before.items() if k[0].isdigit()
    }
