"""Whitened Wishart moments: exact low moments vs Monte Carlo, determinism, SE plumbing."""

import math

import pytest
import torch

from icgd.theory.wishart import WishartMoments, whitened_wishart_moments


def exact_moments(n: int, d: int) -> list[float]:
    """m_0..m_3 of S̃ = GᵀG/n (real Wishart; m_2 from E S̃² = ((n+1)/n + d/n) I)."""
    return [
        d,
        d,
        d * (n + d + 1) / n,
        d * (n**2 + d**2 + 3 * n * d + 3 * n + 3 * d + 4) / n**2,
    ]


@pytest.mark.parametrize(("n", "d"), [(20, 5), (4, 6), (1, 1)])
def test_low_moments_match_exact(n, d):
    mom = whitened_wishart_moments(n, d, 3, n_samples=20_000, seed=1)
    assert mom.moments.dtype == torch.float64 and mom.samples.shape == (20_000, 4)
    assert mom.moments[0].item() == d  # tr(I) exactly
    se = mom.samples.std(dim=0) / math.sqrt(mom.n_samples)
    for k, exact in enumerate(exact_moments(n, d)[1:], start=1):
        err = abs(mom.moments[k].item() - exact)
        assert err < 4 * se[k].item(), f"m_{k}: {mom.moments[k].item()} vs {exact}, SE {se[k]:.3g}"


def test_exact_m3_formula_reduces_to_chi_square():
    # d = 1: n S̃ ~ χ²_n, E χ⁶ = n(n+2)(n+4)
    for n in (1, 3, 10):
        assert math.isclose(exact_moments(n, 1)[3] * n**3, n * (n + 2) * (n + 4))


def test_determinism_and_seed_dependence():
    a = whitened_wishart_moments(6, 3, 4, n_samples=10_000, seed=7)
    b = whitened_wishart_moments(6, 3, 4, n_samples=10_000, seed=7)
    c = whitened_wishart_moments(6, 3, 4, n_samples=10_000, seed=8)
    torch.testing.assert_close(a.samples, b.samples, rtol=0, atol=0)
    assert not torch.equal(a.samples, c.samples)


def test_global_rng_untouched():
    state = torch.get_rng_state()
    whitened_wishart_moments(5, 2, 2, n_samples=100, seed=0)
    assert torch.equal(state, torch.get_rng_state())


def test_expectation_and_order_checks():
    mom = whitened_wishart_moments(8, 3, 2, n_samples=5_000, seed=0)
    assert isinstance(mom, WishartMoments) and mom.max_order == 2
    mean, se = mom.expectation(torch.tensor([1.0, -2.0, 1.0]))  # E Σ (1 − λ)²
    direct = mom.samples[:, 0] - 2 * mom.samples[:, 1] + mom.samples[:, 2]
    assert math.isclose(mean, direct.mean().item(), rel_tol=1e-12)
    assert math.isclose(se, (direct.std() / math.sqrt(5_000)).item(), rel_tol=1e-12)
    # E Σ (1 − λ)² = d − 2 m_1 + m_2 = d (d + 1)/n
    assert abs(mean - 3 * 4 / 8) < 4 * se, f"{mean} vs {12 / 8}, SE {se:.3g}"
    with pytest.raises(ValueError, match="order 3"):
        mom.expectation(torch.ones(4))
    with pytest.raises(ValueError):
        whitened_wishart_moments(0, 3, 2)
