"""SPD and ILWD (Akyürek et al. 2023): exact recovery, invariants, hand values, shape errors."""

from __future__ import annotations

import pytest
import torch

from icgd.algorithms import prefix_ols, prefix_one_step_gd, prefix_ridge, ridge
from icgd.analysis import ilwd, implicit_weights, linear_weights, spd

F64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_implicit_weights_of_a_linear_predictor_are_exact():
    g = gen(1)
    B, m, d = 64, 12, 5
    probes = torch.randn(B, m, d, generator=g, dtype=F64)
    w = torch.randn(B, d, generator=g, dtype=F64)
    preds = (probes * w[:, None, :]).sum(-1)  # (B, m): wᵀ x'_i
    torch.testing.assert_close(implicit_weights(probes, preds), w, atol=1e-10, rtol=0)
    # Extra leading axes (e.g. context lengths) are batched too.
    W = torch.randn(3, B, d, generator=g, dtype=F64)
    P = probes.expand(3, B, m, d)
    torch.testing.assert_close(
        implicit_weights(P, (P * W[:, :, None]).sum(-1)), W, atol=1e-10, rtol=0
    )


def test_implicit_weights_are_the_least_squares_fit():
    # A non-linear predictor: the fit satisfies the normal equations X'ᵀ(X'ŵ − p) = 0.
    g = gen(2)
    probes = torch.randn(32, 20, 4, generator=g, dtype=F64)
    preds = probes[..., 0] ** 3 + probes[..., 1].abs()
    w = implicit_weights(probes, preds)
    residual = (probes @ w.unsqueeze(-1)).squeeze(-1) - preds
    normal = (probes * residual.unsqueeze(-1)).sum(-2)
    assert normal.abs().max() < 1e-10


def test_linear_weights_read_ridge_and_prefix_ols_exactly():
    g = gen(3)
    B, n, d = 16, 7, 4
    X = torch.randn(B, n, d, generator=g, dtype=F64)
    y = torch.randn(B, n, generator=g, dtype=F64)
    w = linear_weights(lambda A, b, q: (ridge(A, b, 0.3) * q).sum(-1), X, y)  # (B, d)
    torch.testing.assert_close(w, ridge(X, y, 0.3), atol=1e-12, rtol=0)
    # Per prefix: weights (B, n, d); prefix k's weights predict like prefix_ols on any query.
    wk = linear_weights(prefix_ols, X, y)
    x_q = torch.randn(B, d, generator=g, dtype=F64)
    torch.testing.assert_close(
        (wk * x_q[:, None]).sum(-1), prefix_ols(X, y, x_q), atol=1e-10, rtol=0
    )
    # A grid axis after the prompt axis: (B, G, n, d).
    grid = torch.tensor([0.1, 1.0], dtype=F64)
    wg = linear_weights(lambda A, b, q: prefix_ridge(A, b, q, grid).movedim(0, 1), X, y)
    assert wg.shape == (B, 2, n, d)
    torch.testing.assert_close(wg[:, 1, -1], ridge(X, y, 1.0), atol=1e-10, rtol=0)


def test_linear_weights_through_probes_agree():
    # ILWD's two routes to a linear algorithm's weights give the same vector.
    g = gen(4)
    B, n, d, m = 8, 6, 3, 9
    X = torch.randn(B, n, d, generator=g, dtype=F64)
    y = torch.randn(B, n, generator=g, dtype=F64)
    probes = torch.randn(B, m, d, generator=g, dtype=F64)
    preds = torch.stack(
        [prefix_one_step_gd(X, y, probes[:, i], 0.7)[:, -1] for i in range(m)], dim=1
    )  # (B, m), loop over the probes of a test only
    fitted = implicit_weights(probes, preds)
    exact = linear_weights(lambda A, b, q: prefix_one_step_gd(A, b, q, 0.7)[:, -1], X, y)
    torch.testing.assert_close(fitted, exact, atol=1e-10, rtol=0)


def test_spd_and_ilwd_vanish_for_identical_algorithms_and_are_symmetric():
    g = gen(5)
    a, b = torch.randn(100, 6, generator=g, dtype=F64), torch.randn(100, 6, generator=g, dtype=F64)
    assert torch.equal(spd(a, a), torch.zeros(6, dtype=F64))
    torch.testing.assert_close(spd(a, b), spd(b, a))
    wa, wb = torch.randn(50, 4, generator=g), torch.randn(50, 4, generator=g)
    assert ilwd(wa, wa) == 0.0
    assert ilwd(wa, wb) == pytest.approx(ilwd(wb, wa), rel=1e-12)


def test_hand_values():
    # SPD: differences (1, −2, 3) → mean of squares (1 + 4 + 9)/3.
    assert spd(torch.tensor([1.0, 0.0, 3.0]), torch.tensor([0.0, 2.0, 0.0])) == pytest.approx(
        14 / 3
    )
    # Per context length: columns are averaged separately.
    per_k = spd(torch.tensor([[1.0, 0.0], [3.0, 2.0]]), torch.zeros(2, 2))
    torch.testing.assert_close(per_k, torch.tensor([5.0, 2.0], dtype=F64))
    # ILWD: ‖(1, 2)‖² = 5 and ‖(0, 3)‖² = 9 → 7.
    wa = torch.tensor([[1.0, 2.0], [0.0, 3.0]])
    assert ilwd(wa, torch.zeros(2, 2)) == pytest.approx(7.0)
    # (B, K, d) → (K,); a grid axis broadcast against one model with dim=1 → (G, K).
    W = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # (1, 2, 2): one prompt, K = 2
    torch.testing.assert_close(ilwd(W, torch.zeros_like(W)), torch.tensor([1.0, 4.0], dtype=F64))
    grid_preds = torch.stack([torch.zeros(3, 2), torch.ones(3, 2)])  # (G=2, B=3, K=2)
    out = spd(torch.ones(1, 3, 2), grid_preds, dim=1)
    torch.testing.assert_close(out, torch.tensor([[1.0, 1.0], [0.0, 0.0]], dtype=F64))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: spd(torch.zeros(3), torch.zeros(4)), "broadcastable"),
        (lambda: spd(torch.zeros(0), torch.zeros(0)), "non-empty"),
        (lambda: spd(torch.zeros(3, 2), torch.zeros(3, 2), dim=2), "dim"),
        (lambda: ilwd(torch.zeros(3), torch.zeros(3)), "at least"),
        (lambda: ilwd(torch.zeros(3, 2), torch.zeros(3, 4)), "broadcastable"),
        (lambda: implicit_weights(torch.zeros(4, 5, 3), torch.zeros(4, 6)), "probes"),
        (lambda: implicit_weights(torch.zeros(3), torch.zeros(3)), "probes"),
        (lambda: linear_weights(prefix_ols, torch.zeros(2, 3), torch.zeros(2, 3)), "X"),
    ],
)
def test_shape_errors_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
