"""Tests of (preconditioned) gradient descent on the in-context least-squares risk, in float64."""

from __future__ import annotations

import pytest
import torch

from icgd.algorithms import (
    GDResult,
    best_step_size,
    empirical_risk_gradient,
    gradient_descent,
    ols,
    preconditioned_gd,
)

F64 = torch.float64


def regression_data(B=6, n=12, d=4, seed=0, noise=0.1):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(B, n, d, generator=g, dtype=F64)
    w = torch.randn(B, d, generator=g, dtype=F64)
    y = torch.einsum("bnd,bd->bn", X, w) + noise * torch.randn(B, n, generator=g, dtype=F64)
    x_q = torch.randn(B, d, generator=g, dtype=F64)
    y_q = (x_q * w).sum(-1) + noise * torch.randn(B, generator=g, dtype=F64)
    return X, y, x_q, y_q


def naive_pgd(X, y, gammas):
    """Reference: loop over prompts and steps; gammas[l][b] is Γ_l for prompt b."""
    B, n, d = X.shape
    out = torch.zeros(len(gammas) + 1, B, d, dtype=X.dtype)
    for b in range(B):
        w = torch.zeros(d, dtype=X.dtype)
        for l, gamma in enumerate(gammas):
            grad = sum((X[b, i] @ w - y[b, i]) * X[b, i] for i in range(n)) / n
            w = w - gamma[b] @ grad
            out[l + 1, b] = w
    return out


def test_gradient_matches_autograd():
    X, y, _, _ = regression_data()
    w = torch.randn(6, 4, dtype=F64, generator=torch.Generator().manual_seed(1)).requires_grad_()
    risk = ((torch.einsum("bnd,bd->bn", X, w) - y).square().sum(-1) / (2 * X.shape[1])).sum()
    (auto,) = torch.autograd.grad(risk, w)
    torch.testing.assert_close(empirical_risk_gradient(X, y, w.detach()), auto, rtol=0, atol=1e-13)
    # the Ŝ w − (1/n) Xᵀ y form
    S_hat = X.transpose(1, 2) @ X / 12
    explicit = torch.einsum("bij,bj->bi", S_hat, w.detach()) - torch.einsum("bnd,bn->bd", X, y) / 12
    torch.testing.assert_close(
        empirical_risk_gradient(X, y, w.detach()), explicit, rtol=0, atol=1e-13
    )


def test_inverse_covariance_preconditioner_reaches_ols_in_one_step():
    X, y, _, _ = regression_data(n=20, d=5)
    S_hat = X.transpose(1, 2) @ X / 20  # (B, d, d)
    result = preconditioned_gd(X, y, torch.linalg.inv(S_hat)[None])  # (1, B, d, d)
    assert result.weights.shape == (2, 6, 5)
    assert (result.weights[0] == 0).all()
    torch.testing.assert_close(result.weights[1], ols(X, y), rtol=0, atol=1e-10)


def test_gd_with_small_step_converges_to_ols():
    X, y, _, _ = regression_data(n=40, d=5)
    S_hat = X.transpose(1, 2) @ X / 40
    eta = 1.0 / torch.linalg.eigvalsh(S_hat).max().item()  # below 2/λ_max for every prompt
    result = gradient_descent(X, y, eta, n_steps=400)
    assert result.weights.shape == (401, 6, 5)
    torch.testing.assert_close(result.final, ols(X, y), rtol=0, atol=1e-10)
    # the risk decreases monotonically along the path (η ≤ 1/λ_max)
    risks = (torch.einsum("lbd,bnd->lbn", result.weights, X) - y).square().mean(-1)  # (L+1, B)
    assert (risks[1:] <= risks[:-1] + 1e-14).all()


def test_per_step_and_per_prompt_preconditioners_match_naive_loop():
    X, y, _, _ = regression_data(B=3, n=7, d=3, seed=2)
    g = torch.Generator().manual_seed(3)
    L = 3
    per_prompt = 0.3 * torch.randn(L, 3, 3, 3, generator=g, dtype=F64)  # non-symmetric Γ_{l,b}
    result = preconditioned_gd(X, y, per_prompt)
    reference = naive_pgd(X, y, [per_prompt[l] for l in range(L)])
    torch.testing.assert_close(result.weights, reference, rtol=0, atol=1e-12)

    shared = 0.3 * torch.randn(L, 3, 3, generator=g, dtype=F64)  # (L, d, d)
    result = preconditioned_gd(X, y, shared)
    reference = naive_pgd(X, y, [shared[l].expand(3, 3, 3) for l in range(L)])
    torch.testing.assert_close(result.weights, reference, rtol=0, atol=1e-12)
    expanded = preconditioned_gd(X, y, shared[:, None].expand(L, 3, 3, 3))
    torch.testing.assert_close(result.weights, expanded.weights, rtol=0, atol=1e-14)


def test_w0_and_zero_steps():
    X, y, _, _ = regression_data()
    w0 = torch.ones(6, 4, dtype=F64)
    result = preconditioned_gd(X, y, torch.zeros(0, 4, 4, dtype=F64), w0=w0)
    assert result.weights.shape == (1, 6, 4)
    assert torch.equal(result.weights[0], w0)
    step = preconditioned_gd(X, y, 0.1 * torch.eye(4, dtype=F64)[None], w0=w0)
    torch.testing.assert_close(
        step.final, w0 - 0.1 * empirical_risk_gradient(X, y, w0), rtol=0, atol=1e-14
    )


def test_gradient_descent_step_schedule_equals_scaled_identity_preconditioners():
    X, y, _, _ = regression_data()
    etas = torch.tensor([0.5, 0.2, 0.9], dtype=F64)
    plain = gradient_descent(X, y, etas)
    eye = torch.eye(4, dtype=F64)
    precond = preconditioned_gd(X, y, etas[:, None, None] * eye)
    torch.testing.assert_close(plain.weights, precond.weights, rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match="n_steps"):
        gradient_descent(X, y, 0.1)
    with pytest.raises(ValueError, match="n_steps"):
        gradient_descent(X, y, etas, n_steps=2)
    with pytest.raises(ValueError, match="preconditioners"):
        preconditioned_gd(X, y, torch.zeros(2, 3, 3, dtype=F64))


def test_predict_shape_and_values():
    X, y, x_q, _ = regression_data()
    result = gradient_descent(X, y, 0.3, n_steps=5)
    assert isinstance(result, GDResult)
    pred = result.predict(x_q)
    assert pred.shape == (6, 6)  # (L+1, B)
    assert (pred[0] == 0).all()
    torch.testing.assert_close(pred[3], (result.weights[3] * x_q).sum(-1), rtol=0, atol=1e-14)


def query_loss(X, y, x_q, y_q, eta, n_steps, preconditioner=None):
    d = X.shape[-1]
    P = torch.eye(d, dtype=F64) if preconditioner is None else preconditioner
    result = preconditioned_gd(X, y, (eta * P).expand(n_steps, d, d))
    return (result.predict(x_q)[-1] - y_q).square().mean().item()


def test_best_step_size_one_step_matches_closed_form():
    """One step from 0 predicts η a_b with a_b = x_qᵀ Xᵀ y / n, so η* = Σ a_b y_q,b / Σ a_b²."""
    X, y, x_q, y_q = regression_data(B=200, n=10, d=5, seed=4)
    a = torch.einsum("bd,bnd,bn->b", x_q, X, y) / 10
    exact = (a * y_q).sum().item() / a.square().sum().item()
    assert best_step_size(X, y, x_q, y_q, n_steps=1) == pytest.approx(exact, rel=1e-6)


@pytest.mark.parametrize("n_steps", [2, 5])
@pytest.mark.parametrize("preconditioned", [False, True])
def test_best_step_size_beats_neighbours_and_grid(n_steps, preconditioned):
    X, y, x_q, y_q = regression_data(B=64, n=10, d=5, seed=5 + n_steps)
    P = None
    if preconditioned:
        M = torch.randn(5, 5, generator=torch.Generator().manual_seed(9), dtype=F64)
        P = M @ M.T / 5 + 0.5 * torch.eye(5, dtype=F64)
    grid = torch.logspace(-3, 1, 15, dtype=F64)
    eta = best_step_size(X, y, x_q, y_q, n_steps, preconditioner=P, grid=grid)
    best = query_loss(X, y, x_q, y_q, eta, n_steps, P)
    for other in (0.95 * eta, 1.05 * eta, *grid.tolist()):
        other_loss = query_loss(X, y, x_q, y_q, other, n_steps, P)
        assert best <= other_loss + 1e-12, (eta, other, best, other_loss)
    # the default grid finds the same optimum
    default = best_step_size(X, y, x_q, y_q, n_steps, preconditioner=P)
    assert default == pytest.approx(eta, rel=1e-4)
