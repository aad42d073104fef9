"""Seed ensembles: `--seeds` parsing, seed folders equal to single runs, the aggregation,
experiments without training, interruption and resume, the CLI."""

from __future__ import annotations

import json
import statistics

import pytest
import torch
from safetensors.torch import load_file

from icgd.cli import main
from icgd.core.errors import InputError
from icgd.core.results import read_result
from icgd.runs.runner import prepare_run_dir, resolve_config, run_experiment
from icgd.runs.seeds import parse_seeds, run_seeds

TINY = [
    "dtype=float64",
    "d=3",
    "n=6",
    "loops=2",
    "train.steps=30",
    "train.batch_size=64",
    "train.eval_batch_size=64",
    "train.eval_every=10",
    "train.checkpoint_every=10",
    "theory_samples=2000",
    "test_batch_size=256",
]
SEEDS = [0, 1, 2]


@pytest.mark.parametrize(
    ("text", "seeds"),
    [("0-3", [0, 1, 2, 3]), ("0,3,7", [0, 3, 7]), ("0-3,8", [0, 1, 2, 3, 8]), ("5", [5])],
)
def test_parse_seeds(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "3-1", "1,1", "0-2,2", "-1", "1.5", "0--2"])
def test_parse_seeds_rejects(text):
    with pytest.raises(InputError) as info:
        parse_seeds(text)
    assert info.value.field == "--seeds"


def ensemble(tmp_path, name="ens", progress=None, resume=False):
    config = resolve_config("looped-gd", overrides=TINY).model_copy(update={"seeds": SEEDS})
    run_dir = tmp_path / name
    if not resume:
        run_dir = prepare_run_dir("looped-gd", config, run_dir)
    return run_seeds("looped-gd", config, SEEDS, run_dir, resume=resume, progress=progress)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An ensemble of seeds 0, 1, 2 and the single run of seed 2."""
    tmp = tmp_path_factory.mktemp("seeds")
    result = ensemble(tmp)
    config = resolve_config("looped-gd", overrides=TINY, seed=2)
    single_dir = prepare_run_dir("looped-gd", config, tmp / "single")
    single = run_experiment("looped-gd", config, single_dir)
    return tmp, result, single


def close(a, b, rtol=1e-9):
    if isinstance(b, list):
        return all(close(x, y, rtol) for x, y in zip(a, b, strict=True))
    if b is None or a is None:
        return a is b
    return a == pytest.approx(b, rel=rtol, abs=1e-12)


def test_seed_folder_equals_single_run(runs):
    tmp, result, single = runs
    assert result.metrics["ensemble_batched"] == 1
    seed2 = read_result(tmp / "ens" / "seed2" / "result.json")
    assert seed2.status == single.status and seed2.config == single.config
    assert seed2.metrics.keys() == single.metrics.keys()
    for key, value in single.metrics.items():
        assert close(seed2.metrics[key], value), key
    for sub in ("", "stacked"):
        a = load_file(tmp / "ens" / "seed2" / sub / "checkpoint.safetensors")
        b = load_file(tmp / "single" / sub / "checkpoint.safetensors")
        for key in b:
            torch.testing.assert_close(a[key], b[key], rtol=1e-9, atol=1e-13)


def test_aggregation(runs):
    tmp, result, _ = runs
    saved = read_result(tmp / "ens" / "result.json")
    assert saved == result and saved.seeds is not None
    per_seed = [read_result(tmp / "ens" / f"seed{k}" / "result.json") for k in SEEDS]
    assert saved.seeds.status == [r.status for r in per_seed]
    losses = [r.metrics["loss"] for r in per_seed]
    assert saved.seeds.metrics["loss"] == losses
    assert saved.metrics["loss.mean"] == pytest.approx(statistics.fmean(losses))
    assert saved.metrics["loss.std"] == pytest.approx(statistics.stdev(losses))
    assert saved.metrics["loss.min"] == min(losses) and saved.metrics["loss.max"] == max(losses)
    assert saved.metrics["n_seeds"] == 3
    for claim in saved.claims:
        flags = [next(c for c in r.claims if c.name == claim.name).passed for r in per_seed]
        assert saved.seeds.claim_pass_rate[claim.name] == pytest.approx(sum(flags) / 3)
        assert claim.passed == all(flags)
        measured = [next(c for c in r.claims if c.name == claim.name).measured for r in per_seed]
        assert claim.measured == pytest.approx(statistics.fmean(measured))
    statuses = {r.status for r in per_seed}
    expected = (
        "passed" if statuses == {"passed"} else ("diverged" if "diverged" in statuses else "failed")
    )
    assert saved.status == expected
    assert saved.provenance.seed == 0 and saved.config["seeds"] == SEEDS


def test_interrupted_ensemble_resumes_to_the_same_numbers(runs, tmp_path):
    tmp, result, _ = runs

    def interrupt(task, step, total, record):
        if task == "stacked" and step == 15:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ensemble(tmp_path, progress=interrupt)
    assert read_result(tmp_path / "ens" / "result.json").status == "interrupted"
    for k in SEEDS:
        assert read_result(tmp_path / "ens" / f"seed{k}" / "result.json").status == "interrupted"
    resumed = ensemble(tmp_path, resume=True)
    assert resumed.status == result.status
    for key, value in result.metrics.items():
        assert close(resumed.metrics[key], value), key
    for k in SEEDS:
        a = (tmp_path / "ens" / f"seed{k}" / "stacked" / "metrics.jsonl").read_text()
        b = (tmp / "ens" / f"seed{k}" / "stacked" / "metrics.jsonl").read_text()
        ra, rb = [json.loads(x) for x in a.splitlines()], [json.loads(x) for x in b.splitlines()]
        assert [r["step"] for r in ra] == [r["step"] for r in rb]
        assert all(close(x["loss"], y["loss"]) for x, y in zip(ra, rb, strict=True))


def test_experiment_without_training_runs_under_seeds(tmp_path, capsys):
    out = tmp_path / "ot"
    overrides = ["ns=[4, 6]", "epsilons=[0.5]", "depth=8", "batch=2", "sort_ns=[4, 8]"]
    overrides += ["sort_epsilons=[0.1, 0.05]", "sort_depth=16", "sort_batch=2"]
    args = ["run", "optimal-transport", "--seeds", "0,5", "--out", str(out)]
    code = main(args + [x for o in overrides for x in ("--set", o)])
    assert code in (0, 1), capsys.readouterr().err
    result = read_result(out / "result.json")
    assert result.seeds is not None and result.seeds.seeds == [0, 5]
    assert result.metrics["ensemble_batched"] == 0
    assert (out / "seed0" / "result.json").is_file() and (out / "seed5" / "result.json").is_file()
    capsys.readouterr()
    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "pass rate" in shown and "seeds 0,5 (2)" in shown


@pytest.mark.parametrize("text", ["x", "3-1", "1,1"])
def test_cli_bad_seeds(tmp_path, capsys, text):
    out = tmp_path / "x"
    code = main(["run", "looped-gd", "--seeds", text, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --seeds") and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_seed_and_seeds_conflict(tmp_path, capsys):
    code = main(["run", "looped-gd", "--seeds", "0-1", "--seed", "3", "--out", str(tmp_path / "x")])
    assert code == 2 and "--seeds" in capsys.readouterr().err
