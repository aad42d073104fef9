"""The looped loss over full whitened preconditioners (`icgd.theory.landscape`) and the closed
form of its antisymmetric curvature (`icgd.theory.skew`)."""

from __future__ import annotations

import math

import pytest
import torch

from icgd.theory import (
    GaussianRegression,
    looped_loss,
    optimal_loop_scale,
    population_loss,
    skew_curvature,
    sparse_heads,
)
from icgd.theory.landscape import (
    loss_gap,
    minimise_looped_loss,
    whitened_draws,
    whitened_gradient,
    whitened_loss,
)
from icgd.theory.skew import skew_curvature_from_eigenvalues, skew_curvature_limit
from icgd.theory.wishart import whitened_eigenvalues, whitened_wishart_moments

F64 = torch.float64


def _random_gamma(d: int, seed: int, scale: float = 0.7) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.eye(d, dtype=F64) + 0.1 * torch.randn(d, d, generator=g, dtype=F64)


def test_whitened_loss_is_the_population_loss_of_the_sparse_looped_model():
    """Σ = I, w* ~ N(0, I), σ = 0: the sparse looped model with A = Γᵀ on the same X draws."""
    L, n, d, S = 3, 12, 4, 5000
    gamma = _random_gamma(d, 1)
    value, se = whitened_loss(gamma, L, whitened_draws(n, d, S, seed=3))
    P, Q = sparse_heads(gamma.T.reshape(1, 1, d, d))
    data = GaussianRegression(sigma=torch.eye(d, dtype=F64), n=n)
    expected, expected_se = population_loss(
        P, Q, data, n_loops=L, method="given_x", n_samples=S, seed=3
    )
    assert float(value) == pytest.approx(float(expected), abs=1e-10)
    assert float(se) == pytest.approx(float(expected_se), rel=1e-8)


def test_at_a_multiple_of_identity_it_is_the_polynomial_in_wishart_moments():
    """Γ = a·I: ``E Σ_j (1 − aλ_j)^{2L}`` (`looped_loss`) on the same single chunk of draws."""
    L, n, d, S, a = 4, 20, 5, 4000, 0.8
    value, _ = whitened_loss(a * torch.eye(d, dtype=F64), L, whitened_draws(n, d, S, seed=7))
    moments = whitened_wishart_moments(n, d, 2 * L, n_samples=S, seed=7)
    assert float(value) == pytest.approx(looped_loss(a, L, n, d, moments=moments)[0], abs=1e-10)


@pytest.mark.parametrize("L", [1, 2, 3, 5])
def test_gradient_agrees_with_autograd_and_finite_differences(L):
    n, d = 9, 3
    draws = whitened_draws(n, d, 3000, seed=2)
    gamma = _random_gamma(d, L, scale=0.5)
    leaf = gamma.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(whitened_loss(leaf, L, draws)[0], leaf)
    value, grad = whitened_gradient(gamma, L, draws)
    assert value == pytest.approx(float(whitened_loss(gamma, L, draws)[0]), abs=1e-12)
    torch.testing.assert_close(grad, auto, rtol=1e-10, atol=1e-12)
    h, E = 1e-6, torch.zeros(d, d, dtype=F64)
    E[0, 2] = 1.0
    central = (
        whitened_gradient(gamma + h * E, L, draws)[0]
        - whitened_gradient(gamma - h * E, L, draws)[0]
    ) / (2 * h)
    assert float(grad[0, 2]) == pytest.approx(central, rel=1e-6)


def test_the_gradient_does_not_depend_on_the_thread_count():
    """Fixed chunks summed in order: one thread and two give the same bits (same seed, same
    minimiser on any machine)."""
    draws = whitened_draws(8, 4, 10_000, seed=5)  # three chunks
    gamma = _random_gamma(4, 3, scale=0.6)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = whitened_gradient(gamma, 3, draws)
        torch.set_num_threads(2)
        two = whitened_gradient(gamma, 3, draws)
    finally:
        torch.set_num_threads(before)
    assert one[0] == two[0]
    assert torch.equal(one[1], two[1])


def test_batches_of_gammas_and_the_paired_gap():
    n, d, L = 10, 3, 2
    draws = whitened_draws(n, d, 2000, seed=4)
    g1, g2 = _random_gamma(d, 1), _random_gamma(d, 2)
    batch, _ = whitened_loss(torch.stack([g1, g2]), L, draws)
    assert float(batch[0]) == pytest.approx(float(whitened_loss(g1, L, draws)[0]), abs=1e-12)
    gap, se = loss_gap(g1, g2, L, draws)
    assert gap == pytest.approx(float(batch[0] - batch[1]), abs=1e-12)
    assert 0 < se < abs(float(batch[0])) / 10


def test_the_law_is_rotation_invariant_within_its_standard_error():
    """``f(RΓRᵀ) = f(Γ)`` in expectation; on independent draws the paired difference is noise."""
    n, d, L = 10, 4, 3
    gamma = _random_gamma(d, 5)
    R, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(9), dtype=F64))
    gap, se = loss_gap(R @ gamma @ R.T, gamma, L, whitened_draws(n, d, 40_000, seed=11))
    assert abs(gap) < 4 * se


def test_one_loop_minimiser_is_the_closed_form_on_the_draws():
    """L = 1: ``f(Γ) = E‖I − ΓS̃‖²`` is quadratic, minimised by ``E[S̃] E[S̃²]⁻¹`` (sample means)."""
    n, d = 8, 3
    draws = whitened_draws(n, d, 4000, seed=1)
    expected = draws.mean(0) @ torch.linalg.inv((draws @ draws).mean(0))
    found = minimise_looped_loss(torch.zeros(d, d, dtype=F64), 1, draws)
    torch.testing.assert_close(found.gamma, expected, rtol=1e-6, atol=1e-7)
    assert found.success and found.grad_norm < 1e-8


def test_where_c_is_negative_the_minimiser_leaves_the_scalar_matrices_and_wins():
    """(L, n, d) = (3, 64, 3): c < 0 (checked), so from near a*·I the loss falls below a*·I's on
    fresh draws, and the minimiser has a complex spectrum (a rotation)."""
    L, n, d = 3, 64, 3
    a = optimal_loop_scale(L, n, d, n_samples=20_000).a
    c = skew_curvature_from_eigenvalues(L, a, whitened_eigenvalues(n, d, 10_000, seed=3))
    assert c.curvature < -4 * c.se
    eye = torch.eye(d, dtype=F64)
    start = a * eye + 0.01 * torch.randn(
        d, d, generator=torch.Generator().manual_seed(0), dtype=F64
    )
    found = minimise_looped_loss(start, L, whitened_draws(n, d, 4000, seed=5))
    gap, se = loss_gap(found.gamma, a * eye, L, whitened_draws(n, d, 40_000, seed=6))
    assert gap < -4 * se
    assert found.antisymmetric_share > 0.05
    assert torch.linalg.eigvals(found.gamma).imag.abs().max() > 0.05


@pytest.mark.parametrize(("L", "n", "d"), [(3, 20, 5), (3, 80, 5), (2, 20, 3), (4, 40, 6)])
def test_closed_form_curvature_matches_finite_differences(L, n, d):
    """The eigenvalue formula and `skew_curvature` (finite differences) on independent draws."""
    a = optimal_loop_scale(L, n, d, n_samples=20_000).a
    closed = skew_curvature_from_eigenvalues(L, a, whitened_eigenvalues(n, d, 20_000, seed=1))
    fd = skew_curvature(L, n, d, a, n_samples=20_000, seed=2)
    assert abs(closed.curvature - fd.curvature) < 4 * math.hypot(closed.se, fd.se)


def test_one_loop_curvature_is_exact():
    """L = 1: ``f'' = 2 E‖KS̃‖² = 2 tr(KᵀK E[S̃²]) = 2 (n + d + 1)/n`` for a unit K."""
    n, d = 7, 4
    c = skew_curvature_from_eigenvalues(1, 0.5, whitened_eigenvalues(n, d, 20_000, seed=0))
    assert abs(c.curvature - 2 * (n + d + 1) / n) < 4 * c.se


def test_large_n_limit():
    """L = 2: the limit is exactly −4 for every d; L = 3: n²·c moves towards its limit."""
    for d in (2, 3, 6):
        C, se = skew_curvature_limit(2, d, n_samples=40_000, seed=d)
        assert abs(C + 4.0) < 4 * se
    C3, _ = skew_curvature_limit(3, 3, n_samples=40_000, seed=1)
    scaled = []
    for n in (40, 1000):
        a = optimal_loop_scale(3, n, 3, n_samples=20_000).a
        c = skew_curvature_from_eigenvalues(3, a, whitened_eigenvalues(n, 3, 5000, seed=n))
        scaled.append(c.curvature * n**2)
    assert abs(scaled[1] - C3) < abs(scaled[0] - C3)
    assert C3 < 0 and scaled[1] < 0


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError):
        whitened_draws(0, 3)
    with pytest.raises(ValueError):
        skew_curvature_limit(2, 1)
    with pytest.raises(ValueError):
        whitened_loss(torch.eye(2, dtype=F64), 0, whitened_draws(3, 2, 10))
