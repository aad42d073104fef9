"""Model-vs-algorithm metrics (von Oswald et al. 2023): sensitivities, cosine, differences."""

from __future__ import annotations

import pytest
import torch

from icgd.algorithms import gradient_descent
from icgd.analysis import (
    compare,
    gd_prediction_fn,
    lsa_prediction_fn,
    model_cosine,
    model_difference,
    prediction_difference,
    prediction_rmse,
    query_sensitivity,
)
from icgd.constructions import lsa_from_gd_plus_plus, lsa_from_gd_step
from icgd.core.rng import make_generator

F64 = torch.float64
B, N, D = 24, 10, 6


@pytest.fixture(scope="module")
def problem():
    g = make_generator(3)
    X = 2 * torch.rand(B, N, D, generator=g, dtype=F64) - 1
    w = torch.randn(B, D, generator=g, dtype=F64)
    y = torch.einsum("bnd,bd->bn", X, w)
    x_q = 2 * torch.rand(B, D, generator=g, dtype=F64) - 1
    return X, y, x_q


def test_sensitivity_of_linear_predictor_is_its_weight(problem):
    X, y, x_q = problem
    w = torch.randn(B, D, generator=make_generator(1), dtype=F64)
    sens = query_sensitivity(lambda X, y, x_q: (x_q * w).sum(-1), X, y, x_q)
    assert sens.shape == (B, D)
    assert torch.equal(sens, w)


def test_constant_predictor_has_zero_sensitivity(problem):
    X, y, x_q = problem
    sens = query_sensitivity(lambda X, y, x_q: y.sum(-1), X, y, x_q)
    assert torch.equal(sens, torch.zeros(B, D, dtype=F64))


def test_gd_step_model_matches_gradient_descent(problem):
    X, y, x_q = problem
    eta = 0.8
    model_fn = lsa_prediction_fn(lsa_from_gd_step(D, eta))
    gd_fn = gd_prediction_fn(eta, 1)
    with torch.no_grad():
        pred_m, pred_g = model_fn(X, y, x_q), gd_fn(X, y, x_q)
    assert torch.allclose(pred_g, gradient_descent(X, y, eta, 1).predict(x_q)[-1])
    assert prediction_difference(pred_m, pred_g) < 1e-12
    assert prediction_rmse(pred_m, pred_g) < 1e-12
    s_m = query_sensitivity(model_fn, X, y, x_q)
    s_g = query_sensitivity(gd_fn, X, y, x_q)
    # one GD step is linear in x_q: ŷ = x_qᵀ w_1, so its sensitivity is w_1
    assert torch.allclose(s_g, gradient_descent(X, y, eta, 1).final, rtol=0, atol=1e-13)
    assert abs(model_cosine(s_m, s_g) - 1.0) < 1e-10
    assert model_difference(s_m, s_g) < 1e-10
    metrics = compare(model_fn, gd_fn, X, y, x_q)
    assert set(metrics) == {
        "prediction_difference",
        "prediction_rmse",
        "model_cosine",
        "model_difference",
    }
    assert abs(metrics["model_cosine"] - 1.0) < 1e-10 and metrics["prediction_difference"] < 1e-12


def test_negated_model_has_cosine_minus_one(problem):
    X, y, x_q = problem
    model_fn = lsa_prediction_fn(lsa_from_gd_step(D, 0.5))
    s = query_sensitivity(model_fn, X, y, x_q)
    s_neg = query_sensitivity(lambda X, y, x_q: -model_fn(X, y, x_q), X, y, x_q)
    assert abs(model_cosine(s, s_neg) + 1.0) < 1e-12
    assert abs(model_cosine(s, s) - 1.0) < 1e-12
    assert model_difference(s, s_neg) == pytest.approx(
        2 * torch.linalg.vector_norm(s, dim=-1).mean().item(), rel=1e-12
    )


def test_cosine_is_scale_invariant_and_difference_is_not(problem):
    g = make_generator(9)
    a, b = torch.randn(B, D, generator=g, dtype=F64), torch.randn(B, D, generator=g, dtype=F64)
    scale = torch.rand(B, 1, generator=g, dtype=F64) * 100 + 0.01  # positive, per prompt
    assert model_cosine(a * scale, b) == pytest.approx(model_cosine(a, b), abs=1e-12)
    assert model_cosine(a, 7.5 * b) == pytest.approx(model_cosine(a, b), abs=1e-12)
    assert -1.0 <= model_cosine(a, b) <= 1.0
    assert model_difference(3 * a, 3 * b) == pytest.approx(3 * model_difference(a, b), rel=1e-12)


def test_batched_sensitivity_equals_per_prompt_loop(problem):
    """A nonlinear (in x_q) model: the two-layer GD++ construction; loop in the test only."""
    X, y, x_q = problem
    fn = lsa_prediction_fn(lsa_from_gd_plus_plus(D, 0.6, 0.3))
    batched = query_sensitivity(fn, X, y, x_q)
    for b in range(B):
        x = x_q[b : b + 1].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(fn(X[b : b + 1], y[b : b + 1], x).sum(), x)
        assert torch.allclose(batched[b], grad[0], rtol=0, atol=1e-13)
    # and the per-prompt metrics average the per-prompt values
    s_g = query_sensitivity(gd_prediction_fn(0.6, 1), X, y, x_q)
    cosines = [
        torch.dot(batched[b], s_g[b]) / (batched[b].norm() * s_g[b].norm()) for b in range(B)
    ]
    assert model_cosine(batched, s_g) == pytest.approx(
        torch.stack(cosines).mean().item(), abs=1e-13
    )
    diffs = [(batched[b] - s_g[b]).norm() for b in range(B)]
    assert model_difference(batched, s_g) == pytest.approx(
        torch.stack(diffs).mean().item(), abs=1e-13
    )


def test_sensitivity_leaves_no_grads_and_works_under_no_grad(problem):
    X, y, x_q = problem
    model = lsa_from_gd_step(D, 0.5)
    model.requires_grad_(True)
    with torch.no_grad():
        sens = query_sensitivity(lsa_prediction_fn(model), X, y, x_q)
    assert not sens.requires_grad and sens.abs().sum() > 0
    assert model.P.grad is None and model.Q.grad is None
    assert not x_q.requires_grad


def test_bad_shapes_are_rejected():
    a = torch.zeros(4, dtype=F64)
    with pytest.raises(ValueError, match="predictions"):
        prediction_difference(a, torch.zeros(5, dtype=F64))
    with pytest.raises(ValueError, match="sensitivities"):
        model_cosine(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="fn must return"):
        query_sensitivity(
            lambda X, y, x_q: x_q, torch.zeros(2, 3, 4), torch.zeros(2, 3), torch.zeros(2, 4)
        )
