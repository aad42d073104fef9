"""Tests of OLS, ridge and the Bayes posterior mean, in float64."""

from __future__ import annotations

import pytest
import torch

from icgd.algorithms import bayes_posterior_mean, ols, ridge

F64 = torch.float64


def data(B=5, n=12, d=4, seed=0, noise=0.3):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(B, n, d, generator=g, dtype=F64)
    w = torch.randn(B, d, generator=g, dtype=F64)
    y = torch.einsum("bnd,bd->bn", X, w) + noise * torch.randn(B, n, generator=g, dtype=F64)
    return X, y


def spd(d, seed):
    M = torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return M @ M.T / d + 0.3 * torch.eye(d, dtype=F64)


def test_ols_overdetermined_satisfies_normal_equations():
    X, y = data(n=12, d=4)
    w = ols(X, y)
    assert w.shape == (5, 4) and w.dtype == F64
    lhs = torch.einsum("bij,bj->bi", X.transpose(1, 2) @ X, w)
    torch.testing.assert_close(lhs, torch.einsum("bnd,bn->bd", X, y), rtol=0, atol=1e-10)


def test_ols_underdetermined_is_min_norm_interpolant():
    X, y = data(n=3, d=7, seed=1)
    w = ols(X, y)
    torch.testing.assert_close(torch.einsum("bnd,bd->bn", X, w), y, rtol=0, atol=1e-10)
    # w lies in the row space of X: its projection onto the row space is itself
    proj = X.transpose(1, 2) @ torch.linalg.solve(X @ X.transpose(1, 2), X)  # (B, d, d)
    torch.testing.assert_close(torch.einsum("bij,bj->bi", proj, w), w, rtol=0, atol=1e-10)
    # hence it is the closed form Xᵀ (X Xᵀ)⁻¹ y
    closed = torch.einsum("bnd,bn->bd", X, torch.linalg.solve(X @ X.transpose(1, 2), y))
    torch.testing.assert_close(w, closed, rtol=0, atol=1e-10)


@pytest.mark.parametrize(("n", "d"), [(12, 4), (3, 7)])
def test_ridge_satisfies_normal_equations(n, d):
    X, y = data(n=n, d=d, seed=2)
    lam = 0.7
    w = ridge(X, y, lam)
    lhs = torch.einsum("bij,bj->bi", X.transpose(1, 2) @ X + lam * torch.eye(d, dtype=F64), w)
    torch.testing.assert_close(lhs, torch.einsum("bnd,bn->bd", X, y), rtol=0, atol=1e-10)


def test_ridge_per_prompt_lambda_and_limits():
    X, y = data(seed=3)
    lams = torch.tensor([0.0, 0.1, 1.0, 10.0, 100.0], dtype=F64)
    batched = ridge(X, y, lams)
    for b in range(5):  # loop in the test only
        torch.testing.assert_close(
            batched[b], ridge(X[b : b + 1], y[b : b + 1], lams[b].item())[0], rtol=0, atol=1e-12
        )
    torch.testing.assert_close(ridge(X, y, 0.0), ols(X, y), rtol=0, atol=1e-10)
    # shrinkage: ‖w_λ‖ decreases with λ
    norms = torch.stack([ridge(X, y, lam).norm(dim=-1) for lam in (0.0, 1.0, 10.0)])
    assert (norms[1:] < norms[:-1]).all()
    with pytest.raises(ValueError, match="lam"):
        ridge(X, y, -1.0)


@pytest.mark.parametrize(("n", "d"), [(12, 4), (3, 7)])
def test_bayes_mean_equals_ridge_for_isotropic_prior(n, d):
    X, y = data(n=n, d=d, seed=4)
    sigma, tau = 0.5, 2.0
    w = bayes_posterior_mean(X, y, sigma, tau**2 * torch.eye(d, dtype=F64))
    torch.testing.assert_close(w, ridge(X, y, sigma**2 / tau**2), rtol=0, atol=1e-10)


@pytest.mark.parametrize(("n", "d"), [(12, 4), (3, 7)])
def test_bayes_mean_matches_direct_formula(n, d):
    X, y = data(n=n, d=d, seed=5)
    prior = spd(d, 6)
    sigma = 0.4
    w = bayes_posterior_mean(X, y, sigma, prior)
    K = X @ prior @ X.transpose(1, 2) + sigma**2 * torch.eye(n, dtype=F64)  # (B, n, n)
    direct = torch.einsum("ij,bnj,bn->bi", prior, X, torch.linalg.solve(K, y))
    torch.testing.assert_close(w, direct, rtol=0, atol=1e-10)
    # a per-prompt prior (B, d, d) gives the same as the shared one
    per_prompt = bayes_posterior_mean(X, y, sigma, prior.expand(5, d, d))
    torch.testing.assert_close(per_prompt, w, rtol=0, atol=1e-12)


def test_bayes_mean_noiseless_limits():
    # n > d: the σ → 0 limit is OLS (and the data need not be noiseless)
    X, y = data(n=12, d=4, seed=7)
    prior = spd(4, 8)
    torch.testing.assert_close(
        bayes_posterior_mean(X, y, 0.0, prior), ols(X, y), rtol=0, atol=1e-10
    )
    # n < d: interpolation, and the formula Σ_w Xᵀ (X Σ_w Xᵀ)⁻¹ y
    X, y = data(n=3, d=7, seed=9)
    prior = spd(7, 10)
    w = bayes_posterior_mean(X, y, 0.0, prior)
    torch.testing.assert_close(torch.einsum("bnd,bd->bn", X, w), y, rtol=0, atol=1e-10)
    direct = torch.einsum(
        "ij,bnj,bn->bi", prior, X, torch.linalg.solve(X @ prior @ X.transpose(1, 2), y)
    )
    torch.testing.assert_close(w, direct, rtol=0, atol=1e-9)
    # and close to the small-noise posterior mean
    torch.testing.assert_close(bayes_posterior_mean(X, y, 1e-6, prior), w, rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="noise_std"):
        bayes_posterior_mean(X, y, -0.1, prior)
