"""Gradient flow (`icgd.theory.flow`): closed forms, the one-layer LSA optimum, gradient
dominance and the monotone loss. SGD against the flow: tests/experiments/test_flow_comparison.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from icgd.core.rng import make_generator
from icgd.theory import (
    GaussianRegression,
    ahn_optimal_preconditioner,
    one_layer_loss,
    population_loss,
    sparse_heads,
)
from icgd.theory.flow import dominance_ratios, gradient_dominance, gradient_flow

F64 = torch.float64
H = torch.tensor([[1.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 3.0]], dtype=F64)
THETA0 = torch.tensor([1.0, -0.5, 0.7], dtype=F64)


def quadratic(theta):
    return 0.5 * theta @ H @ theta


@pytest.mark.parametrize("method", ["LSODA", "RK45"])
def test_quadratic_flow_is_the_matrix_exponential(method):
    """θ(t) = exp(−Ht) θ₀ for L = ½θᵀHθ, to the solver's tolerance."""
    times = torch.linspace(0.0, 10.0, 41, dtype=F64)
    flow = gradient_flow(quadratic, THETA0, 10.0, t_eval=times, rtol=1e-10, atol=1e-13,
                         method=method)  # fmt: skip
    assert flow.success, flow.message
    exact = torch.stack([torch.linalg.matrix_exp(-H * t) @ THETA0 for t in times])
    torch.testing.assert_close(flow.theta, exact, rtol=0, atol=1e-8)
    torch.testing.assert_close(flow.loss, 0.5 * torch.einsum("ti,ij,tj->t", exact, H, exact),
                               rtol=0, atol=1e-8)  # fmt: skip
    torch.testing.assert_close(flow.grad_norm_sq, ((exact @ H) ** 2).sum(-1), rtol=0, atol=1e-8)


def test_quadratic_gradient_dominance_is_twice_the_smallest_eigenvalue():
    """‖Hθ‖² / (½θᵀHθ) = 2 θᵀH²θ / θᵀHθ ≥ 2 λ_min(H) (Rayleigh quotient of H in the H-weighted
    inner product), with equality in the limit as θ(t) aligns with the slowest eigenvector:
    the deviation decays like e^{−2(λ₂ − λ₁)t} while L decays like e^{−2λ₁t}, so at t = 60 the
    ratio equals 2λ_min to ~1e-12 well before L − L* reaches the default floor (1e-10 L(θ₀))."""
    times = torch.linspace(0.0, 60.0, 601, dtype=F64)
    flow = gradient_flow(quadratic, THETA0, 60.0, t_eval=times, rtol=1e-10, atol=1e-15)
    lam_min = float(torch.linalg.eigvalsh(H)[0])
    mu, t_min = gradient_dominance(flow, 0.0)
    ratio, floor = dominance_ratios(flow, 0.0)
    kept = ratio[~ratio.isnan()]
    assert bool((kept >= 2 * lam_min * (1 - 1e-9)).all())
    assert math.isclose(mu, 2 * lam_min, rel_tol=1e-7), (mu, 2 * lam_min, t_min)
    assert floor == pytest.approx(1e-10 * float(flow.loss[0]))
    with pytest.raises(ValueError, match="loss_star is too high"):
        gradient_dominance(flow, 0.1)


SIGMA = torch.diag(torch.tensor([1.0, 0.5, 0.25], dtype=F64))
N, NOISE = 10, 0.5


def one_layer(params):
    P, Q = sparse_heads(params["A"])
    return population_loss(P, Q, GaussianRegression(SIGMA, N, noise_std=NOISE))[0]


@pytest.fixture(scope="module")
def lsa_flow():
    """Gradient flow of one sparse LSA layer (Γ = Aᵀ) from a small init, exact population loss.
    The loss is a strongly convex quadratic in Γ with smallest curvature ≈ 0.06 here, so
    ‖Γ(t) − Γ*‖ ≲ e^{−0.06 t}: t = 400 leaves ~1e-9."""
    gen = make_generator(0)
    A0 = 1e-3 * torch.randn(1, 1, 3, 3, generator=gen, dtype=F64)
    times = torch.linspace(0.0, 400.0, 201, dtype=F64)
    return gradient_flow(one_layer, {"A": A0}, 400.0, t_eval=times, hessian=True)


def test_one_layer_lsa_flow_ends_at_the_closed_form_optimum(lsa_flow):
    """Γ(∞) = Γ* = ((1 + 1/n)Σ + ((tr Σ + σ²)/n) I)⁻¹ (Ahn et al. Thm 1; Zhang–Frei–Bartlett's
    gradient-flow limit Γ⁻¹), and the loss there is the closed form `one_layer_loss(Γ*)`."""
    assert lsa_flow.success, lsa_flow.message
    gamma = lsa_flow.at(-1)["A"][0, 0].T
    gamma_star = ahn_optimal_preconditioner(SIGMA, N, NOISE)
    torch.testing.assert_close(gamma, gamma_star, rtol=0, atol=1e-6)
    loss_star = one_layer_loss(gamma_star, SIGMA, N, NOISE)
    assert float(lsa_flow.loss[-1]) == pytest.approx(loss_star, rel=1e-10, abs=1e-12)
    assert lsa_flow.theta["A"].shape == (201, 1, 1, 3, 3)
    mu, _ = gradient_dominance(lsa_flow, loss_star)
    assert mu > 0


def test_loss_decreases_monotonically_along_the_flow(lsa_flow):
    """dL/dt = −‖∇L‖² ≤ 0: the recorded losses never rise beyond float64 rounding."""
    rises = lsa_flow.loss.diff()
    assert float(rises.max()) <= 1e-13 * float(lsa_flow.loss[0]), float(rises.max())
    assert float(lsa_flow.loss[-1]) < 0.5 * float(lsa_flow.loss[0])
