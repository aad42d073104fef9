"""The contract every registered experiment keeps, plugins included (`icgd.experiments.api`):

- its `smoke` preset runs through the public API and writes a result.json whose every claim can
  be recomputed from the file (measured, expected, tolerance, comparison → passed);
- the same seed gives the same numbers (wall-clock rates aside);
- a bad config is one line `error: <field>: …`, exit 2, nothing written;
- its memory estimate is positive, names config fields, and the smoke preset needs no more than
  the default config;
- every model it trained rebuilds from its checkpoint (`icgd.load_run(...).models`).
"""

from __future__ import annotations

import re

import pytest
import torch

import icgd
from icgd.cli import main
from icgd.core.results import make_claim
from icgd.experiments.api import EXPERIMENTS
from icgd.runs.runner import resolve_config

NAMES = EXPERIMENTS.names()
# Metrics that measure the machine, not the math (e.g. in-context-td's processes_per_second).
TIMING = re.compile(r"(seconds|per_second|wall)")


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """Each experiment's smoke run, made once on first use."""
    root, done = tmp_path_factory.mktemp("contracts"), {}

    def get(name: str):
        if name not in done:
            done[name] = icgd.run(name, preset="smoke", out=root / name)
        return done[name]

    return get


@pytest.mark.parametrize("name", NAMES)
def test_smoke_run_writes_claims_that_recompute_from_the_file(name, smoke_runs):
    run = smoke_runs(name)
    assert run.status in ("passed", "failed"), run.result.message
    assert run.claims, "an experiment checks at least one claim"
    for claim in run.claims:
        measured = float("nan") if claim.measured is None else claim.measured
        again = make_claim(
            claim.name,
            claim.statement,
            measured,
            claim.expected,
            claim.tolerance,
            claim.comparison,
        )
        assert again.passed == claim.passed, claim.name
    assert run.status == ("passed" if all(c.passed for c in run.claims) else "failed")


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_numbers(name, smoke_runs, tmp_path):
    first = smoke_runs(name)
    again = icgd.run(name, preset="smoke", out=tmp_path / "again")
    same = {k: v for k, v in first.metrics.items() if not TIMING.search(k)}
    assert {k: v for k, v in again.metrics.items() if not TIMING.search(k)} == same
    assert again.claims == first.claims


@pytest.mark.parametrize("name", NAMES)
def test_bad_config_names_the_field(name, tmp_path, capsys):
    out = tmp_path / "bad"
    code = main(["run", name, "--set", "no_such_field=1", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and "no_such_field" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("name", NAMES)
def test_memory_estimate_is_positive_and_smoke_is_smaller(name):
    experiment = EXPERIMENTS.get(name)
    default = experiment.memory(experiment.Config())
    smoke = experiment.memory(resolve_config(name, preset="smoke"))
    assert default is not None and default.total > 0 and default.fields
    fields = experiment.Config.model_fields
    assert all(f.split(".")[0] in fields for f in default.fields), default.fields
    assert smoke.total <= default.total


@pytest.mark.parametrize("name", NAMES)
def test_every_trained_model_rebuilds_from_its_checkpoint(name, smoke_runs):
    """`icgd.load_run(...).models` rebuilds every checkpoint of the run (its model class, config
    and init arguments are in the checkpoint) with exactly the saved weights."""
    from safetensors.torch import load_file

    run = smoke_runs(name)
    for sub, model in run.models.items():
        saved = load_file(str(run.path / sub / "checkpoint.safetensors"))
        state = model.state_dict()
        assert saved.keys() == state.keys(), sub
        assert all(torch.equal(saved[k], state[k]) for k in saved), sub
