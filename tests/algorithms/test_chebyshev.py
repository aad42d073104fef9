"""Richardson and Chebyshev iteration for `Ŝ w = b` against closed forms in the eigenbasis of Ŝ
(float64), and Chebyshev's √κ advantage on ill-conditioned prompts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.polynomial import chebyshev as C

from icgd.algorithms import (
    GDResult,
    chebyshev_iteration,
    gradient_descent,
    ols,
    richardson_iteration,
    spectral_interval,
)

F64 = torch.float64


def data(B=5, n=30, d=4, seed=0, scales=None):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(B, n, d, generator=g, dtype=F64)
    if scales is not None:
        X = X * torch.as_tensor(scales, dtype=F64)
    y = torch.randn(B, n, generator=g, dtype=F64)
    return X, y


def chebyshev_closed_form(X, y, K, lo, hi):
    """Per prompt, numpy: `w_k = w* − U diag(p_k(λ)) Uᵀ w*`, `p_k(λ) = T_k((θ−λ)/δ)/T_k(θ/δ)`."""
    out = np.zeros((K + 1, X.shape[0], X.shape[2]))
    for b, (Xb, yb) in enumerate(zip(X.numpy(), y.numpy(), strict=True)):
        n = Xb.shape[0]
        lam, U = np.linalg.eigh(Xb.T @ Xb / n)
        w_star = np.linalg.lstsq(Xb, yb, rcond=None)[0]
        theta, delta = (hi[b] + lo[b]) / 2, (hi[b] - lo[b]) / 2
        for k in range(K + 1):
            Tk = [0] * k + [1]
            p = C.chebval((theta - lam) / delta, Tk) / C.chebval(theta / delta, Tk)
            out[k, b] = w_star - U @ (p * (U.T @ w_star))
    return torch.tensor(out)


def test_spectral_interval_is_the_extreme_eigenvalues():
    X, _ = data()
    lam = torch.linalg.eigvalsh(X.transpose(1, 2) @ X / 30)
    lo, hi = spectral_interval(X)
    torch.testing.assert_close(lo, lam[:, 0], rtol=1e-13, atol=0)
    torch.testing.assert_close(hi, lam[:, -1], rtol=1e-13, atol=0)
    X_short, _ = data(n=3, d=6)  # rank 3: λ_lo is the smallest non-zero eigenvalue
    lam = torch.linalg.eigvalsh(X_short.transpose(1, 2) @ X_short / 3)
    lo, _ = spectral_interval(X_short)
    torch.testing.assert_close(lo, lam[:, 3], rtol=1e-10, atol=0)


@pytest.mark.parametrize("widen", [1.0, 1.5])
def test_chebyshev_matches_the_chebyshev_polynomial_closed_form(widen):
    X, y = data(scales=[1.0, 0.7, 0.4, 0.2])
    lo, hi = spectral_interval(X)
    lo, hi = lo / widen, hi * widen  # any interval covering the spectrum
    result = chebyshev_iteration(X, y, 8, interval=(lo, hi))
    assert isinstance(result, GDResult) and result.weights.shape == (9, 5, 4)
    ref = chebyshev_closed_form(X, y, 8, lo.numpy(), hi.numpy())
    torch.testing.assert_close(result.weights, ref, rtol=0, atol=1e-11)


def test_richardson_is_gd_with_a_fixed_step_and_matches_its_closed_form():
    X, y = data()
    torch.testing.assert_close(
        richardson_iteration(X, y, 7, omega=0.3).weights,
        gradient_descent(X, y, 0.3, n_steps=7).weights,
        rtol=0,
        atol=1e-14,
    )
    lo, hi = spectral_interval(X)
    result = richardson_iteration(X, y, 7)  # ω = 2/(λ_lo + λ_hi) per prompt
    S = X.transpose(1, 2) @ X / 30
    omega = (2 / (lo + hi))[:, None, None]
    w_star = ols(X, y)
    for k in range(8):
        T = torch.linalg.matrix_power(torch.eye(4, dtype=F64) - omega * S, k)
        expected = w_star - torch.einsum("bij,bj->bi", T, w_star)
        torch.testing.assert_close(result.weights[k], expected, rtol=0, atol=1e-12)


def test_first_chebyshev_step_is_the_optimal_richardson_step():
    X, y = data()
    cheb = chebyshev_iteration(X, y, 1).weights
    rich = richardson_iteration(X, y, 1).weights
    torch.testing.assert_close(cheb, rich, rtol=0, atol=1e-14)


def test_chebyshev_beats_richardson_on_ill_conditioned_prompts():
    """κ ≈ 400: Richardson contracts by (κ−1)/(κ+1) per step, Chebyshev by (√κ−1)/(√κ+1); after
    60 steps the bounds are ≈ 0.74 and 1/T_60(θ/δ) ≈ 0.005."""
    X, y = data(B=8, n=60, d=5, scales=[1.0, 0.5, 0.2, 0.1, 0.05])
    K = 60
    w_star = ols(X, y)
    lo, hi = spectral_interval(X)
    e_cheb = (chebyshev_iteration(X, y, K).weights - w_star).norm(dim=-1)  # (K+1, B)
    e_rich = (richardson_iteration(X, y, K).weights - w_star).norm(dim=-1)
    e0 = w_star.norm(dim=-1)
    sigma = ((hi + lo) / (hi - lo)).numpy()
    kappa = hi / lo
    for k in range(1, K + 1):
        cheb_bound = torch.tensor(1 / np.cosh(k * np.arccosh(sigma)))  # 1 / T_k(θ/δ)
        assert (e_cheb[k] <= cheb_bound * e0 * (1 + 1e-9)).all(), k
        assert (e_rich[k] <= ((kappa - 1) / (kappa + 1)) ** k * e0 * (1 + 1e-9)).all(), k
    assert kappa.min() > 100
    assert (e_cheb[K] < 0.05 * e_rich[K]).all(), (e_cheb[K], e_rich[K])


def test_a_single_point_interval_solves_in_one_step():
    """Ŝ = c I (orthogonal columns): δ = 0, the first step is exact and stays there."""
    n, d, c = 8, 3, 2.5
    G = torch.randn(n, d, generator=torch.Generator().manual_seed(1), dtype=F64)
    X = (math.sqrt(n * c) * torch.linalg.qr(G)[0]).expand(2, n, d)  # XᵀX/n = c I
    y = torch.randn(2, n, generator=torch.Generator().manual_seed(2), dtype=F64)
    result = chebyshev_iteration(X, y, 4)
    lo, hi = spectral_interval(X)
    torch.testing.assert_close(lo, hi, rtol=1e-12, atol=0)
    for k in range(1, 5):
        torch.testing.assert_close(result.weights[k], ols(X, y), rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", [chebyshev_iteration, richardson_iteration])
def test_rank_deficient_prompts_reach_the_minimum_norm_solution(method):
    """n < d: the iterates stay in the row space of X; K from each method's contraction bound."""
    X, y = data(B=3, n=4, d=6)
    lo, hi = spectral_interval(X)
    kappa = (hi / lo).max().item()
    root = math.sqrt(kappa) if method is chebyshev_iteration else kappa
    K = math.ceil(math.log(1e13) / -math.log((root - 1) / (root + 1)))
    torch.testing.assert_close(method(X, y, K).final, ols(X, y), rtol=0, atol=1e-9)


@pytest.mark.parametrize("method", [chebyshev_iteration, richardson_iteration])
def test_batched_equals_per_prompt_and_zero_data_gives_zero(method):
    X, y = data(B=4)
    full = method(X, y, 6).weights
    for b in range(4):
        alone = method(X[b : b + 1], y[b : b + 1], 6).weights
        torch.testing.assert_close(alone, full[:, b : b + 1], rtol=0, atol=1e-13)
    zero = method(torch.zeros(2, 5, 3, dtype=F64), torch.ones(2, 5, dtype=F64), 3).weights
    assert torch.equal(zero, torch.zeros_like(zero))


def test_bad_arguments_are_refused():
    X, y = data()
    with pytest.raises(ValueError, match="interval"):
        chebyshev_iteration(X, y, 3, interval=(2.0, 1.0))
    with pytest.raises(ValueError, match="interval"):
        chebyshev_iteration(X, y, 3, interval=(-1.0, 1.0))
    with pytest.raises(ValueError, match="n_steps"):
        richardson_iteration(X, y, -2)
