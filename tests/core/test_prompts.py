"""Prompt layout (linear attention): (B, d+1, n+1), context [x_i; y_i], query [x_q; 0]."""

from __future__ import annotations

import torch
from torch.testing import assert_close

from icgd.core.prompts import build_prompt, read_prediction, split_prompt


def batch(B=3, n=4, d=2, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(B, n, d, generator=g, dtype=dtype)
    y = torch.randn(B, n, generator=g, dtype=dtype)
    x_q = torch.randn(B, d, generator=g, dtype=dtype)
    return X, y, x_q


def test_layout_entry_by_entry():
    X, y, x_q = batch()
    Z = build_prompt(X, y, x_q)
    B, n, d = X.shape
    assert Z.shape == (B, d + 1, n + 1) and Z.dtype == X.dtype
    for b in range(B):
        for i in range(n):
            assert_close(Z[b, :d, i], X[b, i])  # column i = [x_i; y_i]
            assert Z[b, d, i] == y[b, i]
        assert_close(Z[b, :d, n], x_q[b])  # query column = [x_q; 0]
        assert Z[b, d, n] == 0


def test_split_inverts_build():
    X, y, x_q = batch(B=5, n=7, d=3)
    X2, y2, xq2 = split_prompt(build_prompt(X, y, x_q))
    assert_close(X2, X, rtol=0, atol=0)
    assert_close(y2, y, rtol=0, atol=0)
    assert_close(xq2, x_q, rtol=0, atol=0)


def test_build_does_not_alias_inputs():
    X, y, x_q = batch()
    Z = build_prompt(X, y, x_q)
    Z.zero_()
    assert X.abs().sum() > 0 and y.abs().sum() > 0 and x_q.abs().sum() > 0


def test_read_prediction_sign_convention():
    Z = build_prompt(*batch(B=2, n=3, d=2))
    Z[:, -1, -1] = torch.tensor([0.5, -2.0], dtype=Z.dtype)
    assert_close(read_prediction(Z), torch.tensor([-0.5, 2.0], dtype=Z.dtype))
    assert read_prediction(build_prompt(*batch())).abs().max() == 0  # the query label slot is 0
