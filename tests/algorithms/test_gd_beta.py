"""GD-β (GD from a learned shared start) against a per-prompt loop, and the closed-form fit of
the start, in float64."""

from __future__ import annotations

import pytest
import torch

from icgd.algorithms import GDResult, fit_gd_beta_init, gd_beta, gradient_descent

F64 = torch.float64


def tasks_with_mean(B, n, d, mean, spread, seed, noise=0.0):
    """Prompts with `w* ~ N(mean, spread² I)`: X (B, n, d), y (B, n), x_q (B, d), y_q (B,)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(B, n, d, generator=g, dtype=F64)
    w = mean + spread * torch.randn(B, d, generator=g, dtype=F64)
    y = torch.einsum("bnd,bd->bn", X, w) + noise * torch.randn(B, n, generator=g, dtype=F64)
    x_q = torch.randn(B, d, generator=g, dtype=F64)
    return X, y, x_q, (x_q * w).sum(-1)


def naive(X, y, w0, etas):
    """Reference: loop over prompts and steps, `w ← w − η (1/n) Σ_i (x_iᵀ w − y_i) x_i`."""
    B, n, d = X.shape
    out = torch.zeros(len(etas) + 1, B, d, dtype=F64)
    for b in range(B):
        w = w0.clone()
        out[0, b] = w
        for l, eta in enumerate(etas):
            w = w - eta * sum((X[b, i] @ w - y[b, i]) * X[b, i] for i in range(n)) / n
            out[l + 1, b] = w
    return out


def test_matches_a_per_prompt_loop():
    X, y, x_q, _ = tasks_with_mean(4, 7, 3, 1.0, 0.5, seed=0, noise=0.1)
    w0 = torch.tensor([0.5, -1.0, 2.0], dtype=F64)
    etas = torch.tensor([0.3, 0.2, 0.1], dtype=F64)
    result = gd_beta(X, y, w0, etas)
    assert isinstance(result, GDResult) and result.weights.shape == (4, 4, 3)
    torch.testing.assert_close(result.weights, naive(X, y, w0, [0.3, 0.2, 0.1]), rtol=0, atol=1e-13)
    assert (result.weights[0] == w0).all()
    pred = torch.einsum("lbd,bd->lb", result.weights, x_q)
    torch.testing.assert_close(result.predict(x_q), pred, rtol=0, atol=1e-14)


def test_zero_start_is_plain_gd():
    X, y, _, _ = tasks_with_mean(5, 8, 4, 0.0, 1.0, seed=1)
    torch.testing.assert_close(
        gd_beta(X, y, torch.zeros(4, dtype=F64), 0.2, n_steps=3).weights,
        gradient_descent(X, y, 0.2, n_steps=3).weights,
        rtol=0,
        atol=1e-14,
    )


def test_fitted_start_is_exact_when_every_task_is_the_mean():
    """All tasks equal to β (noiseless): GD from β stays at β, the query loss is 0, and the least
    squares fit recovers β exactly."""
    beta = torch.tensor([1.5, -2.0, 0.5, 3.0], dtype=F64)
    X, y, x_q, y_q = tasks_with_mean(40, 6, 4, beta, 0.0, seed=2)
    fitted = fit_gd_beta_init(X, y, x_q, y_q, 0.3, n_steps=2)
    torch.testing.assert_close(fitted, beta, rtol=0, atol=1e-10)


def test_fitted_start_is_a_stationary_point_of_the_query_loss():
    X, y, x_q, y_q = tasks_with_mean(64, 8, 3, 2.0, 0.7, seed=3, noise=0.2)
    etas = torch.tensor([0.4, 0.2], dtype=F64)
    fitted = fit_gd_beta_init(X, y, x_q, y_q, etas).requires_grad_()
    loss = (gd_beta(X, y, fitted, etas).predict(x_q)[-1] - y_q).square().mean()
    (grad,) = torch.autograd.grad(loss, fitted)
    assert grad.abs().max() < 1e-12
    # and moving away from it increases the loss (the problem is a convex quadratic in β)
    with torch.no_grad():
        for delta in torch.eye(3, dtype=F64) * 0.1:
            moved = (gd_beta(X, y, fitted + delta, etas).predict(x_q)[-1] - y_q).square().mean()
            assert moved > loss


def test_learned_start_beats_zero_on_held_out_prompts_with_a_mean():
    mean = torch.tensor([2.0, -1.0, 1.5], dtype=F64)
    train = tasks_with_mean(256, 5, 3, mean, 0.5, seed=4, noise=0.1)
    X, y, x_q, y_q = tasks_with_mean(256, 5, 3, mean, 0.5, seed=5, noise=0.1)
    beta = fit_gd_beta_init(*train, 0.5, n_steps=1)
    from_beta = (gd_beta(X, y, beta, 0.5, n_steps=1).predict(x_q)[-1] - y_q).square().mean()
    from_zero = (gradient_descent(X, y, 0.5, n_steps=1).predict(x_q)[-1] - y_q).square().mean()
    assert from_beta < 0.5 * from_zero, (from_beta, from_zero)
    assert (beta - mean).norm() < 0.5 * mean.norm()


def test_bad_start_is_refused():
    X, y, _, _ = tasks_with_mean(2, 5, 3, 0.0, 1.0, seed=0)
    with pytest.raises(ValueError, match="w0"):
        gd_beta(X, y, torch.zeros(2, 3, dtype=F64), 0.1, n_steps=1)
