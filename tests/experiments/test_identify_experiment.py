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
