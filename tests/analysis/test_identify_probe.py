"""`probe_layers`: on hand-built models the layer ↔ iteration map is the one built in."""

from __future__ import annotations

import json
import math

import pytest
import torch

from icgd.analysis.identify import (
    GradientDescent,
    calibrate,
    identify,
    probe_layers,
    ridge_probe,
    sime,
    sime_matrix,
)
from icgd.constructions import (
    lsa_from_newton_schulz,
    lsa_from_preconditioned_gd,
    newton_schulz_prompt,
)
from icgd.models import GPT
from icgd.tasks import LinearRegression, LinearRegressionConfig

F64 = torch.float64
D, N, L, ETA = 4, 20, 3, 0.3
DIAGONAL = tuple(range(L + 1))


def _task(d: int = D, n: int = N) -> LinearRegression:
    return LinearRegression(LinearRegressionConfig(d=d, n=n), dtype=F64)


def _gd_model(looped: bool = False):
    """L steps of GD with step η, one layer (or loop) per step."""
    eye = ETA * torch.eye(D, dtype=F64)
    if looped:
        return lsa_from_preconditioned_gd(eye, looped=True, n_loops=L)
    return lsa_from_preconditioned_gd(eye.expand(L, D, D))


@pytest.fixture(scope="module")
def gd_probes():
    return probe_layers(
        _gd_model(),
        _task(),
        algorithms=["gd", "iterative-newton"],
        parameters={"gd": {"eta": ETA}},
        n_prompts=2048,
    )


def test_gd_construction_maps_layer_l_to_step_l(gd_probes):
    assert gd_probes.layers == ("hook_z.0", "hook_z.1", "hook_z.2", "hook_z.3")
    assert gd_probes.best_steps["gd"] == DIAGONAL  # by SimE of the calibrated read-out
    assert gd_probes.decoded_steps["gd"] == DIAGONAL  # by the iterate probes' R²
    r2 = gd_probes.iterate_r2["gd"]
    for layer in range(1, L + 1):  # layer ℓ holds x_qᵀw_ℓ in its label entry: decoded exactly
        assert r2[layer, layer].item() > 1 - 1e-9
        assert torch.nan_to_num(r2[layer], nan=0.0).topk(2).values[1] < 1 - 1e-4
    sime_gd = gd_probes.sime["gd"]
    assert sime_gd.shape == (L + 1, 9) and (sime_gd.diagonal() > 0.99).all()
    # the model's output is the L-th iterate
    assert gd_probes.output_sime["gd"][L].item() == pytest.approx(1.0, abs=1e-12)


def test_native_read_out_gives_the_diagonal_with_sime_one():
    probes = probe_layers(
        _gd_model(),
        _task(),
        algorithms=["gd"],
        parameters={"gd": {"eta": ETA}},
        readout="native",
        n_prompts=1024,
    )
    assert not probes.calibrated and probes.best_steps["gd"] == DIAGONAL
    torch.testing.assert_close(
        probes.sime["gd"].diagonal(), torch.ones(L + 1, dtype=F64), rtol=0, atol=1e-12
    )


def test_without_calibration_the_probe_read_out_drifts_to_later_steps():
    """Why the iterates are calibrated: a y_q probe rescales a shrunk iterate (η = 0.3), whose
    errors then look like those of later iterates (documented in `probe`)."""
    probes = probe_layers(
        _gd_model(),
        _task(),
        algorithms=["gd"],
        parameters={"gd": {"eta": ETA}},
        calibrated=False,
        n_prompts=2048,
    )
    mapped = probes.best_steps["gd"]
    assert mapped[0] == 0 and all(mapped[layer] > layer for layer in range(1, L + 1))


def test_looped_gd_construction_maps_loop_t_to_step_t():
    probes = probe_layers(
        _gd_model(looped=True),
        _task(),
        algorithms=["gd"],
        parameters={"gd": {"eta": ETA}},
        n_prompts=2048,
    )
    assert probes.best_steps["gd"] == DIAGONAL and probes.decoded_steps["gd"] == DIAGONAL


def test_parameters_can_come_from_identify():
    """The pipeline: identify the step size, then probe with it."""
    model = _gd_model()
    found = identify(
        model,
        _task(),
        algorithms=[GradientDescent()],
        n_prompts=1024,
        n_bootstrap=0,
        ilwd_prompts=0,
    )
    assert found.best.steps == L and found.best.value("eta") == pytest.approx(ETA, rel=1e-10)
    probes = probe_layers(model, _task(), algorithms=["gd"], parameters=found, n_prompts=2048)
    assert probes.parameters["gd"]["eta"] == pytest.approx(ETA, rel=1e-10)
    assert probes.best_steps["gd"] == DIAGONAL


def test_newton_schulz_construction_maps_layer_to_newton_step():
    """Layer 2 + k of the construction holds w_k (two set-up layers first)."""
    K = 3
    probes = probe_layers(
        lsa_from_newton_schulz(D, K, 0.05),
        _task(),
        prompt=newton_schulz_prompt,
        algorithms=["iterative-newton"],
        max_steps=5,
        parameters={"iterative-newton": {"alpha": 0.05}},
        n_prompts=2048,
    )
    assert len(probes.layers) == K + 3
    for name in ("best_steps", "decoded_steps"):
        mapped = getattr(probes, name)["iterative-newton"]
        assert mapped[2:] == tuple(range(K + 1)), name


def test_probe_result_serialises(gd_probes):
    plain = gd_probes.to_dict()
    json.dumps(plain)  # NaN (constant iterates) became None
    assert plain["best_steps"]["gd"] == list(DIAGONAL) and plain["readout"] == "probe"
    arrays = gd_probes.arrays()
    assert arrays["sime.gd"].shape == (L + 1, 9) and arrays["target_r2"].shape == (L + 1,)


def test_gpt_layers_are_probed():
    model = GPT.example(dtype=F64)  # 2 blocks: hook_resid.0 … hook_resid.2
    for readout in ("probe", "native"):
        probes = probe_layers(model, _task(3, 5), readout=readout, max_steps=4, n_prompts=256)
        assert probes.layers == ("hook_resid.0", "hook_resid.1", "hook_resid.2")
        assert probes.sime["gd"].shape == (3, 5) and len(probes.best_steps["gd"]) == 3


def test_ridge_probe_and_calibration_are_least_squares():
    g = torch.Generator().manual_seed(0)
    H = torch.randn(200, 3, generator=g, dtype=F64)
    W = torch.randn(3, 2, generator=g, dtype=F64)
    T = H @ W + torch.tensor([1.0, -2.0], dtype=F64)  # exactly affine in H
    torch.testing.assert_close(ridge_probe(H, T, H[:7], 0.0), T[:7], rtol=0, atol=1e-10)
    pred = torch.randn(2, 200, generator=g, dtype=F64)
    target = 3 * pred[0] + 0.5
    torch.testing.assert_close(calibrate(pred, target, pred)[0], target, rtol=0, atol=1e-10)
    # SimE: scale-free in the errors, 1 for identical predictors
    y = torch.randn(200, generator=g, dtype=F64)
    assert sime(pred[0], pred[0], y) == pytest.approx(1.0)
    table = sime_matrix(torch.stack([y + 2 * (pred[0] - y), pred[1]]), pred[:1], y)
    assert table[0, 0].item() == pytest.approx(1.0)


def test_diverging_newton_iterates_are_masked_not_a_crash():
    """Newton with a shared α diverges where `αλ_max(Ŝ)² > 2`: at α = (1 + √(d/n))⁻⁴ that is
    3 of 2048 fitting prompts (none held out), past 10³ rms(y_q) from k = 5 on and ±inf by
    k = 12 (which crashed the calibration's lstsq). They are masked per k and counted; the map
    is unchanged."""
    alpha = 1.0 / (1.0 + (D / N) ** 0.5) ** 4
    probes = probe_layers(
        lsa_from_newton_schulz(D, 3, alpha),
        _task(),
        prompt=newton_schulz_prompt,
        algorithms=["iterative-newton"],
        max_steps=16,
        parameters={"iterative-newton": {"alpha": alpha}},
        n_prompts=2048,
    )
    masked = probes.masked["iterative-newton"]  # (K+1,): prompts masked, fitting + held-out
    assert masked.shape == (17,) and masked[:5].sum() == 0 and (masked[12:] == 3).all()
    assert masked.max() <= 0.01 * 2 * 2048  # few: those iterates are still compared
    assert torch.isfinite(probes.sime["iterative-newton"][2:]).all()
    assert probes.best_steps["iterative-newton"][2:] == (0, 1, 2, 3)
    json.dumps(probes.to_dict(), allow_nan=False)
    assert probes.arrays()["masked.iterative-newton"].shape == (17,)


def test_iterates_diverged_on_many_prompts_are_never_the_best_step():
    """At α = 0.4, `αλ_max² > 2` on 5% of prompts: those iterates get SimE = NaN (more than
    `MAX_DIVERGED` of the prompts masked) and no layer maps to them."""
    probes = probe_layers(
        _gd_model(),
        _task(),
        algorithms=["gd", "iterative-newton"],
        max_steps=16,
        parameters={"gd": {"eta": ETA}, "iterative-newton": {"alpha": 0.4}},
        n_prompts=1024,
    )
    table, masked = probes.sime["iterative-newton"], probes.masked["iterative-newton"]
    unusable = masked > 0.01 * 2 * 1024
    assert unusable[-1] and not unusable[0]
    assert torch.isnan(table[:, unusable]).all()
    assert torch.isnan(probes.iterate_r2["iterative-newton"][:, unusable]).all()
    assert not any(unusable[k] for k in probes.best_steps["iterative-newton"] if k >= 0)
    assert probes.best_steps["gd"] == DIAGONAL and probes.masked["gd"].sum() == 0


def test_masked_sime_calibration_and_probe_are_those_of_the_kept_prompts():
    g = torch.Generator().manual_seed(1)
    y = torch.randn(300, generator=g, dtype=F64)
    rows = y + torch.randn(2, 300, generator=g, dtype=F64)
    cols = y + torch.randn(3, 300, generator=g, dtype=F64)
    keep = torch.ones(3, 300, dtype=torch.bool)
    keep[1, :4] = False
    cols[1, :4] = torch.tensor([math.inf, -math.inf, math.nan, 1e300], dtype=F64)
    table = sime_matrix(rows, cols, y, keep)
    torch.testing.assert_close(table[:, 1], sime_matrix(rows[:, 4:], cols[1:2, 4:], y[4:])[:, 0])
    assert torch.equal(table[:, [0, 2]], sime_matrix(rows, cols[[0, 2]], y))  # bit for bit
    fitted = calibrate(cols, y, cols, keep)
    torch.testing.assert_close(fitted[1, 4:], calibrate(cols[1:2, 4:], y[4:], cols[1:2, 4:])[0])
    H = torch.randn(300, 3, generator=g, dtype=F64)
    T = torch.stack([y, cols[1]], dim=1)  # (B, 2): column 1 masked on its first 4 prompts
    pred = ridge_probe(H, T, H[:5], 1e-6, keep=torch.stack([keep[0], keep[1]], dim=1))
    torch.testing.assert_close(pred[:, 1], ridge_probe(H[4:], T[4:, 1:], H[:5], 1e-6)[:, 0])
    assert torch.equal(pred[:, 0], ridge_probe(H, T[:, :1], H[:5], 1e-6)[:, 0])
