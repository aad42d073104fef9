"""`icgd report … --readme FILE`: the experiments' status table between the README's markers, one
row per experiment from its newest run, text outside the markers kept; bad --readme input is a
one-line error that leaves both the file and the HTML report unwritten."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from icgd.cli import main
from icgd.core.results import read_result, write_result
from icgd.reporting.status import BEGIN, END, HEADERS
from icgd.runs.runner import prepare_run_dir, resolve_config, run_experiment

TINY = [
    "train.steps=10",
    "train.batch_size=128",
    "train.eval_batch_size=128",
    "train.eval_every=5",
    "train.checkpoint_every=5",
    "test_batch_size=512",
]
README = f"# project\n\nintro | with a pipe\n\n{BEGIN}\nstale table\n{END}\n\n## after\nkept\n"


@pytest.fixture
def cli(capsys):
    """`icgd ARGS` in-process: (exit code, stdout, stderr)."""

    def run(argv: list) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two real tiny one-step-gd runs: `old` (all claims forced to pass) and `new` (written
    later, its first claim forced to fail)."""
    root = tmp_path_factory.mktemp("status")
    config = resolve_config("one-step-gd", overrides=TINY)
    first = prepare_run_dir("one-step-gd", config, root / "old")
    run_experiment("one-step-gd", config, first)
    second = root / "new"
    shutil.copytree(first, second)
    result = read_result(first / "result.json")
    passing = [c.model_copy(update={"passed": True}) for c in result.claims]
    write_result(first / "result.json", result.model_copy(update={"claims": passing}))
    failing = [c.model_copy(update={"passed": i > 0}) for i, c in enumerate(result.claims)]
    write_result(second / "result.json", result.model_copy(update={"claims": failing}))
    stamp = (first / "result.json").stat().st_mtime
    os.utime(first / "result.json", (stamp - 60, stamp - 60))  # `new` is the last run
    return first, second


def table_rows(text: str) -> list[list[str]]:
    block = text[text.index(BEGIN) + len(BEGIN) : text.index(END)]
    lines = [line for line in block.strip().splitlines()]
    assert lines[0] == "| " + " | ".join(HEADERS) + " |"
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in lines[2:]]


def test_the_newest_run_of_each_experiment_fills_the_table(runs, tmp_path, cli):
    old, new = runs
    readme = tmp_path / "README.md"
    readme.write_text(README)
    code, out, err = cli(["report", old, new, "--out", tmp_path / "r.html", "--readme", readme])
    assert code == 0, err
    text = readme.read_text()
    rows = table_rows(text)
    n = len(read_result(new / "result.json").claims)
    first = read_result(new / "result.json").claims[0].name
    assert len(rows) == 1  # one experiment, its last run only
    experiment, paper, passed, status, seed, _, folder = rows[0]
    assert experiment == "`one-step-gd`" and "Ahn et al. 2023" in paper
    assert passed == f"{n - 1}/{n}" and first in status and seed == "0"
    assert folder == f"`{new}`"
    assert text.startswith("# project\n\nintro | with a pipe\n\n" + BEGIN + "\n")
    assert text.endswith(END + "\n\n## after\nkept\n") and "stale table" not in text
    assert (tmp_path / "r.html").is_file() and "status table" in out

    cli(["report", old, new, "--out", tmp_path / "r.html", "--readme", readme])
    assert readme.read_text() == text  # rerunning changes nothing


def test_rows_of_experiments_not_reported_are_kept(runs, tmp_path, cli):
    other = "| `looped-gd` | Gatmiry et al. 2024 | 6/6 | passed | 0 | 90 s | `runs/x` |"
    stale = "| `one-step-gd` | old | 0/4 | failed | 3 | 1 s | `runs/old` |"
    readme = tmp_path / "README.md"
    readme.write_text(f"{BEGIN}\n| header |\n|---|\n{stale}\n{other}\n{END}\n")
    code, _, err = cli(["report", runs[1], "--out", tmp_path / "r.html", "--readme", readme])
    assert code == 0, err
    text = readme.read_text()
    rows = table_rows(text)
    assert [r[0] for r in rows] == ["`looped-gd`", "`one-step-gd`"]  # by name
    assert other in text and stale not in text and rows[1][-1] == f"`{runs[1]}`"


def test_a_seed_ensemble_row_gives_pass_rates_and_its_seeds(runs, tmp_path, cli):
    """Seeds 0 and 3, each from a real tiny run: seed 0 passes every claim, seed 3 all but the
    first, so all but one claim pass on every seed."""
    from icgd.experiments.one_step_gd import OneStepGDConfig
    from icgd.runs.seeds import aggregate

    old, new = runs
    results = [read_result(old / "result.json"), read_result(new / "result.json")]
    config = OneStepGDConfig.model_validate(results[0].config)
    folder = tmp_path / "ens"
    folder.mkdir()
    ensemble = aggregate("one-step-gd", config, [0, 3], results, wall_seconds=1.0, batched=True)
    write_result(folder / "result.json", ensemble)
    readme = tmp_path / "README.md"
    readme.write_text(README)
    code, _, err = cli(["report", folder, "--out", tmp_path / "r.html", "--readme", readme])
    assert code == 0, err
    (row,) = table_rows(readme.read_text())
    n = len(results[0].claims)
    assert row[2] == f"{n - 1}/{n} on every seed (mean pass rate {(n - 0.5) / n:.0%})"
    assert row[4] == "0,3 (2)"


def test_the_readme_of_this_repository_has_the_markers():
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert len(table_rows(text)) >= 1


@pytest.mark.parametrize("case", ["missing", "no_markers", "reversed"])
def test_bad_readme_is_a_one_line_error_and_nothing_is_written(case, runs, tmp_path, cli):
    readme = tmp_path / "README.md"
    content = {"no_markers": "# x\n", "reversed": f"{END}\n{BEGIN}\n"}.get(case)
    if content is not None:
        readme.write_text(content)
    code, _, err = cli(["report", runs[1], "--out", tmp_path / "r.html", "--readme", readme])
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: --readme"), err
    assert not (tmp_path / "r.html").exists()
    if content is not None:
        assert readme.read_text() == content


def test_every_experiment_names_its_paper():
    from icgd.experiments.api import EXPERIMENTS

    assert all(experiment.paper.strip() for _, experiment in EXPERIMENTS.items())
