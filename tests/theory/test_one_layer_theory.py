"""One-layer exact losses: E[ŜMŜ] by MC, optimality of Γ*, Mahankali step, links to the others."""

import math

import torch
from scipy.optimize import minimize_scalar

from icgd.theory.looped import looped_loss
from icgd.theory.one_layer import (
    ahn_optimal_preconditioner,
    expected_s_m_s,
    one_layer_loss,
    optimal_one_layer_preconditioner,
    optimal_one_step_scale,
)
from icgd.theory.preconditioner_loss import preconditioner_loss
from icgd.theory.wishart import whitened_wishart_moments

D, N = 4, 10


def _setup(seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=gen, dtype=torch.float64))
    sigma = q @ torch.diag(torch.tensor([2.0, 1.0, 0.5, 0.1], dtype=torch.float64)) @ q.T
    b = torch.randn(D, D, generator=gen, dtype=torch.float64)
    cov_w = b @ b.T / D + 0.1 * torch.eye(D, dtype=torch.float64)
    return gen, sigma, cov_w


def test_expected_s_m_s_monte_carlo():
    gen, sigma, m = _setup(1)
    chol = torch.linalg.cholesky(sigma)
    S = 40_000
    x = torch.randn(S, N, D, generator=gen, dtype=torch.float64) @ chol.T  # (S, n, d)
    s_hat = x.transpose(1, 2) @ x / N
    vals = s_hat @ m @ s_hat  # (S, d, d)
    mean, se = vals.mean(0), vals.std(0) / math.sqrt(S)
    exact = expected_s_m_s(sigma, m, N)
    err = (mean - exact).abs()
    assert torch.all(err < 4 * se), f"max |err|/SE = {(err / se).max():.3g}"


def test_one_layer_loss_matches_pgd_monte_carlo():
    gen, sigma, cov_w = _setup(2)
    gamma = 0.3 * torch.randn(D, D, generator=gen, dtype=torch.float64) + 0.5 * torch.eye(D)
    exact = one_layer_loss(gamma, sigma, N, noise_std=0.7, weight_cov=cov_w)
    est, se = preconditioner_loss(
        gamma[None], sigma, N, weight_cov=cov_w, noise_std=0.7, n_samples=20_000, seed=3
    )
    assert abs(est - exact) < 4 * se, f"MC {est} vs exact {exact}, SE {se:.3g}"


def test_ahn_preconditioner_is_optimal():
    gen, sigma, cov_w = _setup(3)
    for noise in (0.0, 0.5):
        g_star = ahn_optimal_preconditioner(sigma, N, noise_std=noise)
        general = optimal_one_layer_preconditioner(sigma, N, noise_std=noise)
        torch.testing.assert_close(g_star, general, rtol=1e-12, atol=1e-12)
        best = one_layer_loss(g_star, sigma, N, noise_std=noise)
        for _ in range(10):
            pert = 1e-3 * torch.randn(D, D, generator=gen, dtype=torch.float64)
            assert one_layer_loss(g_star + pert, sigma, N, noise_std=noise) > best
    # non-identity weight covariance: the general formula is a minimum too
    g_star = optimal_one_layer_preconditioner(sigma, N, noise_std=0.3, weight_cov=cov_w)
    best = one_layer_loss(g_star, sigma, N, noise_std=0.3, weight_cov=cov_w)
    for _ in range(10):
        pert = 1e-3 * torch.randn(D, D, generator=gen, dtype=torch.float64)
        assert one_layer_loss(g_star + pert, sigma, N, 0.3, cov_w) > best


def test_isotropic_step_is_argmin():
    eye = torch.eye(D, dtype=torch.float64)
    for noise in (0.0, 1.5):
        res = minimize_scalar(
            lambda g, s=noise: one_layer_loss(g * eye, eye, N, noise_std=s),
            bounds=(0.0, 2.0),
            method="bounded",
            options={"xatol": 1e-10},
        )
        step = optimal_one_step_scale(N, D, noise)
        assert abs(res.x - step) < 1e-7, (res.x, step)
        torch.testing.assert_close(
            ahn_optimal_preconditioner(eye, N, noise), step * eye, rtol=1e-12, atol=1e-12
        )


def test_whitened_setting_matches_looped_one_step():
    _, sigma, _ = _setup(4)
    inv = torch.linalg.inv(sigma)
    a = N / (N + D + 1)
    exact = one_layer_loss(a * inv, sigma, N, weight_cov=inv)
    # ℓ_1(a) = d − 2 a m_1 + a² m_2 = d(d + 1)/(n + d + 1) at a = n/(n + d + 1), any Σ
    assert math.isclose(exact, D * (D + 1) / (N + D + 1), rel_tol=1e-12)
    mom = whitened_wishart_moments(N, D, 2, n_samples=20_000, seed=0)
    loss, se = looped_loss(a, 1, N, D, moments=mom)
    assert abs(loss - exact) < 4 * se, f"{loss} vs {exact}, SE {se:.3g}"
