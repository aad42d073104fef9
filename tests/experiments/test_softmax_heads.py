"""`softmax-heads`: claims on synthetic metrics; the debiased-GD mechanism of a hand-built head
pair (error O(ω³)); the R² helper; the structure metrics of exact He-form weights; a tiny run and
its figures; bad configs at the CLI; the default run (slow)."""

from __future__ import annotations

import math

import pytest
import torch

from icgd.core.prompts import build_prompt
from icgd.core.results import read_result
from icgd.experiments.softmax_heads import (
    EXPERIMENT,
    SoftmaxHeads,
    SoftmaxHeadsConfig,
    head_metrics,
    one_step_predictors,
    scalar_fit_r2,
)
from icgd.models import SoftmaxAttention
from icgd.models.softmax_attention import SoftmaxAttentionConfig
from icgd.runs.figures import draw_figures
from icgd.runs.runner import prepare_run_dir, resolve_config, run_experiment

NAMES = [
    "kq_homogeneous",
    "kq_y_small",
    "ov_last_entry",
    "ov_last_entry_per_head",
    "ov_zero_sum",
    "debiased_beats_plain",
    "debiased_explains",
    "softmax_length_generalises",
    "fixed_scale_linear_does_not",
    "first_order_step_optimal",
    "mse_at_debiased_floor",
]
NEW_CLAIMS = {  # claim → (measured key, expected key)
    "first_order_step_optimal": ("step_first_order", "step_theory"),
    "mse_at_debiased_floor": ("test_mse_softmax_n", "mse_floor_mc"),
}
IDEAL = {
    "kq_dist_max": 0.05,
    "y_mass_max": 0.05,
    "ov_sum_x_share": 0.02,
    "ov_x_share_max": 0.05,
    "zero_sum_ratio": 0.01,
    "r2_gain": 0.01,
    "r2_debiased": 0.95,
    "softmax_ratio_2n": 0.6,
    "lsa_fixed_ratio_2n": 2.8,
    "step_first_order": 0.80,
    "step_theory": 0.80,
    "test_mse_softmax_n": 1.22,
    "mse_floor_mc": 1.21,
}
BROKEN = {
    "kq_dist_max": 0.5,
    "y_mass_max": 0.4,
    "ov_sum_x_share": 0.3,
    "ov_x_share_max": 0.3,
    "zero_sum_ratio": 0.5,
    "r2_gain": -0.01,
    "r2_debiased": 0.5,
    "softmax_ratio_2n": 1.1,
    "lsa_fixed_ratio_2n": 0.7,
    "step_first_order": 0.88,
    "test_mse_softmax_n": 1.331,
}


def test_claims_pass_on_ideal_metrics_and_fail_one_by_one():
    config = SoftmaxHeadsConfig()
    claims = SoftmaxHeads().claims(config, IDEAL)
    assert [c.name for c in claims] == NAMES
    assert all(c.passed for c in claims)
    for key, value in BROKEN.items():
        failed = [
            c.name for c in SoftmaxHeads().claims(config, IDEAL | {key: value}) if not c.passed
        ]
        assert len(failed) == 1, (key, failed)


@pytest.mark.parametrize("factor", [0.9, 1.1])
@pytest.mark.parametrize("claim", sorted(NEW_CLAIMS))
def test_new_claims_fail_alone_when_10_percent_off(claim, factor):
    measured, expected = NEW_CLAIMS[claim]
    config = SoftmaxHeadsConfig()
    exact = IDEAL | {measured: IDEAL[expected]}
    assert all(c.passed for c in SoftmaxHeads().claims(config, exact))
    off = exact | {measured: factor * IDEAL[expected]}
    failed = [c.name for c in SoftmaxHeads().claims(config, off) if not c.passed]
    assert failed == [claim]


def _pair(d: int, mu: float, omega: float) -> SoftmaxAttention:
    """Heads (μ, ω), (−μ, −ω): KQ = ±ω [[I, 0], [0, 0]], o = ±μ e_{d+1}."""
    model = SoftmaxAttention(SoftmaxAttentionConfig(d=d, n_heads=2, kind="he"), dtype=torch.float64)
    with torch.no_grad():
        model.KQ.zero_()
        model.o.zero_()
        for h, sign in enumerate((1.0, -1.0)):
            model.KQ[h, :d, :d] = sign * omega * torch.eye(d, dtype=torch.float64)
            model.o[h, d] = sign * mu
    return model


def test_head_pair_is_debiased_gd_with_cubic_error():
    d, n, mu = 4, 16, 1.3
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(512, n, d, generator=gen, dtype=torch.float64)
    y = X @ torch.randn(d, dtype=torch.float64) + 0.1 * torch.randn(512, n, generator=gen)
    x_q = torch.randn(512, d, generator=gen, dtype=torch.float64)
    Z = build_prompt(X, y, x_q)
    deb = one_step_predictors(X, y, x_q)["debiased"]

    def rel_error(omega: float) -> float:
        with torch.no_grad():
            y_hat = _pair(d, mu, omega).predict(Z)
        target = (2 * mu * omega / n) * n * deb  # (2μω/n) Σ_ℓ y_ℓ (x_ℓ − x̄)ᵀ x_q
        return float((y_hat - target).norm() / target.norm())

    e1, e2 = rel_error(0.02), rel_error(0.01)
    assert e1 < 1e-2
    # relative error O(ω²): halving ω divides it by 4
    assert 3.6 < e1 / e2 < 4.4, (e1, e2)
    # the plain predictor is not what the pair computes: its x̄ term is O(ω), not O(ω³)
    plain = one_step_predictors(X, y, x_q)["plain"]
    with torch.no_grad():
        y_hat = _pair(d, mu, 0.01).predict(Z)
    rel_plain = float((y_hat - 2 * mu * 0.01 * plain).norm() / (2 * mu * 0.01 * plain).norm())
    assert rel_plain > 10 * e2


def test_one_step_predictors_match_explicit_sums():
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(3, 7, 2, generator=gen, dtype=torch.float64)
    y = torch.randn(3, 7, generator=gen, dtype=torch.float64)
    x_q = torch.randn(3, 2, generator=gen, dtype=torch.float64)
    p = one_step_predictors(X, y, x_q)
    for b in range(3):
        xbar = X[b].mean(0)
        plain = sum(y[b, i] * X[b, i] @ x_q[b] for i in range(7)) / 7
        deb = sum(y[b, i] * (X[b, i] - xbar) @ x_q[b] for i in range(7)) / 7
        assert float(p["plain"][b]) == pytest.approx(float(plain), abs=1e-12)
        assert float(p["debiased"][b]) == pytest.approx(float(deb), abs=1e-12)


def test_scalar_fit_r2_is_exact():
    gen = torch.Generator().manual_seed(2)
    g = torch.randn(1000, generator=gen, dtype=torch.float64)
    c, r2 = scalar_fit_r2(-2.5 * g, g)
    assert c == pytest.approx(-2.5, rel=1e-12) and r2 == pytest.approx(1.0, abs=1e-12)
    noise = torch.randn(1000, generator=gen, dtype=torch.float64)
    noise = noise - (noise @ g) / (g @ g) * g  # orthogonal to g: c is unchanged
    y = 2.0 * g + noise
    c, r2 = scalar_fit_r2(y, g)
    expected = 1 - float(noise.square().sum() / (y - y.mean()).square().sum())
    assert c == pytest.approx(2.0, rel=1e-12) and r2 == pytest.approx(expected, rel=1e-12)


def test_head_metrics_of_exact_he_weights():
    d = 3
    KQ = torch.zeros(4, d + 1, d + 1, dtype=torch.float64)
    o = torch.zeros(4, d + 1, dtype=torch.float64)
    for h, (w, mu) in enumerate([(0.3, -0.7), (-0.3, 0.7), (0.2, 0.5), (-0.2, -0.5)]):
        KQ[h, :d, :d] = w * torch.eye(d)
        o[h, d] = mu
    m = head_metrics(KQ, o)
    assert m["kq_dist_max"] < 1e-12 and m["y_mass_max"] == 0.0
    assert m["ov_x_share_max"] == 0.0 and m["ov_sum_x_share"] == 0.0
    assert m["zero_sum_ratio"] < 1e-12
    assert m["omega"] == pytest.approx([0.3, -0.3, 0.2, -0.2])
    assert m["step_first_order"] == pytest.approx(-0.21 - 0.21 + 0.1 + 0.1)
    o[0, :d] = 1.0
    o[1, :d] = -1.0  # cancelling x-entries: per-head share large, head-sum zero
    m = head_metrics(KQ, o)
    assert m["ov_x_share_max"] > 0.9 and m["ov_sum_x_share"] == 0.0


TINY = list(EXPERIMENT.presets["smoke"])


def test_tiny_run_writes_a_complete_folder(tmp_path):
    config = resolve_config("softmax-heads", overrides=TINY)
    run_dir = prepare_run_dir("softmax-heads", config, tmp_path / "run")
    result = run_experiment("softmax-heads", config, run_dir)
    assert result.status in ("passed", "failed")
    assert read_result(run_dir / "result.json") == result
    m = result.metrics
    assert m["test_lengths"] == [4, 8, 16, 32]
    for key in ("test_mse_softmax", "test_mse_lsa", "test_mse_lsa_fixed_scale"):
        assert len(m[key]) == 4 and all(math.isfinite(v) for v in m[key]), key
    # the fixed-scale variant is the prompt-normalised LSA at the training length
    assert m["test_mse_lsa"][1] == pytest.approx(m["test_mse_lsa_fixed_scale"][1], rel=1e-12)
    assert len(m["kq_dist"]) == 4 and [c.name for c in result.claims] == NAMES
    # the pipeline's debiased predictor is the one of the theory: MC floor vs exact, within 4 SE
    assert m["step_theory"] == pytest.approx(8 * 5 / (8 * 5 + 5 * (5 + 0.01)), rel=1e-12)
    assert abs(m["mse_floor_mc"] - m["mse_floor_theory"]) <= 4 * m["mse_floor_mc_se"]
    assert m["test_mse_softmax_n"] == m["test_mse_softmax"][1]
    for sub in ("softmax", "lsa"):
        assert (run_dir / sub / "checkpoint.safetensors").is_file(), sub
    figures = {p.name for p in draw_figures(run_dir)}
    assert {
        "training_loss.png",
        "length_generalisation.png",
        "kq_heatmaps.png",
        "ov_heatmap.png",
    } <= figures


@pytest.mark.parametrize(
    ("override", "field"),
    [("n_heads=1", "n_heads"), ("test_lengths=[10,20]", "test_lengths"), ("d=0", "d")],
)
def test_bad_config_is_one_line_exit_2(assert_bad_config, override, field):
    assert_bad_config("softmax-heads", override, field)


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="measured: seed 0 lands in a 3 + 1 head solution (not ± pairs), failing ov_zero_sum "
    "and ov_last_entry_per_head; seeds 1-3 pass every claim (module docstring)",
)
def test_default_run_passes_every_claim(tmp_path):
    config = resolve_config("softmax-heads", overrides=[])
    run_dir = prepare_run_dir("softmax-heads", config, tmp_path / "default")
    result = run_experiment("softmax-heads", config, run_dir)
    assert result.status == "passed", [c for c in result.claims if not c.passed]


def test_memory_estimate_is_positive_and_grows_with_the_sizes():
    config = SoftmaxHeadsConfig()
    base = EXPERIMENT.memory(config)
    assert base.total > 0 and {"n", "test_batch_size", "train.batch_size"} <= set(base.fields)
    train = config.train.model_copy(update={"batch_size": 64 * config.train.batch_size})
    for update in ({"n": 4 * config.n}, {"n_heads": 4 * config.n_heads}, {"train": train}):
        grown = EXPERIMENT.memory(config.model_copy(update=update))
        assert grown.total >= 2 * base.total, (update, grown.total, base.total)
    bigger_test = EXPERIMENT.memory(config.model_copy(update={"test_batch_size": 1 << 20}))
    assert bigger_test.total > base.total
