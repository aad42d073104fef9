"""Tests of the prefix baselines against the single-prefix algorithms, in float64."""

from __future__ import annotations

import pytest
import torch

from icgd.algorithms import (
    gradient_descent,
    ols,
    prefix_averaging,
    prefix_knn,
    prefix_ols,
    prefix_one_step_gd,
    prefix_ridge,
    ridge,
)

F64 = torch.float64
SHAPES = [(6, 14, 5), (5, 4, 7), (4, 9, 9), (3, 12, 12)]  # n > d, n < d, n = d


def data(B, n, d, seed=0, noise=0.3):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(B, n, d, generator=g, dtype=F64)
    w = torch.randn(B, d, generator=g, dtype=F64)
    y = torch.einsum("bnd,bd->bn", X, w) + noise * torch.randn(B, n, generator=g, dtype=F64)
    x_q = torch.randn(B, d, generator=g, dtype=F64)
    Xq = torch.randn(B, n, d, generator=g, dtype=F64)
    return X, y, x_q, Xq


def predict(w, x_q):
    return (w * x_q).sum(-1)


def knn_reference(X, y, x_q, k_neighbors):
    """Per prompt and prefix: sort by (distance, index), average the first min(j, k) labels."""
    B, n, _ = X.shape
    out = torch.empty(B, n, dtype=X.dtype)
    for b in range(B):
        for j in range(1, n + 1):
            q = x_q[b] if x_q.ndim == 2 else x_q[b, j - 1]
            dist = (X[b, :j] - q).square().sum(-1).tolist()
            order = sorted(range(j), key=lambda i: (dist[i], i))[:k_neighbors]
            out[b, j - 1] = y[b, order].mean()
    return out


@pytest.mark.parametrize(("B", "n", "d"), SHAPES)
def test_prefix_ols_equals_ols_on_each_prefix(B, n, d):
    X, y, x_q, _ = data(B, n, d, seed=1)
    pred = prefix_ols(X, y, x_q)
    assert pred.shape == (B, n) and pred.dtype == F64
    for k in range(1, n + 1):  # loop in the test only
        ref = predict(ols(X[:, :k], y[:, :k]), x_q)
        torch.testing.assert_close(pred[:, k - 1], ref, rtol=1e-9, atol=1e-9, msg=f"k={k}")


@pytest.mark.parametrize("kind", ["subspace", "repeated"])
def test_prefix_ols_rank_deficient_prompts_are_min_norm(kind):
    """Points in a subspace (zero-padded coordinates) or repeated points: the pinv fallback."""
    B, n, d = 4, 10, 5
    X, y, x_q, _ = data(B, n, d, seed=2)
    if kind == "subspace":
        X[1:, :, 3:] = 0  # prompts 1.. live in the first 3 coordinates; prompt 0 is generic
    else:
        X[1:, 2] = X[1:, 0]  # x_3 = x_1
        y[1:, 2] = y[1:, 0] + 0.5  # inconsistent labels: least squares, not interpolation
    pred = prefix_ols(X, y, x_q)
    for k in range(1, n + 1):
        ref = predict(ols(X[:, :k], y[:, :k]), x_q)
        torch.testing.assert_close(pred[:, k - 1], ref, rtol=1e-9, atol=1e-9, msg=f"k={k}")


@pytest.mark.parametrize(("B", "n", "d"), SHAPES)
@pytest.mark.parametrize("lam", [1e-3, 0.5, 20.0])
def test_prefix_ridge_equals_ridge_on_each_prefix(B, n, d, lam):
    X, y, x_q, _ = data(B, n, d, seed=3)
    pred = prefix_ridge(X, y, x_q, lam)
    assert pred.shape == (B, n) and pred.dtype == F64
    for k in range(1, n + 1):
        ref = predict(ridge(X[:, :k], y[:, :k], lam), x_q)
        torch.testing.assert_close(pred[:, k - 1], ref, rtol=1e-9, atol=1e-9, msg=f"k={k}")


def test_prefix_ridge_grid_equals_per_lambda_calls_and_zero_is_ols():
    X, y, x_q, Xq = data(4, 11, 4, seed=4)
    grid = torch.tensor([0.0, 0.01, 1.0, 100.0], dtype=F64)
    for queries in (x_q, Xq):
        pred = prefix_ridge(X, y, queries, grid)
        assert pred.shape == (4, 4, 11)
        torch.testing.assert_close(pred[0], prefix_ols(X, y, queries), rtol=0, atol=1e-12)
        for g, lam in enumerate(grid.tolist()):
            torch.testing.assert_close(
                pred[g], prefix_ridge(X, y, queries, lam), rtol=0, atol=1e-12
            )
    with pytest.raises(ValueError, match="lam"):
        prefix_ridge(X, y, x_q, -1.0)


@pytest.mark.parametrize(("B", "n", "d"), SHAPES)
def test_prefix_one_step_gd_equals_gradient_descent_on_each_prefix(B, n, d):
    X, y, x_q, _ = data(B, n, d, seed=5)
    pred = prefix_one_step_gd(X, y, x_q, step=0.7)
    for k in range(1, n + 1):
        w1 = gradient_descent(X[:, :k], y[:, :k], 0.7, n_steps=1).final
        torch.testing.assert_close(pred[:, k - 1], predict(w1, x_q), rtol=0, atol=1e-12)
    # averaging: ŷ_k = x_qᵀ mean_{i ≤ k} y_i x_i, by hand
    k = torch.arange(1, n + 1, dtype=F64)
    manual = torch.einsum("bkd,bd->bk", torch.cumsum(X * y[..., None], 1), x_q) / k
    torch.testing.assert_close(prefix_averaging(X, y, x_q), manual, rtol=0, atol=1e-12)


@pytest.mark.parametrize("k_neighbors", [1, 3, 5])
def test_prefix_knn_matches_reference(k_neighbors):
    X, y, x_q, Xq = data(3, 9, 2, seed=6)
    for queries in (x_q, Xq):
        pred = prefix_knn(X, y, queries, k_neighbors)
        assert pred.shape == (3, 9) and pred.dtype == F64
        ref = knn_reference(X, y, queries, k_neighbors)
        torch.testing.assert_close(pred, ref, rtol=0, atol=1e-12)


def test_prefix_knn_ties_and_short_prefixes():
    # one prompt in d = 1, query at 0: points at distance 1, 1, 1, 2, 0.5
    X = torch.tensor([[[1.0], [-1.0], [1.0], [2.0], [0.5]]], dtype=F64)
    y = torch.tensor([[10.0, 20.0, 30.0, 40.0, 50.0]], dtype=F64)
    x_q = torch.zeros(1, 1, dtype=F64)
    pred = prefix_knn(X, y, x_q, k_neighbors=3)
    # j=1: {10}; j=2: {10,20}; j=3: all three ties; j=4: 40 is farthest; j=5: 50 + earliest two ties
    expected = torch.tensor([[10.0, 15.0, 20.0, 20.0, (50 + 10 + 20) / 3]], dtype=F64)
    torch.testing.assert_close(pred, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(pred, knn_reference(X, y, x_q, 3), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="k_neighbors"):
        prefix_knn(X, y, x_q, 0)


@pytest.mark.parametrize(
    "fn",
    [
        prefix_ols,
        lambda X, y, q: prefix_ridge(X, y, q, 0.3),
        lambda X, y, q: prefix_one_step_gd(X, y, q, 0.5),
        prefix_averaging,
        prefix_knn,
    ],
    ids=["ols", "ridge", "gd", "averaging", "knn"],
)
@pytest.mark.parametrize(("B", "n", "d"), [(4, 10, 3), (4, 3, 6)])
def test_per_prefix_queries_equal_one_query_column_by_column(fn, B, n, d):
    X, y, _, Xq = data(B, n, d, seed=7)
    pred = fn(X, y, Xq)
    assert pred.shape == (B, n) and pred.dtype == F64
    for k in range(1, n + 1):
        torch.testing.assert_close(
            pred[:, k - 1], fn(X, y, Xq[:, k - 1])[:, k - 1], rtol=1e-10, atol=1e-10
        )


def test_float32_and_bad_shapes():
    X, y, x_q, _ = data(3, 8, 3, seed=8)
    X32, y32, q32 = X.float(), y.float(), x_q.float()
    for fn in (prefix_ols, prefix_averaging, prefix_knn):
        out = fn(X32, y32, q32)
        assert out.dtype == torch.float32 and out.shape == (3, 8)
        torch.testing.assert_close(out.double(), fn(X, y, x_q), rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="x_q"):
        prefix_ols(X, y, x_q[:, :2])
    with pytest.raises(ValueError, match=r"X \(B, n, d\)"):
        prefix_ridge(X, y[:, :3], x_q, 1.0)
