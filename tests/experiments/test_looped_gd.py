"""`looped-gd`: claims follow the setting; tiny smoke runs; divergence; the default run (slow)."""

from __future__ import annotations

import json
import math

import pytest

from icgd.core.results import read_result
from icgd.experiments.looped_gd import EXPERIMENT, LoopedGD, LoopedGDConfig
from icgd.runs.runner import prepare_run_dir, resolve_config, run_experiment

TINY = list(EXPERIMENT.presets["smoke"])


def run(tmp_path, overrides):
    config = resolve_config("looped-gd", overrides=TINY + overrides)
    run_dir = prepare_run_dir("looped-gd", config, tmp_path / "run")
    return config, run_dir, run_experiment("looped-gd", config, run_dir)


IDEAL = {
    "u_ratio": 0.0,
    "dist_whitened": 0.01,
    "dist_raw": 0.78,
    "dist_raw_theory": 0.78,
    "alpha": 0.716,
    "alpha_theory": 0.716,
    "loss": 0.27,
    "loss_theory": 0.268,
    "loss_theory_held_out": 0.27,
    "median_ratio_2L_vs_L": 0.1,
}


def test_claims_pass_on_ideal_metrics_and_fail_one_by_one():
    config = LoopedGDConfig()
    claims = LoopedGD().claims(config, IDEAL)
    assert [c.name for c in claims] == [
        "u_vanishes",
        "whitened_is_identity",
        "raw_is_inverse_covariance",
        "alpha_is_optimal",
        "loss_is_optimal",
        "more_loops_help",
    ]
    assert all(c.passed for c in claims)
    broken = {
        "u_ratio": 0.2,
        "dist_whitened": 0.3,
        "dist_raw": 0.1,
        "alpha": 0.8,
        "loss": 0.4,
        "median_ratio_2L_vs_L": 1.2,
    }
    for key, value in broken.items():
        failed = [c.name for c in LoopedGD().claims(config, IDEAL | {key: value}) if not c.passed]
        assert len(failed) == 1, (key, failed)


def test_claims_follow_the_setting():
    config = LoopedGDConfig(loops=5, parametrisation="sparse", tolerances={"alpha_rel": 0.2})
    claims = {c.name: c for c in LoopedGD().claims(config, IDEAL | {"alpha": 0.8})}
    assert "u_vanishes" not in claims  # no u in the sparse parametrisation
    assert (
        "K=10" in claims["more_loops_help"].statement
        and "L=5" in claims["alpha_is_optimal"].statement
    )
    assert claims["alpha_is_optimal"].tolerance == 0.2 and claims["alpha_is_optimal"].passed


def test_loss_claim_compares_with_the_landscape_minimiser_where_it_was_computed():
    """Gatmiry's setting: the reference is the minimiser of the looped loss found from a*·I, not
    a*·Σ⁻¹ (a saddle where c < 0); folders without that metric keep the old reference."""
    config = LoopedGDConfig()
    better = IDEAL | {"loss": 0.24, "loss_landscape_minimiser_held_out": 0.245}
    claims = {c.name: c for c in LoopedGD().claims(config, better)}
    assert claims["loss_is_optimal"].passed and claims["loss_is_optimal"].expected == 0.245
    assert "minimiser" in claims["loss_is_optimal"].statement
    old = {c.name: c for c in LoopedGD().claims(config, IDEAL | {"loss": 0.24})}
    assert old["loss_is_optimal"].expected == IDEAL["loss_theory_held_out"]


def test_structural_claim_says_why_it_fails_at_a_saddle():
    config = LoopedGDConfig()
    saddle = IDEAL | {"dist_whitened": 0.3, "skew_curvature": -0.014, "skew_curvature_se": 0.001}
    saddle |= {"landscape_skew": 0.21}
    claim = {c.name: c for c in LoopedGD().claims(config, saddle)}["whitened_is_identity"]
    assert not claim.passed and "saddle" in claim.statement and "0.21" in claim.statement
    minimum = IDEAL | {"skew_curvature": 0.05, "skew_curvature_se": 0.001}
    claim = {c.name: c for c in LoopedGD().claims(config, minimum)}["whitened_is_identity"]
    assert "saddle" not in claim.statement


def test_default_spectrum_repeats_for_other_dimensions():
    assert LoopedGDConfig(d=7).task_config().eigenvalues == (1.0, 1.0, 0.25, 0.0625, 1.0, 1.0, 1.0)
    assert LoopedGDConfig(covariance="identity").task_config().eigenvalues is None


def test_tiny_run_writes_a_complete_folder(tmp_path):
    config, run_dir, result = run(tmp_path, ["loops=2", "d=3", "n=12", "parametrisation=sparse"])
    assert result.status in ("passed", "failed")
    on_disk = read_result(run_dir / "result.json")
    assert on_disk == result
    m = result.metrics
    assert m["test_loops"] == list(range(1, 9))
    assert len(m["test_loop_median"]) == 8 and len(m["alphas_stacked"]) == 2
    assert 0 < m["alpha_theory"] < 1 and m["loss_theory"] < 3  # a*(2, 12, 3) and its loss < d
    assert math.isfinite(m["loss"]) and m["loss_ols"] < 1e-6  # noiseless, n > d: OLS interpolates
    assert {c.name for c in result.claims} == {
        "whitened_is_identity",
        "raw_is_inverse_covariance",
        "alpha_is_optimal",
        "loss_is_optimal",
        "more_loops_help",
    }
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert (
        records[-1]["step"] == 30
        and "dist_whitened" in [r for r in records if r["kind"] == "eval"][-1]
    )
    for name in (
        "config.yaml",
        "checkpoint.safetensors",
        "training_state.pt",
        "arrays.safetensors",
    ):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "stacked" / "checkpoint.safetensors").is_file()


def test_outside_the_theorem_the_theory_is_the_best_multiple_of_inverse_covariance(tmp_path):
    config, _, result = run(tmp_path, ["noise_std=0.5", "loops=1"])
    assert not config.in_theorem_setting
    m = result.metrics
    # With label noise the optimal step is shorter than the noiseless a*(1, n, d) = n/(n+d+1).
    assert 0 < m["alpha_theory"] < 20 / 26
    assert m["loss_theory"] > 0.25  # at least the noise variance σ² of y_q
    assert all(math.isfinite(c.expected) for c in result.claims)


def test_divergence_is_reported_and_keeps_the_last_good_checkpoint(tmp_path):
    overrides = [
        "train.optimizer.kind=sgd",
        "train.optimizer.lr=1e8",
        "train.clip_norm=null",
        "init_std=1.0",
    ]
    _, run_dir, result = run(tmp_path, overrides)
    assert result.status == "diverged"
    assert (
        "non-finite" in result.message
        or "nan" in result.message.lower()
        or "inf" in result.message.lower()
    )
    assert result.claims == []
    assert read_result(run_dir / "result.json").status == "diverged"


@pytest.mark.slow
def test_default_run_passes_every_claim(tmp_path):
    config = resolve_config("looped-gd")
    run_dir = prepare_run_dir("looped-gd", config, tmp_path / "default")
    result = run_experiment("looped-gd", config, run_dir)
    failed = [(c.name, c.measured, c.expected, c.tolerance) for c in result.claims if not c.passed]
    assert result.status == "passed", failed


def test_memory_estimate_grows_with_the_sizes_it_names():
    base = EXPERIMENT.memory(LoopedGDConfig())
    assert base.total > 0 and "train.batch_size" in base.fields
    for change, part in (
        ("n=80", "test prompts and loops"),  # a prompt holds (d+1)(n+1) numbers: ×3.9
        ("train.batch_size=16384", "training batches"),
        ("test_batch_size=262144", "test prompts and loops"),
    ):
        bigger = EXPERIMENT.memory(resolve_config("looped-gd", overrides=[change]))
        assert bigger.parts[part] >= 3.5 * base.parts[part], change
        assert bigger.total > base.total, change
