"""`stacked-gd`: claims pass on ideal metrics and fail one by one; tiny runs; the default (slow)."""

from __future__ import annotations

import math

import pytest

from icgd.core.results import read_result
from icgd.experiments.stacked_gd import EXPERIMENT, StackedGD, StackedGDConfig
from icgd.runs.figures import draw_figures
from icgd.runs.runner import prepare_run_dir, resolve_config, run_experiment

TINY = list(EXPERIMENT.presets["smoke"])


def run(tmp_path, overrides):
    config = resolve_config("stacked-gd", overrides=TINY + overrides)
    run_dir = prepare_run_dir("stacked-gd", config, tmp_path / "run")
    return config, run_dir, run_experiment("stacked-gd", config, run_dir)


IDEAL = {
    "max_dist_whitened": 0.02,
    "max_dist_raw_gap": 0.01,
    "max_alpha_rel_err": 0.02,
    "loss_ratio": 1.01,
    "max_dist_B": 0.05,
}
BROKEN = {
    "max_dist_whitened": 0.3,
    "max_dist_raw_gap": 0.2,
    "max_alpha_rel_err": 0.15,
    "loss_ratio": 1.3,
    "max_dist_B": 0.5,
}


@pytest.mark.parametrize(
    ("parametrisation", "names"),
    [
        (
            "sparse",
            [
                "whitened_is_identity",
                "raw_is_inverse_covariance",
                "alphas_are_optimal",
                "loss_is_optimal",
            ],
        ),
        (
            "relaxed",
            [
                "whitened_is_identity",
                "raw_is_inverse_covariance",
                "loss_at_most_sparse_optimum",
                "B_is_identity",
            ],
        ),
    ],
)
def test_claims_pass_on_ideal_metrics_and_fail_one_by_one(parametrisation, names):
    config = StackedGDConfig(parametrisation=parametrisation)
    claims = StackedGD().claims(config, IDEAL)
    assert [c.name for c in claims] == names
    assert all(c.passed for c in claims)
    for key, value in BROKEN.items():
        failed = [c.name for c in StackedGD().claims(config, IDEAL | {key: value}) if not c.passed]
        used = not (
            (key == "max_dist_B" and parametrisation == "sparse")
            or (key == "max_alpha_rel_err" and parametrisation == "relaxed")
        )
        assert len(failed) == (1 if used else 0), (key, failed)


def test_relaxed_loss_claim_is_one_sided_and_sparse_is_two_sided():
    sparse = {c.name: c for c in StackedGD().claims(StackedGDConfig(), IDEAL | {"loss_ratio": 0.8})}
    relaxed = {
        c.name: c
        for c in StackedGD().claims(
            StackedGDConfig(parametrisation="relaxed"), IDEAL | {"loss_ratio": 0.8}
        )
    }
    assert not sparse["loss_is_optimal"].passed  # lower than the optimum: something is off
    assert relaxed["loss_at_most_sparse_optimum"].passed  # GD++ may beat the sparse optimum


def test_tiny_sparse_run_writes_a_complete_folder(tmp_path):
    config, run_dir, result = run(
        tmp_path,
        [
            "layers=2",
            "d=3",
            "n=12",
            "sweep=depth_and_n",
            "sweep_layers=[1,2]",
            "sweep_contexts=[10,20]",
        ],
    )
    assert result.status in ("passed", "failed")
    assert read_result(run_dir / "result.json") == result
    m = result.metrics
    assert len(m["alphas"]) == 2 and m["alphas"] == sorted(m["alphas"])
    assert len(m["alphas_theory"]) == 2 and 0 < m["alphas_theory"][0] < m["alphas_theory"][1]
    assert len(m["dist_whitened"]) == 2 and len(m["dist_raw"]) == 2
    assert math.isfinite(m["loss"]) and m["loss_theory"] < 3
    # The theory-optimal per-layer PGD beats (or ties) the line-searched single-step-size PGD.
    assert m["loss_theory_held_out"] <= m["loss_pgd"] * 1.01
    assert m["theory_order_descending"] in (0, 1) and m["theory_order_gap"] < 1e-3
    assert m["sweep_layers"] == [1, 2] and len(m["sweep_L_loss_trained"]) == 2
    assert m["sweep_contexts"] == [10, 20] and len(m["sweep_n_loss_gd"]) == 2
    # More steps of the theory optimum help; longer contexts help.
    assert m["sweep_L_loss_theory"][1] < m["sweep_L_loss_theory"][0]
    assert m["sweep_n_loss_theory"][-1] < m["sweep_n_loss_theory"][0]
    for name in ("config.yaml", "checkpoint.safetensors", "arrays.safetensors", "metrics.jsonl"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "sweep" / "L1" / "checkpoint.safetensors").is_file()
    assert (run_dir / "sweep" / "n10" / "checkpoint.safetensors").is_file()
    assert draw_figures(run_dir)
    for figure in ("training_loss", "layer_heatmaps", "layer_scales", "loss_vs_layers"):
        assert (run_dir / "figures" / f"{figure}.png").is_file(), figure
    assert (run_dir / "figures" / "loss_vs_context.png").is_file()


def test_tiny_relaxed_run_reports_B(tmp_path):
    _, run_dir, result = run(
        tmp_path, ["layers=2", "d=3", "n=12", "parametrisation=relaxed", "sweep=none"]
    )
    assert result.status in ("passed", "failed")
    m = result.metrics
    assert len(m["dist_B"]) == 2 and len(m["b_scales"]) == 2 and len(m["dist_B_whitened"]) == 2
    assert math.isfinite(m["max_dist_B"])
    assert {c.name for c in result.claims} == {
        "whitened_is_identity",
        "raw_is_inverse_covariance",
        "loss_at_most_sparse_optimum",
        "B_is_identity",
    }
    assert draw_figures(run_dir) and (run_dir / "figures" / "layer_heatmaps.png").is_file()


@pytest.mark.slow
def test_default_run_passes_every_claim(tmp_path):
    config = resolve_config("stacked-gd")
    run_dir = prepare_run_dir("stacked-gd", config, tmp_path / "default")
    result = run_experiment("stacked-gd", config, run_dir)
    failed = [(c.name, c.measured, c.expected, c.tolerance) for c in result.claims if not c.passed]
    assert result.status == "passed", failed


@pytest.mark.parametrize("parametrisation", ["sparse", "relaxed"])
def test_memory_estimate_is_positive_and_grows_with_the_sizes(parametrisation):
    config = StackedGDConfig(parametrisation=parametrisation)
    base = EXPERIMENT.memory(config)
    assert base.total > 0 and all(v > 0 for v in base.parts.values())
    assert {"n", "layers", "train.batch_size", "test_batch_size"} <= set(base.fields)
    # The test prompts dominate at the default sizes: ×4 of them more than doubles the total.
    more_tests = EXPERIMENT.memory(config.model_copy(update={"test_batch_size": 4 * 65536}))
    assert more_tests.total >= 2 * base.total
    assert EXPERIMENT.memory(config.model_copy(update={"n": 80})).total >= 2 * base.total
    bigger_batch = EXPERIMENT.memory(
        config.model_copy(
            update={"train": config.train.model_copy(update={"batch_size": 4 * 4096})}
        )
    )
    assert bigger_batch.parts["training batch"] == 4 * base.parts["training batch"]
    assert bigger_batch.total > base.total
    deeper = EXPERIMENT.memory(config.model_copy(update={"layers": 12}))
    assert deeper.total > base.total
    # The context sweep trains and tests at the largest n (80 by default).
    with_n = EXPERIMENT.memory(config.model_copy(update={"sweep": "depth_and_n"}))
    assert with_n.total > base.total
