"""The Newton–Schulz construction reproduces every iterate of iterative Newton (float64, 1e-10):
after layer 2 + k the embedding holds `w_k`, the prediction `x_qᵀ w_k`, the residual labels and
`2^{−k} M_k x` in its u rows."""

from __future__ import annotations

import pytest
import torch

from icgd.algorithms import iterative_newton
from icgd.constructions import (
    lsa_from_newton_schulz,
    newton_schulz_layers,
    newton_schulz_prompt,
    read_newton_schulz,
)
from icgd.models.lsa import LinearSelfAttention

F64 = torch.float64


def problem(B, n, d, seed):
    g = torch.Generator().manual_seed(seed)
    scales = torch.linspace(1.0, 0.4, d, dtype=F64)  # mildly ill-conditioned
    X = torch.randn(B, n, d, generator=g, dtype=F64) * scales
    y = torch.randn(B, n, generator=g, dtype=F64)
    x_q = torch.randn(B, d, generator=g, dtype=F64)
    lam_max = torch.linalg.eigvalsh(X.transpose(1, 2) @ X / n)[:, -1].max().item()
    return X, y, x_q, 1.0 / lam_max**2  # one α valid for every prompt


@pytest.mark.parametrize(
    ("K", "d", "n", "B"), [(1, 2, 6, 3), (3, 3, 10, 5), (6, 4, 16, 4), (4, 5, 3, 2)]
)
def test_every_layer_reads_out_the_newton_iterate(K, d, n, B):
    X, y, x_q, alpha = problem(B, n, d, seed=K + d)
    model = lsa_from_newton_schulz(d, K, alpha)
    reference = iterative_newton(X, y, K, alpha=alpha)
    Z = newton_schulz_prompt(X, y, x_q)
    assert Z.shape == (B, 3 * d + 2, n + 1)
    with torch.no_grad():
        _, cache = model.run_with_cache(Z)
        final = model.predict(Z)
    predictions = reference.predict(x_q)  # (K+1, B)
    for k in range(K + 1):
        Z_k = cache[f"hook_z.{k + 2}"]
        w, pred = read_newton_schulz(Z_k)
        torch.testing.assert_close(w, reference.weights[k], rtol=0, atol=1e-10, msg=f"w_{k}")
        torch.testing.assert_close(pred, predictions[k], rtol=0, atol=1e-10, msg=f"ŷ_{k}")
        # u rows of every column: 2^{−k} M_k x_j; label row: residuals y_i − x_iᵀ w_k
        cols = torch.cat([X, x_q.unsqueeze(1)], dim=1)  # (B, n+1, d)
        u = torch.einsum("bij,bnj->bin", reference.inverses[k], cols) / 2**k
        torch.testing.assert_close(Z_k[:, d : 2 * d], u, rtol=0, atol=1e-10, msg=f"u_{k}")
        residual = y - torch.einsum("bnd,bd->bn", X, reference.weights[k])
        torch.testing.assert_close(Z_k[:, -1, :n], residual, rtol=0, atol=1e-10)
        # x and e rows never move; s stays 0 in the context columns
        torch.testing.assert_close(Z_k[:, :d], Z[:, :d], rtol=0, atol=0)
        torch.testing.assert_close(Z_k[:, 3 * d], Z[:, 3 * d], rtol=0, atol=0)
        assert (Z_k[:, 2 * d : 3 * d, :n] == 0).all()
    torch.testing.assert_close(final, predictions[-1], rtol=0, atol=1e-10)


def test_the_model_is_icgds_own_lsa_with_one_layer_per_newton_step():
    for K in (0, 2, 5):
        model = lsa_from_newton_schulz(3, K, 0.1)
        assert isinstance(model, LinearSelfAttention)
        c = model.config
        assert c.parametrisation == "full" and not c.looped
        assert (c.d, c.n_layers, c.n_heads) == (3 * 3 + 1, K + 2, 3)
        assert all(p.dtype == F64 for p in model.parameters())
    P, Q = newton_schulz_layers(2, 3, 0.5)
    assert P.shape == Q.shape == (5, 3, 8, 8)
    # layer 2 + k, head 0 halves the stored matrix: P[u, u] = −2^{k−2} I for k ≥ 1
    for k in (1, 2, 3):
        torch.testing.assert_close(
            P[k + 1, 0, 2:4, 2:4], -(2.0 ** (k - 2)) * torch.eye(2, dtype=F64)
        )


def test_converges_to_ols_with_the_iterate():
    """With enough layers the read-out is the OLS prediction (the construction inherits Newton's
    quadratic convergence)."""
    X, y, x_q, alpha = problem(4, 20, 3, seed=7)
    model = lsa_from_newton_schulz(3, 20, alpha)
    with torch.no_grad():
        w, pred = read_newton_schulz(model(newton_schulz_prompt(X, y, x_q)))
    w_ols = torch.linalg.lstsq(X, y.unsqueeze(-1)).solution.squeeze(-1)
    torch.testing.assert_close(w, w_ols, rtol=0, atol=1e-10)
    torch.testing.assert_close(pred, (x_q * w_ols).sum(-1), rtol=0, atol=1e-10)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="alpha"):
        lsa_from_newton_schulz(3, 2, 0.0)
    with pytest.raises(ValueError, match="n_steps"):
        lsa_from_newton_schulz(3, -1, 0.1)
    with pytest.raises(ValueError, match="d must"):
        lsa_from_newton_schulz(0, 1, 0.1)
    with pytest.raises(ValueError, match="3d"):
        read_newton_schulz(torch.zeros(1, 4, 3))
