"""Stacked per-layer optimum (Ahn Thm 3 set): reduces to the looped one, no worse, true minimum."""

import itertools
import math

import pytest
import torch

from icgd.theory.looped import optimal_loop_scale
from icgd.theory.preconditioner_loss import preconditioner_loss
from icgd.theory.stacked import optimal_layer_scales, stacked_loss
from icgd.theory.wishart import whitened_wishart_moments

N, D = 20, 5


@pytest.fixture(scope="module")
def moments():
    return whitened_wishart_moments(N, D, 8, n_samples=50_000, seed=4)


def test_one_layer_equals_looped(moments):
    st = optimal_layer_scales(1, N, D, moments=moments)
    lo = optimal_loop_scale(1, N, D, moments=moments)
    assert math.isclose(st.scales[0], lo.a, rel_tol=1e-12)
    assert math.isclose(st.loss, lo.loss, rel_tol=1e-12)


@pytest.mark.parametrize("L", [2, 3, 4])
def test_no_worse_than_looped_and_perturbations_raise_loss(moments, L):
    st = optimal_layer_scales(L, N, D, moments=moments)
    lo = optimal_loop_scale(L, N, D, moments=moments)
    assert st.loss < lo.loss
    assert list(st.scales) == sorted(st.scales) and all(a > 0 for a in st.scales)
    assert math.isclose(stacked_loss(st.scales, N, D, moments=moments)[0], st.loss, rel_tol=1e-9)
    assert math.isclose(stacked_loss([lo.a] * L, N, D, moments=moments)[0], lo.loss, rel_tol=1e-9)
    for i, sign in itertools.product(range(L), (-1, 1)):
        scales = list(st.scales)
        scales[i] *= 1 + sign * 0.01
        assert stacked_loss(scales, N, D, moments=moments)[0] > st.loss
    # layers commute: the loss is a function of the set (equal up to the rounding of the
    # alternating moment sum, whose terms are ~1e4 times the result at L = 4)
    rev = stacked_loss(st.scales[::-1], N, D, moments=moments)[0]
    assert math.isclose(rev, st.loss, rel_tol=1e-9)


def test_stacked_loss_matches_independent_pgd_estimate(moments):
    scales = optimal_layer_scales(3, N, D, moments=moments).scales
    gen = torch.Generator().manual_seed(11)
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=gen, dtype=torch.float64))
    sigma = q @ torch.diag(torch.tensor([1.0, 1.0, 0.25, 1 / 16, 1.0], dtype=torch.float64)) @ q.T
    inv = torch.linalg.inv(sigma)
    gammas = torch.stack([a * inv for a in scales])
    est, est_se = preconditioner_loss(gammas, sigma, N, weight_cov=inv, n_samples=20_000, seed=5)
    loss, se = stacked_loss(scales, N, D, moments=moments)
    tot = math.hypot(se, est_se)
    assert abs(est - loss) < 4 * tot, f"PGD {est} vs polynomial {loss}, SE {tot:.3g}"
