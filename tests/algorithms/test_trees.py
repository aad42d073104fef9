"""Tests of the scikit-learn tree baselines on every prefix."""

from __future__ import annotations

import pytest
import torch

from icgd.algorithms import prefix_boosting, prefix_decision_tree

sklearn_ensemble = pytest.importorskip("sklearn.ensemble")
sklearn_tree = pytest.importorskip("sklearn.tree")

F64 = torch.float64


def data(B=3, n=9, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(B, n, d, generator=g, dtype=F64)
    y = torch.where(X[..., 0] > 0, 1.0, -1.0) + 0.5 * X[..., 1].sign()
    return (
        X,
        y,
        torch.randn(B, d, generator=g, dtype=F64),
        torch.randn(B, n, d, generator=g, dtype=F64),
    )


@pytest.mark.parametrize("queries", ["one", "per_prefix"])
@pytest.mark.parametrize("max_depth", [None, 2])
def test_tree_equals_sklearn_on_prefixes(queries, max_depth):
    X, y, xq1, xqn = data()
    x_q = xq1 if queries == "one" else xqn
    pred = prefix_decision_tree(X, y, x_q, max_depth=max_depth)
    assert pred.shape == (3, 9) and pred.dtype == F64
    for b, k in [(0, 1), (1, 4), (2, 9), (0, 6)]:
        model = sklearn_tree.DecisionTreeRegressor(max_depth=max_depth, random_state=0)
        model.fit(X[b, :k].numpy(), y[b, :k].numpy())
        q = x_q[b] if queries == "one" else x_q[b, k - 1]
        assert pred[b, k - 1] == pytest.approx(model.predict(q[None].numpy())[0], abs=1e-12)


def test_boosting_equals_sklearn_on_prefixes():
    X, y, _, xqn = data(B=2, n=6)
    pred = prefix_boosting(X, y, xqn, n_estimators=10)
    assert pred.shape == (2, 6)
    for b, k in [(0, 3), (1, 6)]:
        model = sklearn_ensemble.GradientBoostingRegressor(
            n_estimators=10, learning_rate=0.3, max_depth=6, random_state=0
        )
        model.fit(X[b, :k].numpy(), y[b, :k].numpy())
        ref = model.predict(xqn[b, k - 1][None].numpy())[0]
        assert pred[b, k - 1] == pytest.approx(ref, abs=1e-12)


def test_k1_predicts_the_first_label():
    X, y, xq1, xqn = data()
    for x_q in (xq1, xqn):
        torch.testing.assert_close(prefix_decision_tree(X, y, x_q)[:, 0], y[:, 0])
        torch.testing.assert_close(prefix_boosting(X, y, x_q, n_estimators=5)[:, 0], y[:, 0])


def test_tree_interpolates_distinct_points_and_float32():
    X, y, _, _ = data()
    pred = prefix_decision_tree(X.float(), y.float(), X.float())  # query k = x_k, in the prefix
    assert pred.dtype == torch.float32
    torch.testing.assert_close(pred, y.float())


def test_shape_errors():
    X, y, xq1, _ = data()
    with pytest.raises(ValueError):
        prefix_decision_tree(X, y[:, :3], xq1)
    with pytest.raises(ValueError):
        prefix_boosting(X, y, xq1[:, :2])
    with pytest.raises(ValueError):
        prefix_decision_tree(X, y, xq1, max_depth=0)
