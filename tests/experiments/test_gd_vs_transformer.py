"""`gd-vs-transformer`: claims on synthetic metrics, the gauge alignment used by the interpolation,
tiny runs (folder, figures, determinism), bad input at the CLI, and the default run (slow)."""

from __future__ import annotations

import math

import pytest
import torch

from icgd.constructions import lsa_from_gd_step
from icgd.core.results import read_result
from icgd.experiments.gd_vs_transformer import EXPERIMENT, GDvsTransformer, GDvsTransformerConfig
from icgd.experiments.gd_vs_transformer.measurements import (
    gd_step_aligned,
    off_pattern_ratio,
    with_weights,
)
from icgd.runs.figures import draw_figures
from icgd.runs.runner import prepare_run_dir, resolve_config, run_experiment

TINY = list(EXPERIMENT.presets["smoke"])

IDEAL = {
    "one_layer_vs_gd_model_cosine": 0.9999,
    "loss_one_layer": 1.642,
    "loss_gd": 1.641,
    "interpolation_max_ratio": 1.001,
    "loss_deep": 0.45,
    "loss_gd_steps": 1.05,
    "deep_vs_gdpp_model_cosine": 0.98,
    "loss_gdpp": 0.43,
    "ood_max_rel_one_layer": 0.01,
}
BROKEN = {
    "one_layer_vs_gd_model_cosine": 0.95,
    "loss_one_layer": 1.8,
    "interpolation_max_ratio": 1.3,
    "loss_gd_steps": 0.4,  # deep model no better than plain GD (and GD++ is not hit either way)
    "deep_vs_gdpp_model_cosine": 0.8,
    "loss_gdpp": 0.3,
    "ood_max_rel_one_layer": 0.3,
}


def test_claims_pass_on_ideal_metrics_and_fail_one_by_one():
    config = GDvsTransformerConfig()
    claims = GDvsTransformer().claims(config, IDEAL)
    assert [c.name for c in claims] == [
        "one_layer_is_gd",
        "one_layer_loss",
        "interpolation_keeps_loss",
        "deep_beats_gd",
        "deep_tracks_gdpp_cosine",
        "deep_tracks_gdpp_loss",
        "ood_degrades_like_gd",
    ]
    assert all(c.passed for c in claims), [c for c in claims if not c.passed]
    for key, value in BROKEN.items():
        failed = [
            c.name for c in GDvsTransformer().claims(config, IDEAL | {key: value}) if not c.passed
        ]
        assert len(failed) == 1, (key, failed)


@pytest.mark.parametrize("c", [3.0, -0.25])
def test_alignment_recovers_a_rescaled_construction(c):
    """A model equal to the construction up to (cP, Q/c) is aligned onto itself: flat path."""
    d, eta = 4, 0.8
    gd = lsa_from_gd_step(d, eta)
    P, Q = (m.detach() for m in gd.layer_matrices())
    rescaled = with_weights(gd, c * P, Q / c)
    P_a, Q_a = gd_step_aligned(rescaled, eta)
    torch.testing.assert_close(P_a, c * P, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(Q_a, Q / c, rtol=1e-12, atol=1e-12)
    # the aligned construction computes the same function as the plain one
    Z = torch.randn(5, d + 1, 8, dtype=torch.float64)
    Z[:, d, -1] = 0
    with torch.no_grad():
        torch.testing.assert_close(
            with_weights(gd, P_a, Q_a).predict(Z), gd.predict(Z), rtol=1e-12, atol=1e-12
        )


def run(tmp_path, overrides=(), name="run"):
    config = resolve_config("gd-vs-transformer", overrides=TINY + list(overrides))
    run_dir = prepare_run_dir("gd-vs-transformer", config, tmp_path / name)
    return config, run_dir, run_experiment("gd-vs-transformer", config, run_dir)


def test_tiny_run_writes_a_complete_folder_and_repeats_exactly(tmp_path):
    config, run_dir, result = run(tmp_path)
    assert result.status in ("passed", "failed")
    assert read_result(run_dir / "result.json") == result
    m = result.metrics
    for key in (
        "loss_one_layer",
        "loss_gd",
        "eta_gd",
        "one_layer_vs_gd_model_cosine",
        "interpolation_max_ratio",
        "loss_deep",
        "loss_gd_steps",
        "loss_gdpp",
        "deep_vs_gdpp_model_cosine",
        "ood_max_rel_one_layer",
    ):
        assert math.isfinite(m[key]), key
    assert len(m["interpolation_loss"]) == 3 and len(m["gdpp_etas"]) == 2
    assert len(m["ood_loss_gd"]) == 3
    # GD++ is fitted with GD inside its family (γ = 0), on other prompts: it cannot be far worse
    assert m["loss_gdpp"] <= 1.2 * m["loss_gd_steps"]
    assert len(result.claims) == 7
    for sub in ("one_layer", "deep"):
        assert (run_dir / sub / "checkpoint.safetensors").is_file(), sub
    figures = {p.name for p in draw_figures(run_dir)}
    assert {
        "training_loss.png",
        "interpolation.png",
        "ood_sweep.png",
        "one_layer_P_Q.png",
        "deep_P_Q.png",
    } <= figures
    _, _, again = run(tmp_path, name="again")
    assert again.metrics == result.metrics


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("depth=1", "depth"),
        ("input_distribution=laplace", "input_distribution"),
        ("ood_scales=[]", "ood_scales"),
        ("interpolation_points=1", "interpolation_points"),
    ],
)
def test_bad_config_is_one_line_exit_2(assert_bad_config, override, field):
    assert_bad_config("gd-vs-transformer", override, field)


@pytest.mark.slow
def test_default_run_passes_every_claim(tmp_path):
    config = resolve_config("gd-vs-transformer", overrides=[])
    run_dir = prepare_run_dir("gd-vs-transformer", config, tmp_path / "default")
    result = run_experiment("gd-vs-transformer", config, run_dir)
    assert result.status == "passed", [c for c in result.claims if not c.passed]


def test_off_pattern_ratio_is_zero_on_the_gd_plus_plus_construction():
    from icgd.constructions import lsa_from_gd_plus_plus_steps

    model = lsa_from_gd_plus_plus_steps(3, [0.5, 2.0], [0.3, 0.0])
    P, Q = (m.detach()[:, 0] for m in model.layer_matrices())
    assert off_pattern_ratio(P, Q) == [0.0, 0.0]
    P[1, 0, 3] = 1.0  # an x → y leak in layer 2: P[0, d]
    ratios = off_pattern_ratio(P, Q)
    assert ratios[0] == 0.0 and 0 < ratios[1] < 1


def test_memory_estimate_is_positive_and_grows_with_the_sizes():
    config = GDvsTransformerConfig()
    base = EXPERIMENT.memory(config)
    assert base.total > 0 and {"fit_batch_size", "test_batch_size"} <= set(base.fields)
    # the line search over the fit prompts dominates at the default sizes
    for update in ({"fit_batch_size": 4 * config.fit_batch_size}, {"n": 4 * config.n}):
        grown = EXPERIMENT.memory(config.model_copy(update=update))
        assert grown.total >= 2 * base.total, (update, grown.total, base.total)
    for update in ({"test_batch_size": 4 * config.test_batch_size}, {"depth": 4}):
        assert EXPERIMENT.memory(config.model_copy(update=update)).total > base.total, update
