"""One-layer exact losses: E[ŜMŜ] by MC, optimality of Γ*, Mahankali step, links to the others."""

import math

import pytest
import torch
from scipy.optimize import minimize_scalar

from icgd.theory.looped import looped_loss
from icgd.theory.one_layer import (
    ahn_optimal_preconditioner,
    expected_s_m_s,
    one_layer_loss,
    one_layer_risk,
    optimal_one_layer_preconditioner,
    optimal_one_step_scale,
    optimal_prefix_step_scale,
    risk_at_test_length,
    risk_floor,
    zfb_gamma,
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


@pytest.mark.parametrize("noise", [0.0, 0.5])
def test_prefix_step_is_the_argmin_of_the_mean_over_prefix_lengths(noise):
    """k points padded to n_max with 1/n_max is one layer at k points with step η k / n_max, so
    the mean of the exact one-layer losses over k is minimised at `optimal_prefix_step_scale`."""
    n_max, eye = 12, torch.eye(D, dtype=torch.float64)

    def mean_loss(eta: float) -> float:
        ks = range(1, n_max + 1)
        return sum(one_layer_loss(eta * k / n_max * eye, eye, k, noise_std=noise) for k in ks)

    res = minimize_scalar(mean_loss, bounds=(0.0, 3.0), method="bounded", options={"xatol": 1e-10})
    assert res.x == pytest.approx(optimal_prefix_step_scale(n_max, D, noise), abs=1e-7)
    assert optimal_prefix_step_scale(1, D, noise) == pytest.approx(
        optimal_one_step_scale(1, D, noise), rel=1e-14
    )


def test_prefix_step_matches_monte_carlo():
    """The least-squares η over sampled padded prompts, within 4 SE (ratio estimator)."""
    n_max, noise, S = 10, 0.5, 200_000
    g = torch.Generator().manual_seed(11)
    k = torch.randint(1, n_max + 1, (S,), generator=g)
    X = torch.randn(S, n_max, D, generator=g, dtype=torch.float64)
    X = X * (torch.arange(n_max) < k[:, None]).unsqueeze(-1)  # zero-padded after k points
    w, x_q = torch.randn(S, D, generator=g, dtype=torch.float64), torch.randn(S, D, generator=g)
    x_q = x_q.double()
    y = torch.einsum("snd,sd->sn", X, w) + noise * torch.randn(S, n_max, generator=g).double()
    y_q = (x_q * w).sum(-1) + noise * torch.randn(S, generator=g).double()
    u = torch.einsum("sd,snd,sn->s", x_q, X, y) / n_max  # ŷ = η u
    a, b = u * y_q, u * u
    eta = float(a.mean() / b.mean())
    se = float((a - eta * b).std() / (math.sqrt(S) * b.mean()))
    assert abs(eta - optimal_prefix_step_scale(n_max, D, noise)) < 4 * se


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


# --- ZFB §4.1: risk at test length M, covariate shift α, kept training scale ----------------


def _mc_risk(gamma, sigma, m, noise, *, alpha=1.0, scale=1.0, cov_w=None, B=100_000, seed=0):
    """Monte Carlo (float64) of ``x_qᵀ (scale·Γ) (1/m) Σ_{i≤m} y_i x_i`` against ``y_q``, inputs
    ``α x``, labels ``wᵀ(αx) + σε``: (mean, SE = std/√B)."""
    gen = torch.Generator().manual_seed(seed)
    d = sigma.shape[0]
    chol = torch.linalg.cholesky(sigma)
    w_sqrt = torch.eye(d, dtype=torch.float64) if cov_w is None else torch.linalg.cholesky(cov_w)
    x = alpha * torch.randn(B, m + 1, d, generator=gen, dtype=torch.float64) @ chol.T
    w = torch.randn(B, d, generator=gen, dtype=torch.float64) @ w_sqrt.T
    y = torch.einsum("bid,bd->bi", x, w) + noise * torch.randn(
        B, m + 1, generator=gen, dtype=torch.float64
    )
    h = torch.einsum("bi,bid->bd", y[:, :m], x[:, :m]) / m  # (1/m) Σ y_i x_i
    pred = scale * torch.einsum("bc,ca,ba->b", x[:, m], gamma, h)
    err = (pred - y[:, m]) ** 2
    return float(err.mean()), float(err.std() / math.sqrt(B))


def test_zfb_gamma_is_inverse_of_ahn():
    _, sigma, _ = _setup(5)
    for noise in (0.0, 0.5):
        torch.testing.assert_close(
            torch.linalg.inv(zfb_gamma(sigma, N, noise)),
            ahn_optimal_preconditioner(sigma, N, noise),
            rtol=1e-12,
            atol=1e-12,
        )


def test_risk_at_test_length_monte_carlo():
    """R(M), covariate shift and kept scale within 4 SE of a float64 Monte Carlo (SE = std/√B,
    B = 100 000 prompts; the closed form's relative SE here is ≈ 0.5-1%)."""
    _, sigma, _ = _setup(6)
    noise = 0.5
    gamma = ahn_optimal_preconditioner(sigma, N, noise)
    cases = [
        (m, a, k)
        for m in (N // 2, 4 * N)
        for a, k in ((1.0, False), (0.5, False), (2.0, False), (1.0, True))
    ]
    for i, (m, alpha, keep) in enumerate(cases):
        exact = risk_at_test_length(m, sigma, N, noise, alpha=alpha, keep_train_scale=keep)
        scale = m / N if keep else 1.0
        matrix = one_layer_risk(gamma, sigma, m, noise, alpha=alpha, scale=scale)
        assert math.isclose(exact, matrix, rel_tol=1e-10), (m, alpha, keep, exact, matrix)
        est, se = _mc_risk(gamma, sigma, m, noise, alpha=alpha, scale=scale, seed=10 + i)
        assert abs(est - exact) < 4 * se, (
            f"M={m} α={alpha} kept={keep}: {est} vs {exact} ± {se:.3g}"
        )


def test_one_layer_risk_general_gamma_monte_carlo():
    """Non-symmetric Γ, non-identity Σ_w, shifted inputs: the matrix form vs Monte Carlo."""
    gen, sigma, cov_w = _setup(7)
    gamma = 0.3 * torch.randn(D, D, generator=gen, dtype=torch.float64) + 0.5 * torch.eye(D)
    for i, (m, alpha, scale) in enumerate(((3, 1.0, 1.0), (25, 2.0, 1.0), (25, 0.5, 2.5))):
        exact = one_layer_risk(gamma, sigma, m, 0.7, cov_w, alpha=alpha, scale=scale)
        est, se = _mc_risk(gamma, sigma, m, 0.7, alpha=alpha, scale=scale, cov_w=cov_w, seed=20 + i)
        assert abs(est - exact) < 4 * se, f"M={m}: {est} vs {exact} ± {se:.3g}"
    # at M = n, α = 1, scale 1 it is the training loss
    assert math.isclose(
        one_layer_risk(gamma, sigma, N, 0.7, cov_w), one_layer_loss(gamma, sigma, N, 0.7, cov_w)
    )


def test_risk_floor_is_the_limit():
    _, sigma, _ = _setup(8)
    for noise, alpha in ((0.0, 1.0), (0.5, 1.0), (0.5, 2.0)):
        floor = risk_floor(sigma, N, noise, alpha)
        far = risk_at_test_length(1e9, sigma, N, noise, alpha=alpha)
        assert math.isclose(far, floor, rel_tol=1e-7), (far, floor)
        gamma = ahn_optimal_preconditioner(sigma, N, noise)
        matrix = one_layer_risk(gamma, sigma, math.inf, noise, alpha=alpha)
        assert math.isclose(matrix, floor, rel_tol=1e-10)
        # R(M) decreases to the floor, which stays above the noise σ²
        risks = [risk_at_test_length(m, sigma, N, noise, alpha=alpha) for m in (5, 20, 80, 320)]
        assert all(a > b for a, b in zip(risks, risks[1:], strict=False))
        assert risks[-1] > floor > noise**2
    # isotropic closed form: σ² + d ((d + 1 + σ²)/(n + d + 1 + σ²))²
    eye, noise = torch.eye(D, dtype=torch.float64), 0.5
    iso = noise**2 + D * ((D + 1 + noise**2) / (N + D + 1 + noise**2)) ** 2
    assert math.isclose(risk_floor(eye, N, noise), iso, rel_tol=1e-12)
    # at M = n the risk is the training loss of Γ*
    sig = _setup(8)[1]
    assert math.isclose(
        risk_at_test_length(N, sig, N, noise),
        one_layer_loss(ahn_optimal_preconditioner(sig, N, noise), sig, N, noise),
        rel_tol=1e-12,
    )
    # keeping 1/n has no limit
    with pytest.raises(ValueError, match="without bound"):
        risk_at_test_length(math.inf, sig, N, noise, keep_train_scale=True)
