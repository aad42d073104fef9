"""`function-classes`: claims on synthetic metrics, the paper preset, the model's predictions at
shifted queries, tiny runs of every class (folder, figures, determinism), bad input at the CLI,
and the default run (slow)."""

from __future__ import annotations

import math

import pytest
import torch

from icgd.core.results import read_result
from icgd.experiments.function_classes import (
    ALL_CLASSES,
    EXPERIMENT,
    SMOKE,
    FunctionClassesConfig,
    FunctionClassesExperiment,
    shift_label,
)
from icgd.experiments.function_classes.evaluation import _model_at_queries
from icgd.models import GPT, GPTConfig
from icgd.runs.figures import draw_figures
from icgd.runs.runner import prepare_run_dir, resolve_config, run_experiment
from icgd.tasks.function_classes import ShiftConfig

TINY = list(SMOKE)

LINEAR_GOOD = {
    "linear.model.err_k_ge_2d": 0.03,
    "linear.least_squares.err_k_ge_2d": 1e-12,
    "linear.knn3.err_k_ge_2d": 0.6,
    "linear.averaging.err_k_ge_2d": 0.55,
}


def test_linear_claims_pass_on_good_metrics_and_fail_one_by_one():
    config = FunctionClassesConfig()
    exp = FunctionClassesExperiment()
    claims = exp.claims(config, LINEAR_GOOD)
    assert [c.name for c in claims] == [
        "linear_near_least_squares",
        "linear_far_below_knn_averaging",
    ]
    assert all(c.passed for c in claims)
    # an averaging-like model fails both; a gap just above 0.1 fails only the first
    averaging_like = exp.claims(config, LINEAR_GOOD | {"linear.model.err_k_ge_2d": 0.55})
    assert not any(c.passed for c in averaging_like)
    gap = exp.claims(
        config,
        LINEAR_GOOD | {"linear.model.err_k_ge_2d": 0.11, "linear.averaging.err_k_ge_2d": 1.0},
    )
    assert [c.passed for c in gap] == [False, True]
    nan = exp.claims(config, LINEAR_GOOD | {"linear.model.err_k_ge_2d": math.nan})
    assert not any(c.passed for c in nan)


def test_other_classes_are_checked_against_their_best_baseline():
    config = FunctionClassesConfig(classes=("sparse_linear",))
    metrics = {
        "sparse_linear.model.err_k_ge_2d": 0.12,
        "sparse_linear.least_squares.err_k_ge_2d": 0.5,
        "sparse_linear.lasso.err_k_ge_2d": 0.1,
        "sparse_linear.knn3.err_k_ge_2d": 0.7,
        "sparse_linear.averaging.err_k_ge_2d": 0.6,
    }
    (claim,) = FunctionClassesExperiment().claims(config, metrics)
    assert claim.name == "sparse_linear_matches_best_baseline"
    assert claim.measured == pytest.approx(1.2) and claim.passed
    (worse,) = FunctionClassesExperiment().claims(
        config, metrics | {"sparse_linear.model.err_k_ge_2d": 0.13}
    )
    assert not worse.passed
    # a class whose metrics are missing (not run) fails, never passes vacuously
    (missing,) = FunctionClassesExperiment().claims(config, {})
    assert not missing.passed


def test_paper_preset_holds_garg_et_al_sizes_and_keeps_explicit_overrides():
    paper = resolve_config("function-classes", overrides=["preset=paper"])
    assert (paper.d, paper.n_points, paper.size) == (20, 41, "standard")
    assert paper.classes == ALL_CLASSES
    assert paper.train.steps == 500_000 and paper.train.optimizer.lr == 1e-4
    assert paper.curriculum.dims.start == 5 and paper.curriculum.points.end == 41
    again = resolve_config("function-classes", overrides=["preset=paper", "classes=[linear]"])
    assert again.classes == ("linear",) and again.d == 20
    assert FunctionClassesConfig.model_validate(paper.model_dump()) == paper


def test_shift_labels_are_distinct():
    labels = [shift_label(s) for s in FunctionClassesConfig().shifts]
    assert len(set(labels)) == len(labels)
    assert shift_label(ShiftConfig(kind="scale_x", factor=0.5)) == "scale_x_0.5"


def test_model_at_queries_equals_replacing_each_x_in_turn():
    """Position i of `_model_at_queries` is the model on the prompt with x_i := x_q[:, i]."""
    gen = torch.Generator().manual_seed(0)
    model = GPT(GPTConfig(d_in=3, max_points=6, size="tiny"), generator=gen, dtype=torch.float64)
    X = torch.randn(4, 6, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    x_q = torch.randn(4, 6, 3, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        got = _model_at_queries(model, X, y, x_q)
        for i in range(6):
            Xi = X.clone()
            Xi[:, i] = x_q[:, i]
            torch.testing.assert_close(got[:, i], model(Xi, y)[:, i], rtol=0, atol=1e-12)
        # the causal model never looks ahead: position i's prediction ignores x_j, y_j for j > i
        assert torch.allclose(model(X, y)[:, :3], model(X[:, :3], y[:, :3]), atol=1e-12)


def run(tmp_path, overrides=(), name="run"):
    config = resolve_config("function-classes", overrides=TINY + list(overrides))
    run_dir = prepare_run_dir("function-classes", config, tmp_path / name)
    return config, run_dir, run_experiment("function-classes", config, run_dir)


def test_tiny_run_writes_a_complete_folder_and_repeats_exactly(tmp_path):
    config, run_dir, result = run(tmp_path)
    assert result.status in ("passed", "failed")
    assert read_result(run_dir / "result.json") == result
    m, d, n = result.metrics, config.d, config.n_points
    for name in ("model", "least_squares", "knn3", "averaging"):
        assert len(m[f"linear.{name}.err"]) == n and all(
            math.isfinite(v) for v in m[f"linear.{name}.err"]
        )
    # noiseless linear: least squares is exact from k = d on; with no context every baseline
    # predicts 0
    assert max(m["linear.least_squares.err"][d:]) < 1e-8
    assert m["linear.least_squares.err"][0] == m["linear.averaging.err"][0]
    # one entry per shift, the unshifted test first
    labels = ["none"] + [shift_label(s) for s in config.shifts]
    for name in ("model", "least_squares", "knn3", "averaging"):
        for suffix in ("lt_d", "ge_d"):
            values = m[f"linear.{name}.shift_err_k_{suffix}"]
            assert len(values) == len(labels) and all(math.isfinite(v) for v in values)
    # orthogonal queries: from k = d on the query is 0 and so is its label; least squares says 0
    ortho = labels.index("orthogonal_query")
    assert m["linear.least_squares.shift_err_k_ge_d"][ortho] < 1e-12
    assert m["linear.least_squares.shift_err_k_ge_d"][0] < 1e-8
    assert [c.name for c in result.claims] == [
        "linear_near_least_squares",
        "linear_far_below_knn_averaging",
    ]
    assert (run_dir / "linear" / "checkpoint.safetensors").is_file()
    figures = {p.name for p in draw_figures(run_dir)}
    assert {"error_vs_points_linear.png", "shift_table.png", "training_curves.png"} <= figures
    _, _, again = run(tmp_path, name="again")
    assert again.metrics == result.metrics


def test_tiny_run_of_every_class_has_its_baselines(tmp_path):
    pytest.importorskip("sklearn")
    config, _, result = run(
        tmp_path,
        [
            "classes=[sparse_linear, noisy_linear, quadratic, relu_net, decision_tree]",
            "shifts=[]",
            "sparsity=1",
        ],
    )
    m = result.metrics
    assert math.isfinite(m["sparse_linear.lasso.err_k_ge_2d"])
    assert math.isfinite(m["noisy_linear.ridge.err_k_ge_2d"])
    assert math.isfinite(m["relu_net.relu_net.err_k_ge_2d"])
    assert math.isfinite(m["decision_tree.decision_tree.err_k_ge_2d"])
    assert math.isfinite(m["decision_tree.boosting.err_k_ge_2d"])
    assert len(result.claims) == 5 and all(
        c.name.endswith("_matches_best_baseline") for c in result.claims
    )


def test_memory_estimate_is_positive_and_grows_with_the_sizes():
    config = FunctionClassesConfig()
    base = EXPERIMENT.memory(config)
    assert base.total > 0 and all(v > 0 for v in base.parts.values())
    assert {"train.batch_size", "test_batch_size", "size"} <= set(base.fields)
    train = config.train.model_copy(update={"batch_size": 4 * config.train.batch_size})
    bigger_batch = EXPERIMENT.memory(config.model_copy(update={"train": train}))
    assert bigger_batch.parts["training batch"] >= 2 * base.parts["training batch"]
    for field, value in (("test_batch_size", 4 * config.test_batch_size), ("size", "standard")):
        grown = EXPERIMENT.memory(config.model_copy(update={field: value}))
        assert grown.total >= 2 * base.total, field


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("classes=[linear, linear]", "classes"),
        ("classes=[cubic]", "classes"),
        ("n_points=10", "n_points"),
        ("preset=gpu", "preset"),
        ("size=huge", "size"),
        ("baselines=[oracle]", "baselines"),
        ("shifts=[{kind: none}]", "shifts"),
        ("curriculum={dims: {start: 2, end: 9}, points: {start: 5, end: 11}}", "curriculum"),
        ("tolerances.least_squares_gap=0", "least_squares_gap"),
    ],
)
def test_bad_config_is_one_line_exit_2(assert_bad_config, override, field):
    assert_bad_config("function-classes", override, field)


@pytest.mark.slow
def test_default_run_passes_every_claim(tmp_path):
    config = resolve_config("function-classes", overrides=[])
    run_dir = prepare_run_dir("function-classes", config, tmp_path / "default")
    result = run_experiment("function-classes", config, run_dir)
    assert result.status == "passed", [c for c in result.claims if not c.passed]
