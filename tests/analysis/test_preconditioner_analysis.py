"""Analysis of trained LSA weights: distance to identity, whitening, effective preconditioners."""

from __future__ import annotations

import pytest
import torch

from icgd.analysis import distance_to_identity, effective_preconditioners, identity_scale, whiten
from icgd.analysis.looping import divergence_fraction, loop_squared_errors
from icgd.analysis.preconditioner import matrix_sqrt
from icgd.constructions import lsa_from_preconditioned_gd
from icgd.core.rng import make_generator
from icgd.models import LinearSelfAttention, LSAConfig
from icgd.tasks import LinearRegression, LinearRegressionConfig

F64 = torch.float64


def test_distance_is_the_minimum_over_alpha_and_scale_free():
    g = make_generator(0)
    M = torch.randn(5, 5, generator=g, dtype=F64)
    alphas = torch.linspace(-3, 3, 60001, dtype=F64)
    brute = (torch.linalg.matrix_norm(M - alphas[:, None, None] * torch.eye(5, dtype=F64))).min()
    assert float(distance_to_identity(M)) == pytest.approx(
        float(brute / torch.linalg.matrix_norm(M)), abs=1e-8
    )
    assert float(distance_to_identity(-7.5 * M)) == pytest.approx(
        float(distance_to_identity(M)), rel=1e-12
    )
    assert float(distance_to_identity(2.5 * torch.eye(4, dtype=F64))) == pytest.approx(
        0.0, abs=1e-15
    )
    assert float(identity_scale(M)) == pytest.approx(float(torch.trace(M) / 5), rel=1e-14)


def test_distance_is_batched():
    g = make_generator(1)
    Ms = torch.randn(3, 4, 6, 6, generator=g, dtype=F64)
    batched = distance_to_identity(Ms)
    assert batched.shape == (3, 4)
    torch.testing.assert_close(batched[2, 1], distance_to_identity(Ms[2, 1]), rtol=0, atol=0)


def test_whitening_a_multiple_of_inverse_covariance_gives_a_multiple_of_identity():
    task = LinearRegression(
        LinearRegressionConfig(d=5, covariance="rotated", eigenvalues=(1, 1, 0.25, 0.0625, 1)),
        rotation_seed=3,
        dtype=F64,
    )
    whitened = whiten(0.7 * task.sigma_inv, task.sigma)
    torch.testing.assert_close(whitened, 0.7 * torch.eye(5, dtype=F64), rtol=0, atol=1e-12)
    root = matrix_sqrt(task.sigma)
    torch.testing.assert_close(root @ root, task.sigma, rtol=0, atol=1e-12)
    assert float(distance_to_identity(task.sigma_inv)) > 0.5  # anisotropic: far from I


@pytest.mark.parametrize("parametrisation", ["sparse", "full"])
def test_effective_preconditioner_reads_back_the_construction(parametrisation):
    g = make_generator(2)
    gammas = 0.3 * torch.eye(4, dtype=F64) + 0.1 * torch.randn(3, 4, 4, generator=g, dtype=F64)
    model = lsa_from_preconditioned_gd(gammas, parametrisation=parametrisation)
    torch.testing.assert_close(
        effective_preconditioners(*model.layer_matrices()), gammas, rtol=0, atol=1e-14
    )


def test_effective_preconditioner_sums_heads_and_predicts_one_step():
    """One sparse layer with two heads predicts x_qᵀ Γ (1/n) Xᵀ y with Γ = Σ_h A_hᵀ."""
    model = LinearSelfAttention(
        LSAConfig(d=3, n_layers=1, parametrisation="sparse", n_heads=2, init_std=0.5),
        generator=make_generator(4),
        dtype=F64,
    )
    gamma = effective_preconditioners(*model.layer_matrices())[0]
    torch.testing.assert_close(gamma, model.A[0].sum(0).T)
    task = LinearRegression(LinearRegressionConfig(d=3, n=7), dtype=F64)
    batch = task.sample(5, make_generator(5))
    expected = torch.einsum("bd,de,bne,bn->b", batch.x_q, gamma, batch.X, batch.y) / 7
    torch.testing.assert_close(model.predict(batch.prompt()), expected, rtol=0, atol=1e-12)


def test_loop_squared_errors_equal_separate_runs():
    model = LinearSelfAttention(
        LSAConfig(d=3, n_layers=2, looped=True, parametrisation="sparse_u", init_std=0.2),
        generator=make_generator(6),
        dtype=F64,
    )
    batch = LinearRegression(LinearRegressionConfig(d=3, n=9), dtype=F64).sample(
        11, make_generator(7)
    )
    Z = batch.prompt()
    errors = loop_squared_errors(model, Z, batch.y_q, [1, 2, 5])
    for row, K in zip(errors, [1, 2, 5], strict=True):
        torch.testing.assert_close(
            row, (model.predict(Z, n_loops=K).detach() - batch.y_q) ** 2, rtol=0, atol=1e-12
        )


def test_divergence_fraction_bounds_and_criterion():
    X = (
        LinearRegression(LinearRegressionConfig(d=4, n=16), dtype=F64)
        .sample(400, make_generator(8))
        .X
    )
    assert divergence_fraction(torch.zeros(4, 4, dtype=F64), X) == 0.0  # ρ(I) = 1, not > 1
    assert divergence_fraction(0.1 * torch.eye(4, dtype=F64), X) == 0.0
    assert divergence_fraction(50.0 * torch.eye(4, dtype=F64), X) == 1.0
    # For Γ = aI the criterion is a·λ_max(Ŝ) > 2.
    a = 0.9
    S_hat = X.transpose(1, 2) @ X / 16
    expected = float((a * torch.linalg.eigvalsh(S_hat)[:, -1] > 2).double().mean())
    assert 0 < expected < 1
    assert divergence_fraction(a * torch.eye(4, dtype=F64), X) == pytest.approx(expected)
