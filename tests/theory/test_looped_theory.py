"""Looped optimum a*(L, n, d): closed forms at L = 1, monotonicity in L, SEs, true minimum."""

import math

import pytest
import torch

from icgd.theory.looped import looped_loss, optimal_loop_scale
from icgd.theory.wishart import WishartMoments, whitened_wishart_moments

N, D, S = 20, 5, 50_000


@pytest.fixture(scope="module")
def moments():
    return whitened_wishart_moments(N, D, 8, n_samples=S, seed=3)


def test_one_step_closed_form(moments):
    opt = optimal_loop_scale(1, N, D, moments=moments)
    m1, m2 = moments.moments[1].item(), moments.moments[2].item()
    # the MC optimum is m̂_1/m̂_2 exactly, and the loss there d − m̂_1²/m̂_2
    assert math.isclose(opt.a, m1 / m2, rel_tol=1e-12)
    assert math.isclose(opt.loss, D - m1**2 / m2, rel_tol=1e-10)
    # and the exact optimum is n/(n + d + 1) with loss d(d + 1)/(n + d + 1)
    a_exact, loss_exact = N / (N + D + 1), D * (D + 1) / (N + D + 1)
    assert abs(opt.a - a_exact) < 4 * opt.a_se, f"a* {opt.a} vs {a_exact}, SE {opt.a_se:.3g}"
    assert abs(opt.loss - loss_exact) < 4 * opt.loss_se, (
        f"loss {opt.loss} vs {loss_exact}, SE {opt.loss_se:.3g}"
    )


def test_loss_at_zero_is_d(moments):
    for L in (1, 2, 4):
        loss, se = looped_loss(0.0, L, N, D, moments=moments)
        assert loss == D and se == 0.0


def test_optimum_below_one_decreasing_in_L_and_true_minimum(moments):
    opts = [optimal_loop_scale(L, N, D, moments=moments) for L in (1, 2, 3, 4)]
    for opt in opts:
        assert opt.a + 4 * opt.a_se < 1.0, f"a*({opt.L}) = {opt.a} ± {opt.a_se:.3g}"
        for a in (opt.a * 0.98, opt.a * 1.02):
            assert looped_loss(a, opt.L, N, D, moments=moments)[0] > opt.loss
        assert math.isclose(looped_loss(opt.a, opt.L, N, D, moments=moments)[0], opt.loss)
    for prev, nxt in zip(opts[:-1], opts[1:], strict=True):
        gap_se = math.hypot(prev.a_se, nxt.a_se)
        assert prev.a - nxt.a > 4 * gap_se, f"a*: {prev.a} -> {nxt.a}, SE {gap_se:.3g}"
        assert nxt.loss < prev.loss


def test_a_se_matches_batch_means(moments):
    L, chunks = 3, 32
    full = optimal_loop_scale(L, N, D, moments=moments)
    per = S // chunks
    estimates = []
    for i in range(chunks):
        part = moments.samples[i * per : (i + 1) * per]
        sub = WishartMoments(n=N, d=D, moments=part.mean(0), samples=part)
        estimates.append(optimal_loop_scale(L, N, D, moments=sub).a)
    batch_se = torch.tensor(estimates).std().item() / math.sqrt(chunks)
    # the SD of 32 batch means has relative SE ≈ 1/√(2·31)
    rel_se = 1 / math.sqrt(2 * (chunks - 1))
    ratio = batch_se / full.a_se
    assert abs(ratio - 1) < 4 * rel_se, f"batch-means SE / delta SE = {ratio}, SE {rel_se:.3g}"


def test_default_sampling_path_and_errors(moments):
    loss, se = looped_loss(0.7, 2, 6, 2, n_samples=2_000, seed=1)
    again = looped_loss(0.7, 2, 6, 2, n_samples=2_000, seed=1)
    assert (loss, se) == again and se > 0
    with pytest.raises(ValueError, match="order"):
        looped_loss(0.5, 5, N, D, moments=moments)
    with pytest.raises(ValueError, match="n, d"):
        optimal_loop_scale(1, N + 1, D, moments=moments)
    with pytest.raises(ValueError):
        optimal_loop_scale(0, N, D, moments=moments)
