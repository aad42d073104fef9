"""Rao–Blackwellised PGD loss vs brute-force simulation; Σ-independence of the whitened loss."""

import math

import pytest
import torch

from icgd.theory.looped import looped_loss
from icgd.theory.preconditioner_loss import preconditioner_loss


def _rotated(eigs, seed):
    gen = torch.Generator().manual_seed(seed)
    d = len(eigs)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    return q @ torch.diag(torch.tensor(eigs, dtype=torch.float64)) @ q.T


def brute_force(gammas, sigma, n, cov_w, noise, S, seed):
    """Sample X, w*, ε, x_q, ε_q; run L steps of PGD; return (mean, SE) of the squared error."""
    gen = torch.Generator().manual_seed(seed)
    d = sigma.shape[0]
    cx, cw = torch.linalg.cholesky(sigma), torch.linalg.cholesky(cov_w)
    x = torch.randn(S, n, d, generator=gen, dtype=torch.float64) @ cx.T  # (S, n, d)
    xq = torch.randn(S, d, generator=gen, dtype=torch.float64) @ cx.T  # (S, d)
    w = torch.randn(S, d, generator=gen, dtype=torch.float64) @ cw.T  # (S, d)
    y = (x @ w[:, :, None])[..., 0] + noise * torch.randn(S, n, generator=gen, dtype=torch.float64)
    yq = (xq * w).sum(-1) + noise * torch.randn(S, generator=gen, dtype=torch.float64)
    est = torch.zeros(S, d, dtype=torch.float64)
    for gamma in gammas:
        resid = (x @ est[:, :, None])[..., 0] - y  # (S, n)
        grad = (x.transpose(1, 2) @ resid[:, :, None])[..., 0] / n  # (S, d)
        est = est - grad @ gamma.T
    err2 = ((xq * est).sum(-1) - yq) ** 2
    return err2.mean().item(), (err2.std() / math.sqrt(S)).item()


@pytest.mark.parametrize("noise", [0.0, 0.5])
def test_matches_brute_force(noise):
    d, n, L = 3, 10, 3
    gen = torch.Generator().manual_seed(0)
    sigma = _rotated([1.5, 1.0, 0.3], 1)
    b = torch.randn(d, d, generator=gen, dtype=torch.float64)
    cov_w = b @ b.T / d + 0.2 * torch.eye(d, dtype=torch.float64)
    inv = torch.linalg.inv(sigma)
    gammas = torch.stack(
        [0.5 * inv + 0.1 * torch.randn(d, d, generator=gen, dtype=torch.float64) for _ in range(L)]
    )  # non-symmetric, distinct per layer
    rb, rb_se = preconditioner_loss(
        gammas, sigma, n, weight_cov=cov_w, noise_std=noise, n_samples=20_000, seed=2
    )
    bf, bf_se = brute_force(gammas, sigma, n, cov_w, noise, 60_000, seed=3)
    tot = math.hypot(rb_se, bf_se)
    assert abs(rb - bf) < 4 * tot, f"RB {rb} vs brute force {bf}, SE {tot:.3g}"
    assert rb_se < bf_se  # Rao–Blackwellisation helps


def test_whitened_loss_is_sigma_independent():
    d, n, L, a = 5, 20, 3, 0.7
    s1 = _rotated([1.0, 1.0, 0.25, 1 / 16, 1.0], 5)
    s2 = _rotated([3.0, 0.5, 0.1, 2.0, 1.0], 6)
    vals = []
    for s in (s1, s2, torch.eye(d, dtype=torch.float64)):
        inv = torch.linalg.inv(s)
        gammas = (a * inv).expand(L, d, d)
        vals.append(preconditioner_loss(gammas, s, n, weight_cov=inv, n_samples=10_000, seed=9))
    # same seed → same whitened draws → same per-draw losses up to rounding
    for v in vals[1:]:
        assert math.isclose(v[0], vals[0][0], rel_tol=1e-9), (v, vals[0])
    theory, theory_se = looped_loss(a, L, n, d, n_samples=50_000, seed=1)
    tot = math.hypot(theory_se, vals[0][1])
    assert abs(vals[0][0] - theory) < 4 * tot, f"{vals[0][0]} vs {theory}, SE {tot:.3g}"


def test_determinism_rng_and_validation():
    sigma = _rotated([1.0, 2.0], 0)
    gammas = 0.3 * torch.eye(2, dtype=torch.float64).expand(2, 2, 2)
    state = torch.get_rng_state()
    a = preconditioner_loss(gammas, sigma, 6, noise_std=0.2, n_samples=500, seed=4)
    assert torch.equal(state, torch.get_rng_state())
    assert a == preconditioner_loss(gammas, sigma, 6, noise_std=0.2, n_samples=500, seed=4)
    # zero steps' worth of learning: Γ = 0 predicts 0, loss = tr(Σ Σ_w) + σ² exactly
    zero = torch.zeros(1, 2, 2, dtype=torch.float64)
    loss, se = preconditioner_loss(zero, sigma, 6, noise_std=0.2, n_samples=100, seed=0)
    assert math.isclose(loss, 3.0 + 0.04, rel_tol=1e-12) and se < 1e-12
    with pytest.raises(ValueError):
        preconditioner_loss(torch.zeros(2, 3, 3), sigma, 6)
