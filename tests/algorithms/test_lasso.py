"""Tests of the batched Lasso (FISTA) and the prefix Lasso, in float64."""

from __future__ import annotations

import pytest
import torch

from icgd.algorithms import LassoResult, lasso, ols, prefix_lasso
from icgd.algorithms.lasso import fista_lasso_gram

F64 = torch.float64
SHAPES = [(6, 14, 5), (5, 4, 7), (4, 9, 9)]  # n > d, n < d, n = d


def data(B, n, d, seed=0, noise=0.3, sparsity=None):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(B, n, d, generator=g, dtype=F64)
    w = torch.randn(B, d, generator=g, dtype=F64)
    if sparsity is not None:
        w[:, sparsity:] = 0
    y = torch.einsum("bnd,bd->bn", X, w) + noise * torch.randn(B, n, generator=g, dtype=F64)
    x_q = torch.randn(B, d, generator=g, dtype=F64)
    Xq = torch.randn(B, n, d, generator=g, dtype=F64)
    return X, y, x_q, Xq


def assert_kkt(X, y, w, alpha, atol=1e-6):
    """|(1/n) X_jᵀ(y − Xw)| ≤ α, and = α sign(w_j) where w_j ≠ 0."""
    n = X.shape[1]
    corr = torch.einsum("bnd,bn->bd", X, y - torch.einsum("bnd,bd->bn", X, w)) / n  # −∇f
    assert (corr.abs() <= alpha + atol).all(), (corr.abs() - alpha).max()
    nz = w != 0
    gap = (corr - alpha * torch.sign(w)).abs()[nz]
    assert gap.numel() == 0 or gap.max() <= atol, gap.max()


@pytest.mark.parametrize("B,n,d", SHAPES)
@pytest.mark.parametrize("alpha", [0.05, 0.3])
def test_kkt_conditions_at_the_solution(B, n, d, alpha):
    X, y, _, _ = data(B, n, d, seed=1, sparsity=2)
    res = lasso(X, y, alpha)
    assert isinstance(res, LassoResult)
    assert res.weights.shape == (B, d) and res.weights.dtype == F64
    assert res.converged.all() and (res.kkt_violation <= 1e-6).all()
    assert (res.n_iter >= 1).all() and (res.n_iter < 10_000).all()
    assert_kkt(X, y, res.weights, alpha)
    assert (res.weights == 0).any()  # the ℓ1 penalty produces exact zeros


@pytest.mark.parametrize("B,n,d", SHAPES)
@pytest.mark.parametrize("alpha", [0.01, 0.1, 0.5])
def test_agrees_with_scikit_learn(B, n, d, alpha):
    linear_model = pytest.importorskip("sklearn.linear_model")
    X, y, _, _ = data(B, n, d, seed=2, sparsity=3)
    ours = lasso(X, y, alpha, tol=1e-12).weights
    for b in range(B):
        model = linear_model.Lasso(alpha=alpha, fit_intercept=False, tol=1e-14, max_iter=100_000)
        model.fit(X[b].numpy(), y[b].numpy())
        ref = torch.as_tensor(model.coef_, dtype=F64)

        # compare objectives (unique) and, where the minimiser is unique (n ≥ d), weights
        def obj(w, b=b):
            return (X[b] @ w - y[b]).square().sum() / (2 * n) + alpha * w.abs().sum()

        assert obj(ours[b]) <= obj(ref) + 1e-10
        assert abs(obj(ours[b]) - obj(ref)) <= 1e-8
        if n >= d:
            torch.testing.assert_close(ours[b], ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("B,n,d", SHAPES + [(3, 12, 12), (2, 1, 4)])
@pytest.mark.parametrize("query", ["single", "per_prefix"])
def test_prefix_lasso_equals_the_per_prefix_solver(B, n, d, query):
    X, y, x_q, Xq = data(B, n, d, seed=3, sparsity=2)
    alpha = 0.1
    q = x_q if query == "single" else Xq
    pred = prefix_lasso(X, y, q, alpha)
    assert pred.shape == (B, n) and pred.dtype == F64
    for k in range(1, n + 1):
        w = lasso(X[:, :k], y[:, :k], alpha).weights
        qk = x_q if query == "single" else Xq[:, k - 1]
        torch.testing.assert_close(pred[:, k - 1], (w * qk).sum(-1), atol=1e-6, rtol=1e-6)


def test_prefix_lasso_in_float32_is_close_to_float64():
    X, y, x_q, _ = data(8, 12, 5, seed=4)
    ref = prefix_lasso(X, y, x_q, 0.1)
    out = prefix_lasso(X.float(), y.float(), x_q.float(), 0.1)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, atol=2e-3, rtol=2e-3)


def test_small_alpha_approaches_least_squares():
    X, y, _, _ = data(5, 30, 6, seed=5)
    w_ls = ols(X, y)
    errors = []
    for alpha in (1e-2, 1e-4, 1e-6):
        w = lasso(X, y, alpha, tol=1e-12, max_iter=50_000).weights
        errors.append((w - w_ls).abs().max().item())
    assert errors[0] > errors[1] > errors[2]
    assert errors[-1] < 1e-5
    # α = 0 exactly: FISTA on least squares from 0
    torch.testing.assert_close(lasso(X, y, 0.0, tol=1e-12).weights, w_ls, atol=1e-8, rtol=0)


def test_alpha_zero_underdetermined_gives_the_min_norm_interpolant():
    X, y, _, _ = data(4, 3, 7, seed=6)
    w = lasso(X, y, 0.0, tol=1e-12, max_iter=50_000).weights
    torch.testing.assert_close(w, ols(X, y), atol=1e-8, rtol=0)


def test_large_alpha_gives_zero_without_iterating():
    X, y, x_q, _ = data(6, 10, 4, seed=7)
    alpha_max = (torch.einsum("bnd,bn->bd", X, y) / 10).abs().amax(-1)  # (B,)
    res = lasso(X, y, float(alpha_max.max()) * 1.0001)
    assert (res.weights == 0).all() and res.converged.all() and (res.n_iter == 0).all()
    # just below α_max the solution is non-zero
    res = lasso(X, y, float(alpha_max.min()) * 0.99)
    assert (res.weights != 0).any(-1)[alpha_max.argmin()]
    pred = prefix_lasso(X, y, x_q, 1e6)
    assert (pred == 0).all()


def test_zero_data_and_max_iter_reporting():
    X = torch.zeros(2, 5, 3, dtype=F64)
    res = lasso(X, torch.zeros(2, 5, dtype=F64), 0.1)
    assert (res.weights == 0).all() and res.converged.all()
    X, y, _, _ = data(3, 8, 12, seed=8)
    res = lasso(X, y, 1e-3, tol=0.0, max_iter=5)
    assert (~res.converged).all() and (res.n_iter == 5).all()
    assert (res.kkt_violation > 0).all()


def test_step_size_safeguard_recovers_from_an_under_estimated_lipschitz_constant():
    # G's top eigenvector (eigenvalue 10) is orthogonal to the power-iteration start v_i = 1 + i/d,
    # so the estimate is ~1: without the descent check FISTA would diverge
    d = 4
    v0 = 1 + torch.arange(d, dtype=F64) / d
    u = torch.tensor([1.0, -1.0, 1.0, 0.0], dtype=F64)
    u = u - (u @ v0) / (v0 @ v0) * v0
    u = u / u.norm()
    G = (torch.eye(d, dtype=F64) + 9 * torch.outer(u, u)).expand(3, d, d).contiguous()
    b = torch.randn(3, d, generator=torch.Generator().manual_seed(0), dtype=F64)
    res = fista_lasso_gram(G, b, 0.05, power_iters=1, tol=1e-10)
    assert res.converged.all()
    g = (G @ res.weights.unsqueeze(-1)).squeeze(-1) - b
    assert (g.abs() <= 0.05 + 1e-8).all()
    nz = res.weights != 0
    torch.testing.assert_close(g[nz], -0.05 * torch.sign(res.weights[nz]), atol=1e-8, rtol=0)


def test_result_predict():
    X, y, x_q, Xq = data(3, 10, 4, seed=10)
    res = lasso(X, y, 0.1)
    torch.testing.assert_close(res.predict(x_q), (res.weights * x_q).sum(-1))
    torch.testing.assert_close(res.predict(Xq), torch.einsum("bnd,bd->bn", Xq, res.weights))


def test_bad_arguments():
    X, y, x_q, _ = data(2, 5, 3)
    with pytest.raises(ValueError, match="alpha"):
        lasso(X, y, -1.0)
    with pytest.raises(ValueError, match="x_q"):
        prefix_lasso(X, y, x_q[:, :2], 0.1)
    with pytest.raises(ValueError, match="expected X"):
        lasso(X, y[:, :3], 0.1)
