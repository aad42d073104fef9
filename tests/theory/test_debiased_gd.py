"""Debiased one-step GD: m* and the exact risk against Monte Carlo (within 4 SE), the parabola's
minimum, and the comparison with plain GD's optimal step."""

from __future__ import annotations

import math

import pytest
import torch

from icgd.theory import debiased_one_step_floor, debiased_one_step_risk, m_star

M_DRAWS = 400_000


def _draws(n: int, d: int, w_scale: float, noise_std: float, seed: int):
    """(y_q, g) for M_DRAWS prompts: g = x_qᵀ (1/n) Σ_ℓ y_ℓ (x_ℓ − x̄), w ~ N(0, w_scale² I)."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(M_DRAWS, n, d, generator=gen, dtype=torch.float64)
    x_q = torch.randn(M_DRAWS, d, generator=gen, dtype=torch.float64)
    w = w_scale * torch.randn(M_DRAWS, d, generator=gen, dtype=torch.float64)
    y = torch.einsum("bnd,bd->bn", X, w) + noise_std * torch.randn(
        M_DRAWS, n, generator=gen, dtype=torch.float64
    )
    y_q = (x_q * w).sum(-1) + noise_std * torch.randn(M_DRAWS, generator=gen, dtype=torch.float64)
    v = torch.einsum("bn,bnd->bd", y, X - X.mean(1, keepdim=True)) / n
    return y_q, (v * x_q).sum(-1)


CASES = [(6, 4, 1.0, 0.5), (20, 5, 1.0, 0.1), (3, 8, 0.5, 1.0)]


@pytest.mark.parametrize(("n", "d", "w_scale", "noise_std"), CASES)
def test_mc_risk_is_minimised_at_m_star(n, d, w_scale, noise_std):
    b = d * w_scale**2
    y_q, g = _draws(n, d, w_scale, noise_std, seed=n + d)
    ms = m_star(n, d, b, noise_std)
    # The MC risk mean((y_q − m g)²) is a parabola in m minimised at ⟨y_q, g⟩/⟨g, g⟩; its SE by
    # the delta method: (m̂ − m*) ≈ mean(g (y_q − m* g)) / E[g²].
    m_hat = float((y_q * g).sum() / (g * g).sum())
    se = float((g * (y_q - ms * g)).std() / math.sqrt(M_DRAWS) / g.square().mean())
    assert abs(m_hat - ms) <= 4 * se, (m_hat, ms, se)
    # and the exact risk curve matches the MC risk at several steps, each within 4 SE
    for m in (0.0, 0.5 * ms, ms, 1.5 * ms):
        sq = (y_q - m * g).square()
        mc, se_r = float(sq.mean()), float(sq.std() / math.sqrt(M_DRAWS))
        exact = debiased_one_step_risk(m, n, d, b, noise_std)
        assert abs(mc - exact) <= 4 * se_r, (m, mc, exact, se_r)


def test_floor_is_the_minimum_of_the_parabola():
    n, d, b, s = 20, 5, 5.0, 0.1
    ms = m_star(n, d, b, s)
    assert ms == pytest.approx(100 / (100 + 5 * 5.01), rel=1e-15)
    floor = debiased_one_step_floor(n, d, b, s)
    assert floor == pytest.approx(debiased_one_step_risk(ms, n, d, b, s), rel=1e-12)
    for dm in (-1e-3, 1e-3, 0.1):
        assert debiased_one_step_risk(ms + dm, n, d, b, s) > floor
    # centring trades plain GD's (d+1) b for d b: m* exceeds plain GD's optimum n b/(n b + (d+1) b
    # + d σ²), and tends to 1 as n → ∞
    assert ms > n * b / (n * b + (d + 1) * b + d * s**2)
    assert m_star(10**7, d, b, s) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    ("args", "field"), [((1, 5, 5.0), "n"), ((5, 0, 5.0), "d"), ((5, 5, 0.0), "b")]
)
def test_bad_arguments_are_named(args, field):
    with pytest.raises(ValueError, match=field):
        m_star(*args)
