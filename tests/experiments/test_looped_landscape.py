"""`looped-landscape`: the sign boundary, the claims' logic, the default grid, a smoke run."""

from __future__ import annotations

import math

import pytest

from icgd.core.errors import InputError
from icgd.experiments.looped_landscape import EXPERIMENT, LoopedLandscapeConfig
from icgd.experiments.looped_landscape.measure import phase_grid, sign_boundary
from icgd.runs.runner import prepare_run_dir, resolve_config, run_experiment


def test_sign_boundary_interpolates_in_log_n():
    assert sign_boundary((10, 40), [1.0, -1.0]) == pytest.approx(20.0)  # geometric midpoint
    assert sign_boundary((10, 20, 40), [2.0, 1.0, 0.5]) != sign_boundary((10, 20), [1.0, -1.0])
    assert math.isnan(sign_boundary((10, 20, 40), [2.0, 1.0, 0.5]))
    assert sign_boundary((5, 10, 20), [0.3, 0.0, -0.2]) == pytest.approx(10.0)


def _metrics(**changes) -> dict:
    """Sweep metrics of two points: a minimum (c > 0) and a saddle (c < 0), all claims passing."""
    base = {
        "sweep_c": [0.05, -0.02],
        "sweep_c_se": [0.001, 0.001],
        "sweep_c_fd": [0.051, -0.021],
        "sweep_c_fd_se": [0.001, 0.001],
        "sweep_gap": [0.0004, -0.003],
        "sweep_gap_se": [0.0001, 0.0001],
        "sweep_skew": [0.001, 0.24],
        "sweep_start_skew": [0.03, 0.03],
        "limit_L": [2, 3],
        "limit_C": [-4.01, -100.0],
        "limit_C_se": [0.02, 1.0],
    }
    return base | changes


def test_claims_pass_and_each_fails_on_its_own():
    config = LoopedLandscapeConfig()
    claims = EXPERIMENT.claims(config, _metrics())
    assert [c.name for c in claims] == [
        "curvature_matches_finite_differences",
        "saddle_minimiser_beats_symmetric",
        "minimum_returns",
        "two_loop_limit",
    ]
    assert all(c.passed for c in claims)
    broken = {
        "sweep_c_fd": [0.06, -0.021],  # 7 SE apart
        "sweep_gap": [0.0004, -0.0002],  # the saddle's minimiser wins by 2 SE only
        "sweep_skew": [0.01, 0.24],  # a third of the start's share is left
        "limit_C": [-3.8, -100.0],  # 10 SE from −4
    }
    for key, value in broken.items():
        failed = [
            c.name for c in EXPERIMENT.claims(config, _metrics(**{key: value})) if not c.passed
        ]
        assert len(failed) == 1, (key, failed)


def test_claims_that_do_not_apply_are_left_out():
    """No saddle (c within 4 SE of 0 counts as neither) and no L = 2: two claims only."""
    metrics = _metrics(sweep_c=[0.05, -0.002], limit_L=[3, 4])
    names = [c.name for c in EXPERIMENT.claims(LoopedLandscapeConfig(), metrics)]
    assert names == ["curvature_matches_finite_differences", "minimum_returns"]


def test_the_default_grid_holds_both_signs_for_every_loop_count():
    config = LoopedLandscapeConfig(curvature_samples=2000, limit_samples=1000)
    grid = phase_grid(config)
    for L in config.loops:
        cs = [c for ell, c in zip(grid["grid_L"], grid["grid_c"], strict=True) if ell == L]
        assert min(cs) < 0 < max(cs), L
    swept = [n for n in LoopedLandscapeConfig().sweep_ns]
    assert swept[0] < 20 < 40 <= swept[-1]  # d = 5, L = 3 changes sign between n = 20 and 40


def test_bad_config_is_one_line():
    with pytest.raises(InputError, match="ns"):
        resolve_config("looped-landscape", overrides=["ns=[8,4]"])
    with pytest.raises(InputError, match="sweep_d"):
        resolve_config("looped-landscape", overrides=["sweep_d=1"])


def test_smoke_run_writes_the_sweep_and_its_minimisers(tmp_path):
    config = resolve_config("looped-landscape", overrides=list(EXPERIMENT.presets["smoke"]))
    run_dir = prepare_run_dir("looped-landscape", config, tmp_path / "run")
    result = run_experiment("looped-landscape", config, run_dir)
    m = result.metrics
    assert m["sweep_n"] == [4, 64]
    assert len(m["grid_c"]) == len(config.loops) * len(config.ns) * len(config.ds)
    # n = 4, d = 3, L = 3: a minimum; n = 64: a saddle whose minimiser is not symmetric
    assert m["sweep_c"][0] > 0 > m["sweep_c"][1]
    assert m["sweep_skew"][1] > 0.05 and m["sweep_gap"][1] < 0
    assert (run_dir / "arrays.safetensors").exists()
