"""`identify` (the experiment behind `icgd identify`): known answers, claims, sources, the CLI."""

from __future__ import annotations

import pytest

from icgd.cli import main
from icgd.core.errors import InputError
from icgd.core.results import read_result
from icgd.experiments.identify import EXPERIMENT, IdentifyConfig
from icgd.runs.runner import resolve_config

EXACT = {
    "expected_is.gd": 1.0,
    "expected_r2": 1.0 - 1e-12,
    "best_r2": 1.0,
    "expected_steps": 1.0,
    "expected_steps_fitted": 1.0,
    "expected_exact": 1.0,
    "expected_error.eta": 1e-9,
}


def test_claims_of_an_exact_construction_pass_and_fail_one_by_one():
    config = IdentifyConfig()
    claims = EXPERIMENT.claims(config, EXACT)
    assert [c.name for c in claims] == [
        "expected_algorithm_fits",
        "nothing_fits_better",
        "expected_steps",
        "expected_eta",
    ]
    assert all(c.passed for c in claims)
    broken = {
        "expected_r2": 0.99,  # also lets another candidate fit better
        "expected_steps_fitted": 2.0,
        "expected_error.eta": 0.01,
    }
    for key, value in broken.items():
        failed = [c.name for c in EXPERIMENT.claims(config, EXACT | {key: value}) if not c.passed]
        assert failed, key
    assert EXPERIMENT.claims(config, {"gd.rank": 1.0}) == []  # nothing known: no claims


def test_a_trained_model_gets_the_looser_tolerances():
    trained = EXACT | {"expected_exact": 0.0, "expected_r2": 0.99, "expected_error.eta": 0.05}
    assert all(c.passed for c in EXPERIMENT.claims(IdentifyConfig(), trained))


def test_bad_sources_and_algorithms_are_one_line_errors(tmp_path):
    with pytest.raises(InputError, match="source"):
        resolve_config("identify", overrides=["source=construction:nope"])
    with pytest.raises(InputError, match="source"):
        resolve_config("identify", overrides=[f"source={tmp_path}"])
    with pytest.raises(InputError, match="algorithms"):
        resolve_config("identify", overrides=["algorithms=[gd,magic]"])
    assert main(["identify", str(tmp_path / "missing")]) == 2
    assert not (tmp_path / "missing").exists()
    # a regression candidate for a TD model: a one-line error naming the field, not a crash
    out = tmp_path / "td"
    assert main(["identify", "construction:td0", "--algorithms", "gd", "--out", str(out)]) == 2


@pytest.mark.parametrize(
    ("name", "parameter"),
    [("gd", "eta"), ("preconditioned-gd", "gamma"), ("iterative-newton", "alpha")],
)
def test_cli_finds_what_each_construction_was_built_with(tmp_path, name, parameter):
    out = tmp_path / name
    code = main(
        [
            "identify",
            f"construction:{name}",
            "--prompts",
            "512",
            "--out",
            str(out),
            "--set",
            "bootstrap=4",
            "probe_prompts=256",
        ]
    )
    result = read_result(out / "result.json")
    assert code == 0 and result.status == "passed", [c for c in result.claims if not c.passed]
    assert f"expected_{parameter}" in {c.name for c in result.claims}
    assert (out / "figures" / "ranking.png").is_file() and (
        out / "figures" / "layer_map.png"
    ).is_file()


NEARER = {
    "expected_exact": 0.0,
    "expected_nearer.ridge": 1.0,
    "expected_nearer.ols": 1.0,
    "expected_than.one-step-gd": 1.0,
    "expected_nearer_spd": 0.04,
    "expected_than_spd": 0.5,
}


def test_nearer_than_claim_compares_the_spds():
    (claim,) = EXPERIMENT.claims(IdentifyConfig(), NEARER)
    assert claim.name == "nearer_than" and claim.passed
    assert "ridge or ols" in claim.statement and "one-step-gd" in claim.statement
    (claim,) = EXPERIMENT.claims(IdentifyConfig(), NEARER | {"expected_nearer_spd": 0.6})
    assert not claim.passed


def test_a_trained_model_that_did_not_learn_fails_the_first_claim():
    """A deep model that diverges on some prompts can still look "nearer ridge than one GD
    step" (both SPDs are dominated by the same blow-ups); its MSE above the zero predictor's
    says the answer means nothing there."""
    broken = NEARER | {"model_mse_over_zero": 4.9}
    learned, nearer = EXPERIMENT.claims(IdentifyConfig(), broken)
    assert learned.name == "model_learned_the_task" and not learned.passed
    assert nearer.passed


def test_which_algorithm_known_answers_by_depth():
    from icgd.experiments.which_algorithm import EXPERIMENT as WA
    from icgd.experiments.which_algorithm.config import regression_task
    from icgd.theory import optimal_prefix_step_scale

    config = resolve_config("which-algorithm", preset="smoke")
    task = regression_task(config, 0.5)
    one = WA.known_answer(config, {}, "models/L1-s0.5", task)
    assert (one["algorithm"], one["steps"]) == ("gd", 1)
    assert one["parameters"]["eta"] == optimal_prefix_step_scale(config.context, config.d, 0.5)
    deep = WA.known_answer(config, {}, "models/L2-s0.5", task)
    assert deep["algorithm"] is None and deep["nearer"] == ("ridge", "ols")
    assert deep["than"] == "one-step-gd"
    assert WA.known_answer(config, {}, "", task) is None


@pytest.mark.slow
def test_identify_on_a_which_algorithm_run_claims_by_depth(tmp_path):
    """End to end on the smoke models (too briefly trained for the claims to mean anything):
    a one-layer model gets the one-GD-step claims, a two-layer one the nearer-than claim."""
    run = tmp_path / "wa"
    main(["run", "which-algorithm", "--preset", "smoke", "--out", str(run)])
    small = ["--prompts", "256", "--set", "bootstrap=2", "--set", "probes=false"]
    for model, claims in (("L1-s0", "expected_eta"), ("L2-s0", "nearer_than")):
        out = tmp_path / model
        main(["identify", str(run), "--model", f"models/{model}", *small, "--out", str(out)])
        result = read_result(out / "result.json")
        assert claims in [c.name for c in result.claims]
        assert "one-step-gd.spd" in result.metrics or model == "L1-s0"


def test_stacked_gd_known_answers_and_tasks():
    from icgd.experiments.stacked_gd import EXPERIMENT as SG

    config = resolve_config("stacked-gd", preset="smoke")
    task = SG.task(config, "")
    main = SG.known_answer(config, {}, "", task)
    assert (main["algorithm"], main["steps"]) == ("stacked-preconditioned-gd", config.layers)
    assert SG.known_answer(config, {}, "sweep/L1", task)["algorithm"] == "preconditioned-gd"
    assert SG.task(config, "sweep/n7").n == 7
    with pytest.raises(InputError, match="model"):
        SG.task(config, "nope")
    relaxed = config.model_copy(update={"parametrisation": "relaxed"})
    assert SG.known_answer(relaxed, {}, "", task) is None
