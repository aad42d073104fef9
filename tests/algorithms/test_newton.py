"""Iterative Newton (Newton–Schulz) against a per-prompt numpy reference, and its quadratic
convergence to OLS, in float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from icgd.algorithms import NewtonResult, iterative_newton, newton_alpha, ols

F64 = torch.float64


def data(B=5, n=12, d=4, seed=0, scales=None):
    """X (B, n, d) with column scales `scales` (ill-conditioning), y (B, n), x_q (B, d)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(B, n, d, generator=g, dtype=F64)
    if scales is not None:
        X = X * torch.as_tensor(scales, dtype=F64)
    y = torch.randn(B, n, generator=g, dtype=F64)
    x_q = torch.randn(B, d, generator=g, dtype=F64)
    return X, y, x_q


def newton_reference(X, y, n_steps, alpha=None):
    """Slow reference: numpy, one prompt at a time; α = 1/λ_max(Ŝ)² unless given."""
    Ms, ws = [], []
    for Xb, yb in zip(X.numpy(), y.numpy(), strict=True):
        n, d = Xb.shape
        S = Xb.T @ Xb / n
        b = Xb.T @ yb / n
        a = 1.0 / np.linalg.norm(S, 2) ** 2 if alpha is None else alpha
        M = a * S
        Mk, wk = [M], [M @ b]
        for _ in range(n_steps):
            M = M @ (2 * np.eye(d) - S @ M)
            Mk.append(M)
            wk.append(M @ b)
        Ms.append(Mk)
        ws.append(wk)
    M = torch.tensor(np.array(Ms)).transpose(0, 1)  # (K+1, B, d, d)
    w = torch.tensor(np.array(ws)).transpose(0, 1)  # (K+1, B, d)
    return M, w


@pytest.mark.parametrize("alpha", [None, 0.05])
def test_matches_a_per_prompt_numpy_reference(alpha):
    X, y, x_q = data()
    result = iterative_newton(X, y, 6, alpha=alpha)
    M_ref, w_ref = newton_reference(X, y, 6, alpha)
    assert isinstance(result, NewtonResult)
    assert result.weights.shape == (7, 5, 4) and result.inverses.shape == (7, 5, 4, 4)
    torch.testing.assert_close(result.inverses, M_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(result.weights, w_ref, rtol=0, atol=1e-12)
    pred = torch.einsum("kbd,bd->kb", w_ref, x_q)
    torch.testing.assert_close(result.predict(x_q), pred, rtol=0, atol=1e-12)
    torch.testing.assert_close(result.final, w_ref[-1], rtol=0, atol=1e-12)


def test_default_alpha_is_one_over_the_squared_spectral_norm():
    X, y, _ = data()
    S = X.transpose(1, 2) @ X / X.shape[1]
    expected = 1.0 / torch.linalg.matrix_norm(S, ord=2).square()
    torch.testing.assert_close(newton_alpha(S), expected, rtol=1e-13, atol=0)
    torch.testing.assert_close(iterative_newton(X, y, 0).alpha, expected, rtol=1e-13, atol=0)
    torch.testing.assert_close(iterative_newton(X, y, 0).inverses[0], expected[:, None, None] * S)


def test_batched_equals_per_prompt():
    X, y, _ = data(B=4)
    full = iterative_newton(X, y, 5)
    for b in range(4):
        alone = iterative_newton(X[b : b + 1], y[b : b + 1], 5)
        torch.testing.assert_close(alone.weights, full.weights[:, b : b + 1], rtol=0, atol=1e-12)


def test_residual_squares_every_step():
    """`I − Ŝ M_k = (I − α Ŝ²)^{2^k}`: the spectral norm of the residual squares each step."""
    X, y, _ = data(n=30, d=4, scales=[1.0, 0.5, 0.3, 0.2])
    result = iterative_newton(X, y, 5)
    S = X.transpose(1, 2) @ X / 30
    eye = torch.eye(4, dtype=F64)
    E0 = eye - result.alpha[:, None, None] * S @ S  # (B, d, d)
    for k in range(6):
        E = eye - S @ result.inverses[k]
        torch.testing.assert_close(E, torch.linalg.matrix_power(E0, 2**k), rtol=0, atol=1e-12)
    norms = torch.linalg.matrix_norm(eye - S @ result.inverses, ord=2)  # (K+1, B)
    torch.testing.assert_close(norms[1:], norms[:-1].square(), rtol=1e-9, atol=1e-15)


def test_converges_quadratically_to_ols():
    """With κ = λ_max/λ_min, `‖w_k − w*‖ ≤ (1 − 1/κ²)^{2^k} ‖w*‖`: 1e-12 after about
    log₂(κ² ln 1e12) steps, where GD with the best fixed step needs ~κ/2 · ln 1e12 steps."""
    X, y, _ = data(B=6, n=40, d=5, scales=[1.0, 0.6, 0.4, 0.25, 0.15])
    w_star = ols(X, y)
    lam = torch.linalg.eigvalsh(X.transpose(1, 2) @ X / 40)  # (B, d)
    kappa = (lam[:, -1] / lam[:, 0]).max().item()
    K = math.ceil(math.log2(kappa**2 * math.log(1e12))) + 1
    result = iterative_newton(X, y, K)
    errors = (result.weights - w_star).norm(dim=-1)  # (K+1, B)
    rates = 1 - lam[:, 0] ** 2 / lam[:, -1] ** 2  # (B,)
    for k in range(K + 1):
        bound = rates ** (2**k) * w_star.norm(dim=-1)
        assert (errors[k] <= bound * (1 + 1e-9) + 1e-13).all(), k
    assert errors[-1].max() < 1e-11 * w_star.norm(dim=-1).max()
    # the error is multiplied by the residual matrix, which itself squares every step:
    # e_{k+1} = (I − Ŝ M_k) e_k, ‖I − Ŝ M_k‖₂ = ‖I − α Ŝ²‖₂^{2^k} (quadratic convergence)
    S = X.transpose(1, 2) @ X / 40
    E = torch.eye(5, dtype=F64) - S @ result.inverses[:-1]  # (K, B, d, d)
    e = result.weights - w_star  # (K+1, B, d)
    torch.testing.assert_close(e[1:], torch.einsum("kbij,kbj->kbi", E, e[:-1]), rtol=0, atol=1e-12)


def test_rank_deficient_converges_to_the_minimum_norm_solution():
    X, y, _ = data(B=3, n=3, d=6)  # n < d
    result = iterative_newton(X, y, 40)
    torch.testing.assert_close(result.final, ols(X, y), rtol=0, atol=1e-10)


def test_alpha_past_two_over_the_squared_norm_diverges():
    X, y, _ = data(B=1, n=20, d=3)
    lam_max = torch.linalg.eigvalsh(X.transpose(1, 2) @ X / 20)[0, -1].item()
    w_star = ols(X, y)
    ok = iterative_newton(X, y, 12, alpha=1.9 / lam_max**2).final
    torch.testing.assert_close(ok, w_star, rtol=0, atol=1e-10)
    bad = iterative_newton(X, y, 12, alpha=2.1 / lam_max**2).final
    assert not torch.isfinite(bad).all() or (bad - w_star).norm() > 1e3


def test_bad_arguments_are_refused():
    X, y, _ = data()
    with pytest.raises(ValueError, match="alpha"):
        iterative_newton(X, y, 2, alpha=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        iterative_newton(X, y, 2, alpha=torch.ones(3, dtype=F64))
    with pytest.raises(ValueError, match="n_steps"):
        iterative_newton(X, y, -1)
    with pytest.raises(ValueError, match="expected X"):
        iterative_newton(X, y[:, :3], 2)
