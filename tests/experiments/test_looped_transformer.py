"""`looped-transformer`: claims on synthetic metrics, the paper preset, a tiny run (folder,
figures, determinism), bad input at the CLI, and the default run (slow)."""

from __future__ import annotations

import math

import pytest

from icgd.core.results import read_result
from icgd.experiments.looped_transformer import (
    EXPERIMENT,
    SMOKE,
    LoopedTransformerConfig,
    LoopedTransformerExperiment,
)
from icgd.runs.figures import draw_figures
from icgd.runs.runner import prepare_run_dir, resolve_config, run_experiment

TINY = list(SMOKE)

IDEAL = {
    "error_ratio_looped_multilayer": 1.2,
    "param_ratio": 0.3,
    "loop_flatness": 1.02,
    "models_vs_baselines_at_2d": 0.2,
    "k_2d": 10,
}
BROKEN = {
    "error_ratio_looped_multilayer": 2.5,
    "param_ratio": 0.8,
    "loop_flatness": 1.3,
    "models_vs_baselines_at_2d": 0.7,
}


def test_claims_pass_on_ideal_metrics_and_fail_one_by_one():
    config = LoopedTransformerConfig()
    claims = LoopedTransformerExperiment().claims(config, IDEAL)
    assert [c.name for c in claims] == [
        "looped_matches_multilayer",
        "looped_fewer_parameters",
        "flat_past_b",
        "far_below_knn_averaging",
    ]
    assert all(c.passed for c in claims), [c for c in claims if not c.passed]
    for key, value in BROKEN.items():
        claims = LoopedTransformerExperiment().claims(config, IDEAL | {key: value})
        failed = [c.name for c in claims if not c.passed]
        assert len(failed) == 1, (key, failed)
    # NaN never passes; the error-factor boundary is inclusive
    nan = LoopedTransformerExperiment().claims(config, IDEAL | {"loop_flatness": math.nan})
    assert not nan[2].passed
    edge = LoopedTransformerExperiment().claims(
        config, IDEAL | {"error_ratio_looped_multilayer": 2.0}
    )
    assert edge[0].passed


def test_paper_preset_holds_yang_et_al_sizes_and_keeps_explicit_overrides():
    paper = resolve_config("looped-transformer", overrides=["preset=paper"])
    assert (paper.d, paper.n_points, paper.n_embd, paper.n_head) == (20, 41, 256, 8)
    assert (paper.n_loops, paper.grad_last, paper.depth) == (30, 15, 12)
    assert paper.curriculum is not None and paper.loop_curriculum is not None
    assert paper.train.optimizer.lr == 1e-4
    again = resolve_config("looped-transformer", overrides=["preset=paper", "depth=6"])
    assert again.depth == 6 and again.n_loops == 30
    # the resolved config re-validates to itself (what a run folder stores)
    assert LoopedTransformerConfig.model_validate(paper.model_dump()) == paper


def run(tmp_path, overrides=(), name="run"):
    config = resolve_config("looped-transformer", overrides=TINY + list(overrides))
    run_dir = prepare_run_dir("looped-transformer", config, tmp_path / name)
    return config, run_dir, run_experiment("looped-transformer", config, run_dir)


def test_tiny_run_writes_a_complete_folder_and_repeats_exactly(tmp_path):
    config, run_dir, result = run(tmp_path)
    assert result.status in ("passed", "failed")
    assert read_result(run_dir / "result.json") == result
    m = result.metrics
    n = config.n_points
    for key in ("err_looped", "err_multilayer", "err_least_squares", "err_knn3", "err_averaging"):
        assert len(m[key]) == n and all(math.isfinite(v) for v in m[key]), key
    assert len(m["err_vs_loops"]) == config.test_loop_factor * config.n_loops
    # noiseless linear task: least squares is exact from k = d context points on
    assert max(m["err_least_squares"][config.d :]) < 1e-8
    # with no context every baseline predicts 0: error E[y²]/d ≈ 1
    assert m["err_least_squares"][0] == m["err_averaging"][0] == m["err_knn3"][0]
    assert m["params_looped"] < m["params_multilayer"]
    assert m["k_2d"] == 2 * config.d
    for key in (
        "error_ratio_looped_multilayer",
        "loop_flatness",
        "models_vs_baselines_at_2d",
        "err_looped_k_ge_d",
    ):
        assert math.isfinite(m[key]), key
    assert len(result.claims) == 4
    for sub in ("looped", "multilayer"):
        assert (run_dir / sub / "checkpoint.safetensors").is_file(), sub
    figures = {p.name for p in draw_figures(run_dir)}
    assert {"error_vs_loops.png", "error_vs_points.png", "training_curves.png"} <= figures
    _, _, again = run(tmp_path, name="again")
    assert again.metrics == result.metrics


def test_tiny_run_with_curricula(tmp_path):
    _, _, result = run(
        tmp_path,
        [
            "curriculum={dims: {start: 1, end: 2, interval: 3}, "
            "points: {start: 3, end: 5, inc: 2, interval: 3}}",
            "loop_curriculum={start: 1, end: 2, interval: 3}",
        ],
    )
    assert result.status in ("passed", "failed")
    assert math.isfinite(result.metrics["err_looped_k_ge_d"])


def test_memory_estimate_is_positive_and_grows_with_the_sizes():
    config = LoopedTransformerConfig()
    base = EXPERIMENT.memory(config)
    assert base.total > 0 and all(v > 0 for v in base.parts.values())
    assert {"train.batch_size", "test_batch_size", "n_embd"} <= set(base.fields)
    train = config.train.model_copy(update={"batch_size": 4 * config.train.batch_size})
    bigger_batch = EXPERIMENT.memory(config.model_copy(update={"train": train}))
    assert bigger_batch.parts["training batch"] >= 2 * base.parts["training batch"]
    for field, value in (("test_batch_size", 4 * config.test_batch_size), ("n_embd", 256)):
        grown = EXPERIMENT.memory(config.model_copy(update={field: value}))
        assert grown.total >= 2 * base.total, field


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("grad_last=20", "grad_last"),
        ("n_head=3", "n_embd"),
        ("n_points=2", "n_points"),
        ("preset=gpu", "preset"),
        ("tolerances.loop_flatness=-1", "loop_flatness"),
    ],
)
def test_bad_config_is_one_line_exit_2(assert_bad_config, override, field):
    assert_bad_config("looped-transformer", override, field)


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="measured: on the CPU recipe (d = 2) the looped model learns more slowly than the GPT "
    "(0.42 vs 0.16 at k >= d: ratio 2.5 > 2; 0.52 x the baselines at k = 2d > 0.5) (issue 5)",
)
def test_default_run_passes_every_claim(tmp_path):
    config = resolve_config("looped-transformer", overrides=[])
    run_dir = prepare_run_dir("looped-transformer", config, tmp_path / "default")
    result = run_experiment("looped-transformer", config, run_dir)
    assert result.status == "passed", [c for c in result.claims if not c.passed]
