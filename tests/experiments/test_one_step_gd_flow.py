"""`one-step-gd`, ZFB Thm 4.1: the population gradient flow of one LSA layer from Zhang–Frei–
Bartlett's initialisation ends at their Γ⁻¹ (`icgd.experiments.one_step_gd.flow`).

The end point is checked against the formula (`zfb_gamma`) at several (d, n, Λ, σ), non-identity
and rotated Λ included; the two-block parametrisation is checked to be the full model's flow (the
other blocks get exactly zero gradient on ZFB's set); the claim is checked to fail when the end
point is moved."""

from __future__ import annotations

import math
from functools import cache

import pytest
import torch

from icgd.core.rng import make_generator
from icgd.experiments.one_step_gd import OneStepGD, OneStepGDConfig
from icgd.experiments.one_step_gd.config import FlowConfig
from icgd.experiments.one_step_gd.flow import (
    flow_claim,
    preconditioner,
    rate_bounds,
    rel_distance,
    zfb_flow,
    zfb_heads,
    zfb_init,
)
from icgd.theory import one_layer_loss, zfb_gamma
from icgd.theory.population import (
    GaussianRegression,
    PopulationDraws,
    population_draws,
    population_loss,
)

F64 = torch.float64
TOL = OneStepGDConfig().tolerances.flow_gamma_rel


def _rotated(eigenvalues, seed: int) -> torch.Tensor:
    """U diag(λ) Uᵀ with U a fixed random orthogonal matrix (QR of a Gaussian one)."""
    d = len(eigenvalues)
    q, r = torch.linalg.qr(torch.randn(d, d, generator=make_generator(seed), dtype=F64))
    u = q * torch.sign(torch.diagonal(r))
    return u @ torch.diag(torch.tensor(eigenvalues, dtype=F64)) @ u.T


SETTINGS = {
    "diagonal, noiseless": (torch.diag(torch.tensor([1.0, 0.3], dtype=F64)), 5, 0.0),
    "rotated, noisy": (_rotated([1.0, 0.5, 0.25], seed=3), 10, 0.3),
    "identity, d = 4": (torch.eye(4, dtype=F64), 40, 0.0),
}


@cache
def _flow(name: str):
    """`(flow, target, λ)` of the default `FlowConfig` at SETTINGS[name], Θ from seed 1 (once)."""
    sigma, n, noise = SETTINGS[name]
    return zfb_flow(sigma, n, noise, FlowConfig(), make_generator(1))


@pytest.mark.parametrize("name", list(SETTINGS))
def test_flow_ends_at_zfb_gamma_inverse(name):
    sigma, n, noise = SETTINGS[name]
    flow, target, slow = _flow(name)
    assert flow.success, flow.message
    torch.testing.assert_close(target, torch.linalg.inv(zfb_gamma(sigma, n, noise)))
    end = flow.at(-1)
    distance = float(rel_distance(preconditioner(end), target))
    assert distance <= TOL, distance
    # Tolerance sanity: ZFB's Γ at n + 1 instead of n is already far outside it.
    assert float(rel_distance(torch.linalg.inv(zfb_gamma(sigma, n + 1, noise)), target)) > 100 * TOL
    # Balanced limit c² = ‖A‖_F² = ‖Γ⁻¹‖_F (c² − ‖A‖² is conserved and 0 at ZFB's init).
    c = float(end["c"][0])
    assert c == pytest.approx(float(torch.linalg.matrix_norm(target)) ** 0.5, rel=1e-6)
    assert abs(c**2 - float(end["A"].square().sum())) < 1e-6 * c**2
    # The loss never increases along the flow and ends at the closed-form optimum.
    loss_star = one_layer_loss(target, sigma, n, noise_std=noise)
    assert bool((flow.loss.diff() <= 1e-12 * flow.loss[0]).all())
    assert float(flow.loss[-1]) == pytest.approx(loss_star, rel=1e-12, abs=1e-13)
    assert float(flow.loss[0]) > loss_star + 0.1
    # The flow ran for `relaxation_times` of the slowest-rate bound.
    assert float(flow.t[-1]) == pytest.approx(FlowConfig().relaxation_times / slow)


def test_slowest_rate_bound_holds_on_the_trajectory():
    """Where the distance is in [1e-8, 1e-3] (linear regime, above the solver's error floor),
    the measured rate −d ln‖Γ(t) − Γ⁻¹‖/dt is at least the closed-form lower bound λ."""
    sigma, n, noise = SETTINGS["diagonal, noiseless"]
    flow, target, slow = _flow("diagonal, noiseless")
    dist = rel_distance(preconditioner(flow.theta), target)
    window = torch.nonzero((dist > 1e-8) & (dist < 1e-3)).flatten()
    assert len(window) >= 5
    i, j = int(window[0]), int(window[-1])
    rate = math.log(float(dist[i] / dist[j])) / float(flow.t[j] - flow.t[i])
    assert rate >= slow, (rate, slow)
    _, kappa = rate_bounds(sigma, n, noise)
    assert 1 <= kappa < 1e4


def test_two_blocks_are_the_full_model_on_zfbs_set():
    """At a point of ZFB's set (value's x-entries and key-query's label row 0, inert blocks 0) the
    gradient of the full model's loss in every other entry is zero: inert entries exactly, the
    off-diagonal blocks up to rounding with antithetic draws (w*, ε) ↔ (−w*, −ε), which make the
    w* → −w* symmetry exact on the sample. Off the set the same gradient is not zero."""
    d, n = 3, 8
    sigma = _rotated([1.0, 0.6, 0.2], seed=4)
    data = GaussianRegression(sigma=sigma, n=n, noise_std=0.2)
    base = population_draws(n, d, n_samples=512, seed=5)
    draws = PopulationDraws(
        g=torch.cat([base.g, base.g]),
        xi=torch.cat([base.xi, -base.xi]),
        eps=torch.cat([base.eps, -base.eps]),
    )
    params = zfb_init(d, 0.7, make_generator(6))
    params["A"] = params["A"] + 0.3 * torch.randn(d, d, generator=make_generator(7), dtype=F64)

    def full_gradient(P, Q):
        P, Q = P.detach().requires_grad_(True), Q.detach().requires_grad_(True)
        loss, _ = population_loss(P, Q, data, method="monte_carlo", draws=draws)
        return torch.autograd.grad(loss, [P, Q])

    P, Q = zfb_heads(params)
    gP, gQ = full_gradient(P, Q)  # (1, 1, d+1, d+1) each
    assert bool((gP[..., :d, :] == 0).all()) and bool((gQ[..., :, d] == 0).all())
    scale = float(gQ[..., :d, :d].norm())
    assert scale > 1e-3 and abs(float(gP[..., d, d])) > 1e-3  # A and c move
    assert float(gP[..., d, :d].norm()) < 1e-12 * scale
    assert float(gQ[..., d, :d].norm()) < 1e-12 * scale
    off = P.clone()
    off[..., d, :d] = 0.2  # value's x-entries ≠ 0: the key-query label row is pushed
    _, gQ_off = full_gradient(off, Q)
    assert float(gQ_off[..., d, :d].norm()) > 1e-3 * scale


def test_claim_passes_at_the_end_point_and_fails_when_it_is_moved():
    config = OneStepGDConfig(setting="anisotropic")
    flow, target, _ = _flow("diagonal, noiseless")
    end = flow.at(-1)

    def claim(params):
        metrics = {"flow_gamma_rel_error": float(rel_distance(preconditioner(params), target))}
        return flow_claim(config, metrics)

    assert claim(end).passed
    for moved in (
        {"A": end["A"] * (1 + 1e-4), "c": end["c"]},
        {"A": end["A"], "c": end["c"] + 1e-5},
        {"A": end["A"].T.contiguous() + 1e-4 * torch.eye(2, dtype=F64), "c": end["c"]},
        zfb_init(2, 0.1, make_generator(1)),  # where the flow started
    ):
        result = claim(moved)
        assert not result.passed and result.measured > TOL, result
    # The claim is the last of the experiment's claims and reads only `flow_gamma_rel_error`.
    names = [c.name for c in OneStepGD().claims(config, _all_metrics(config, 1e-14))]
    assert names[-1] == "flow_ends_at_zfb_gamma"
    assert not OneStepGD().claims(config, _all_metrics(config, 2e-6))[-1].passed


def _all_metrics(config, flow_distance: float) -> dict:
    """Any metric a claim reads, set to 1 (claims that compare them pass), and the flow's."""

    class Ones(dict):
        def __missing__(self, key):
            return 1.0

    return Ones(flow_gamma_rel_error=flow_distance)
