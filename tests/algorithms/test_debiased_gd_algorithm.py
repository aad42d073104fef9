"""Debiased (mean-centred) GD: the same predictor as `icgd.theory.debiased_gd` and softmax-heads'
`one_step_predictors`, its exact risk by Monte Carlo, and its invariance to shifts of x."""

from __future__ import annotations

import torch

from icgd.algorithms import GDResult, debiased_gd, gradient_descent
from icgd.experiments.softmax_heads.measurements import one_step_predictors
from icgd.theory.debiased_gd import debiased_one_step_risk, m_star

F64 = torch.float64


def isotropic(B, n, d, sigma, seed):
    """The setting of `icgd.theory.debiased_gd`: x, x_q ~ N(0, I), w ~ N(0, I) (b = d)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(B, n, d, generator=g, dtype=F64)
    w = torch.randn(B, d, generator=g, dtype=F64)
    y = torch.einsum("bnd,bd->bn", X, w) + sigma * torch.randn(B, n, generator=g, dtype=F64)
    x_q = torch.randn(B, d, generator=g, dtype=F64)
    y_q = (x_q * w).sum(-1) + sigma * torch.randn(B, generator=g, dtype=F64)
    return X, y, x_q, y_q


def test_one_step_is_the_repositorys_debiased_predictor():
    X, y, x_q, _ = isotropic(6, 9, 4, 0.3, seed=0)
    result = debiased_gd(X, y, 0.7)
    assert isinstance(result, GDResult) and result.weights.shape == (2, 6, 4)
    assert (result.weights[0] == 0).all()
    expected = 0.7 * one_step_predictors(X, y, x_q)["debiased"]
    torch.testing.assert_close(result.predict(x_q)[1], expected, rtol=0, atol=1e-13)
    # by hand: v = (1/n) Σ_ℓ y_ℓ (x_ℓ − x̄), prompt by prompt
    for b in range(6):
        x_bar = X[b].mean(0)
        v = sum(y[b, l] * (X[b, l] - x_bar) for l in range(9)) / 9
        torch.testing.assert_close(result.weights[1, b], 0.7 * v, rtol=0, atol=1e-14)


def test_it_removes_the_mean_term_of_plain_gd():
    X, y, _, _ = isotropic(5, 7, 3, 0.0, seed=1)
    plain = gradient_descent(X, y, 1.0, n_steps=1).weights[1]
    debiased = debiased_gd(X, y, 1.0).weights[1]
    torch.testing.assert_close(
        plain - debiased, y.mean(1, keepdim=True) * X.mean(1), rtol=0, atol=1e-14
    )


def test_shifting_every_context_x_changes_nothing():
    """Centring makes the weights invariant to x_ℓ ↦ x_ℓ + c (plain GD is not)."""
    X, y, _, _ = isotropic(4, 8, 3, 0.2, seed=2)
    shift = torch.tensor([3.0, -2.0, 5.0], dtype=F64)
    etas = torch.tensor([0.3, 0.2, 0.1], dtype=F64)
    torch.testing.assert_close(
        debiased_gd(X + shift, y, etas).weights, debiased_gd(X, y, etas).weights, atol=1e-12, rtol=0
    )
    plain_moved = (
        gradient_descent(X + shift, y, etas).weights - gradient_descent(X, y, etas).weights
    )
    assert plain_moved.abs().max() > 0.1


def test_more_steps_are_gd_on_the_centred_risk():
    X, y, _, _ = isotropic(3, 10, 3, 0.1, seed=3)
    X_c = X - X.mean(1, keepdim=True)
    torch.testing.assert_close(
        debiased_gd(X, y, 0.4, n_steps=5).weights,
        gradient_descent(X_c, y, 0.4, n_steps=5).weights,
        rtol=0,
        atol=1e-14,
    )


def test_monte_carlo_risk_matches_the_closed_form():
    """`E(y_q − m x_qᵀ v)²` against `debiased_one_step_risk` within 4 SE, at m* and at 2 m*."""
    n, d, sigma, B = 10, 3, 0.5, 40000
    X, y, x_q, y_q = isotropic(B, n, d, sigma, seed=4)
    m = m_star(n, d, float(d), sigma)
    for step in (m, 2 * m):
        err = (debiased_gd(X, y, step).predict(x_q)[1] - y_q).square()  # (B,)
        se = err.std().item() / B**0.5
        theory = debiased_one_step_risk(step, n, d, float(d), sigma)
        assert abs(err.mean().item() - theory) < 4 * se, (step, err.mean().item(), theory, se)
