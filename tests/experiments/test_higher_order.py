"""`higher-order`: the layer maps and fits, the claims on synthetic metrics (each failing on its
own), the paper preset, the smoke run (folder, figures, `icgd identify` on it, determinism), bad
input at the CLI, and the default run (slow)."""

from __future__ import annotations

import math

import pytest
import torch

from icgd.core.results import read_result
from icgd.experiments.api import task_for
from icgd.experiments.higher_order import (
    EXPERIMENT,
    SMOKE,
    HigherOrderConfig,
    layer_fits,
    line_fit,
    matched_steps,
)
from icgd.runs.figures import draw_figures
from icgd.runs.runner import prepare_run_dir, resolve_config, run_experiment

CLAIMS = [
    "model_near_least_squares",
    "newton_steps_grow",
    "newton_steps_linear",
    "gd_steps_outgrow_newton",
]

# A Fu-like model of 6 layers: layer 1 reads y_q badly (left out of the fits); from layer 2 on,
# Newton grows by 2 a layer and GD doubles a layer.
GOOD = {
    "model.err_query": 0.05,
    "least_squares.err_query": 1e-12,
    "probe_r2": [0.0, 0.3, 0.6, 0.8, 0.9, 0.95, 0.97],
    "newton.matched_steps": [0.0, 0.0, 1.0, 3.0, 5.0, 7.0, 9.0],
    "gd.matched_steps": [0.0, 1.0, 2.0, 5.0, 11.0, 23.0, 47.0],
}


def claims(metrics: dict, **config) -> dict[str, bool]:
    found = EXPERIMENT.claims(HigherOrderConfig(**config), metrics)
    return {c.name: c.passed for c in found}


def test_matched_steps_take_the_fewest_steps_among_ties():
    sime = torch.tensor(
        [
            [0.2, 0.9, 0.5, 0.1],  # a clear best at k = 1
            [0.1, 0.5, 0.8, 0.8 + 1e-13],  # converged: k = 2 and 3 tie up to rounding
            [math.nan, math.nan, math.nan, math.nan],  # nothing to compare: k = 0
            [math.nan, 0.3, 0.7, 0.6],  # NaN counts as −∞
        ],
        dtype=torch.float64,
    )
    assert matched_steps(sime, 1e-9) == [1, 2, 0, 2]
    assert matched_steps(sime, 0.0) == [1, 3, 0, 2]  # no tolerance: the plain argmax
    assert matched_steps(sime, 0.35) == [1, 1, 0, 2]  # a wide tolerance: earlier, worse k


def test_line_fit_is_least_squares():
    slope, intercept, r2 = line_fit([1, 2, 3, 4], [3.0, 5.0, 7.0, 9.0])
    assert (slope, intercept, r2) == pytest.approx((2.0, 1.0, 1.0))
    slope, _, r2 = line_fit([1, 2, 3], [1.0, 3.0, 2.0])
    assert slope == pytest.approx(0.5) and r2 == pytest.approx(0.25)
    assert math.isnan(line_fit([1, 2, 3], [4.0, 4.0, 4.0])[2])  # constant: R² undefined
    assert all(math.isnan(v) for v in line_fit([2, 2], [1.0, 3.0]))


def test_layer_fits_use_the_well_read_layers_only():
    fits = layer_fits(
        GOOD["probe_r2"], GOOD["newton.matched_steps"], GOOD["gd.matched_steps"], 0.5, gd_cap=47
    )
    assert fits["fit_layers"] == 5 and fits["first_fit_layer"] == 2
    assert fits["newton.slope"] == pytest.approx(2.0) and fits["newton.fit_r2"] == pytest.approx(1)
    assert fits["newton.intercept"] == pytest.approx(-3.0)
    assert fits["gd.log2_slope"] == pytest.approx(1.0, abs=0.02)  # (k + 1) doubles a layer
    ratios = [(g + 1) / (n + 1) for g, n in ((2, 1), (5, 3), (11, 5), (23, 7), (47, 9))]
    expected = line_fit([2, 3, 4, 5, 6], [math.log2(r) for r in ratios])[0]
    assert fits["ratio.log2_slope"] == pytest.approx(expected)
    assert fits["gd.capped"] == 1  # the last layer sits at the cap
    # fewer than three well-read layers: no fit; a missing map: no fit
    few = layer_fits([0.0, 0.9, 0.9, 0.1], [0, 1, 2, 3], [0, 1, 2, 3], 0.5)
    assert few["fit_layers"] == 2 and math.isnan(few["newton.slope"])
    assert math.isnan(layer_fits(GOOD["probe_r2"], None, [0] * 7, 0.5)["newton.slope"])
    # a NaN R² (None in result.json) is never a fitted layer
    assert layer_fits([None, None, 0.9, 0.9, 0.9], [0] * 5, [0] * 5, 0.5)["fit_layers"] == 3


def test_claims_pass_on_a_fu_like_model_and_fail_one_at_a_time():
    assert list(claims(GOOD)) == CLAIMS and all(claims(GOOD).values())

    def only_failing(metrics: dict) -> list[str]:
        return [name for name, ok in claims(metrics).items() if not ok]

    # the model did not learn the task
    assert only_failing(GOOD | {"model.err_query": 0.2}) == ["model_near_least_squares"]
    # Newton's map flat-ish: slope 0.4 < 0.5 (GD still outgrows it, the fit is still a line)
    flat = GOOD | {"newton.matched_steps": [0, 0, 1.0, 1.4, 1.8, 2.2, 2.6]}
    assert only_failing(flat) == ["newton_steps_grow"]
    # Newton grows, but not along a line: R² of the line < 0.8
    jumpy = GOOD | {"newton.matched_steps": [0, 0, 1.0, 9.0, 2.0, 10.0, 7.0]}
    assert only_failing(jumpy) == ["newton_steps_linear"]
    # GD grows like Newton (a constant ratio): the ratio's log-slope is 0
    like_newton = GOOD | {"gd.matched_steps": [0, 0, 3.0, 7.0, 11.0, 15.0, 19.0]}
    assert only_failing(like_newton) == ["gd_steps_outgrow_newton"]
    # too few well-read layers: every fitted claim fails, never passes vacuously
    unread = GOOD | {"probe_r2": [0.0, 0.1, 0.2, 0.3, 0.4, 0.9, 0.9]}
    assert only_failing(unread) == CLAIMS[1:]
    assert not any(claims({}).values())
    # the threshold of the fitted layers is a tolerance: at 0.85 only layers 4-6 are fitted
    assert claims(GOOD, tolerances={"probe_r2": 0.85})["newton_steps_linear"]


def test_paper_preset_holds_fu_et_al_sizes_and_keeps_explicit_overrides():
    paper = resolve_config("higher-order", overrides=["preset=paper"])
    assert (paper.d, paper.n_points, paper.n_embd, paper.n_layer, paper.n_head) == (
        20,
        41,
        256,
        12,
        8,
    )
    assert paper.train.steps == 500_000 and paper.train.optimizer.lr == 1e-4
    assert paper.train.batch_size == 64
    assert paper.curriculum.dims.start == 5 and paper.curriculum.points.end == 41
    assert (paper.newton_steps, paper.gd_steps) == (23, 4096)
    again = resolve_config("higher-order", overrides=["preset=paper", "n_layer=8"])
    assert again.n_layer == 8 and again.d == 20
    assert HigherOrderConfig.model_validate(paper.model_dump()) == paper
    # GD's default step is half the inverse Marchenko–Pastur edge of Ŝ at (d, n − 1)
    assert paper.eta == pytest.approx(0.5 / (1 + math.sqrt(20 / 40)) ** 2)


def run(tmp_path, overrides=(), name="run"):
    config = resolve_config("higher-order", overrides=list(SMOKE) + list(overrides))
    run_dir = prepare_run_dir("higher-order", config, tmp_path / name)
    return config, run_dir, run_experiment("higher-order", config, run_dir)


def test_smoke_run_writes_a_complete_folder_and_repeats_exactly(tmp_path):
    config, run_dir, result = run(tmp_path)
    assert result.status in ("passed", "failed")
    assert read_result(run_dir / "result.json") == result
    assert [c.name for c in result.claims] == CLAIMS
    m, L = result.metrics, config.n_layer
    assert len(m["probe_r2"]) == L + 1
    for key in ("newton", "gd"):
        K = config.newton_steps if key == "newton" else config.gd_steps
        for what in ("best_steps", "matched_steps", "decoded_steps", "sime_best"):
            assert len(m[f"{key}.{what}"]) == L + 1, (key, what)
        assert all(0 <= k <= K for k in m[f"{key}.matched_steps"])
    assert len(m["model.err"]) == config.n_points and m["least_squares.err_query"] < 1e-8
    assert m["identify.best_r2"] is not None and "identify.gd.rank" in m
    assert m["gd.eta"] == pytest.approx(config.eta)
    assert (run_dir / "checkpoint.safetensors").is_file()  # in the run folder: icgd identify
    figures = {p.name for p in draw_figures(run_dir)}
    assert {
        "layer_map.png",
        "sime_newton.png",
        "sime_gd.png",
        "error_vs_points.png",
        "training_curve.png",
    } <= figures
    _, _, again = run(tmp_path, name="again")
    assert again.metrics == result.metrics


def test_task_is_the_trained_one():
    config = resolve_config("higher-order", overrides=list(SMOKE))
    task = task_for(EXPERIMENT, config)
    assert task.layout == "next-point" and task.d == config.d
    assert task.sample(3, torch.Generator().manual_seed(0)).X.shape == (3, config.n_points, 2)


def test_memory_estimate_grows_with_the_sizes():
    config = HigherOrderConfig()
    base = EXPERIMENT.memory(config)
    assert base.total > 0 and all(v > 0 for v in base.parts.values())
    for field, value in (("probe_prompts", 8 * config.probe_prompts), ("gd_steps", 8192)):
        grown = EXPERIMENT.memory(config.model_copy(update={field: value}))
        assert grown.parts["probes"] >= 2 * base.parts["probes"], field
    paper = EXPERIMENT.memory(resolve_config("higher-order", overrides=["preset=paper"]))
    assert paper.total > 4 * base.total


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("n_points=2", "n_points"),
        ("n_embd=62", "n_embd"),
        ("preset=gpu", "preset"),
        ("identify_algorithms=[oracle]", "identify_algorithms"),
        ("curriculum={dims: {start: 2, end: 9}, points: {start: 5, end: 11}}", "curriculum"),
        ("gd_eta=0", "gd_eta"),
        ("tolerances.probe_r2=1.5", "probe_r2"),
        ("newton_steps=0", "newton_steps"),
    ],
)
def test_bad_config_is_one_line_exit_2(assert_bad_config, override, field):
    assert_bad_config("higher-order", override, field)


@pytest.mark.slow
def test_default_run_writes_every_claim(tmp_path):
    """The default run is a measurement: it writes its four claims, whatever their verdict
    (docs/higher-order.md reports it)."""
    config = resolve_config("higher-order", overrides=[])
    run_dir = prepare_run_dir("higher-order", config, tmp_path / "default")
    result = run_experiment("higher-order", config, run_dir)
    assert result.status in ("passed", "failed") and [c.name for c in result.claims] == CLAIMS
