"""von Oswald et al. 2023: the one-step GD and GD++ LSA constructions equal the algorithms."""

from __future__ import annotations

import pytest
import torch

from icgd.algorithms import (
    best_step_size,
    fit_gd_plus_plus,
    gd_plus_plus,
    gd_plus_plus_spectral,
    gd_plus_plus_steps,
    gradient_descent,
)
from icgd.algorithms.gd_plus_plus import gd_plus_plus_transform
from icgd.constructions import (
    lsa_from_gd_plus_plus,
    lsa_from_gd_plus_plus_steps,
    lsa_from_gd_step,
)
from icgd.core.prompts import build_prompt
from icgd.core.rng import make_generator

F64 = torch.float64
TOL = 1e-10


def random_problem(seed: int, B: int = 32):
    """Random d, n and a batch of prompts with x ~ U(−1, 1)^d (as in the paper), y ~ N(0, 1)."""
    g = make_generator(seed)
    d = int(torch.randint(1, 9, (), generator=g))
    n = int(torch.randint(1, 25, (), generator=g))
    X = 2 * torch.rand(B, n, d, generator=g, dtype=F64) - 1
    y = torch.randn(B, n, generator=g, dtype=F64)
    x_q = 2 * torch.rand(B, d, generator=g, dtype=F64) - 1
    eta = float(0.1 + 2 * torch.rand((), generator=g, dtype=F64))
    gamma = float(0.05 + torch.rand((), generator=g, dtype=F64))
    return X, y, x_q, eta, gamma


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1.0)).item()


@pytest.mark.parametrize("seed", range(6))
def test_gd_step_construction_equals_one_gd_step(seed):
    X, y, x_q, eta, _ = random_problem(seed)
    d, n = X.shape[2], X.shape[1]
    model = lsa_from_gd_step(d, eta)
    assert model.config.parametrisation == "full" and model.config.n_layers == 1
    assert next(model.parameters()).dtype == F64
    Z = build_prompt(X, y, x_q)
    with torch.no_grad():
        Z_out = model(Z)
        pred = model.predict(Z)
    expected = gradient_descent(X, y, eta, 1).predict(x_q)[-1]  # (B,)
    assert rel_err(pred, expected) < TOL
    # the closed form η x_qᵀ (1/n) Xᵀ y
    closed = eta * torch.einsum("bd,bnd,bn->b", x_q, X, y) / n
    assert rel_err(pred, closed) < TOL
    # every token (x, y) ↦ (x, y − ΔW x): covariates fixed, context labels become residuals
    dW = eta * torch.einsum("bnd,bn->bd", X, y) / n  # (B, d)
    assert torch.equal(Z_out[:, :d, :], Z[:, :d, :])
    residuals = y - torch.einsum("bnd,bd->bn", X, dW)
    assert rel_err(Z_out[:, d, :n], residuals) < TOL
    assert rel_err(Z_out[:, d, n], -torch.einsum("bd,bd->b", x_q, dW)) < TOL  # 0 − ΔW x_q


def test_gd_step_matrices_are_von_oswalds_products():
    d, eta = 4, 0.7
    model = lsa_from_gd_step(d, eta)
    P, Q = model.P[0, 0], model.Q[0, 0]
    W_kq = torch.zeros(d + 1, d + 1, dtype=F64)
    W_kq[:d, :d] = torch.eye(d, dtype=F64)
    W_v = torch.zeros(d + 1, d + 1, dtype=F64)
    W_v[d, d] = -1.0  # W₀ = 0
    proj = torch.zeros(d + 1, d + 1, dtype=F64)
    proj[d, d] = eta  # (η/n) I, with the 1/n living inside our layer
    assert torch.equal(Q, W_kq.T @ W_kq)
    assert torch.equal(P, proj @ W_v)


@pytest.mark.parametrize("seed", range(6))
def test_gd_plus_plus_construction_equals_algorithm(seed):
    X, y, x_q, eta, gamma = random_problem(100 + seed)
    d = X.shape[2]
    model = lsa_from_gd_plus_plus(d, eta, gamma)
    assert model.config.n_layers == 2 and model.config.parametrisation == "full"
    Z = build_prompt(X, y, x_q)
    with torch.no_grad():
        pred = model.predict(Z)
        _, cache = model.run_with_cache(Z, names_filter="hook_z.1")
    expected = gd_plus_plus(X, y, x_q, eta, gamma)
    assert rel_err(pred, expected) < TOL
    # layer 1 maps every covariate (query too) to (I − γ Ŝ) x and leaves the labels alone
    T = gd_plus_plus_transform(X, gamma)  # (B, d, d)
    Z1 = cache["hook_z.1"]
    assert rel_err(Z1[:, :d, :], T @ Z[:, :d, :]) < TOL
    assert torch.equal(Z1[:, d, :], Z[:, d, :])


def test_gd_plus_plus_algorithm_by_hand():
    """GD++ = one GD step (gradient_descent) on the transformed covariates, at the moved query."""
    X, y, x_q, eta, gamma = random_problem(7)
    n, d = X.shape[1], X.shape[2]
    S = X.transpose(1, 2) @ X / n
    T = torch.eye(d, dtype=F64) - gamma * S
    X_t = torch.einsum("bij,bnj->bni", T, X)
    x_q_t = torch.einsum("bij,bj->bi", T, x_q)
    expected = gradient_descent(X_t, y, eta, 1).predict(x_q_t)[-1]
    assert rel_err(gd_plus_plus(X, y, x_q, eta, gamma), expected) < TOL
    # γ = 0 is plain one-step GD
    plain = gradient_descent(X, y, eta, 1).predict(x_q)[-1]
    assert rel_err(gd_plus_plus(X, y, x_q, eta, 0.0), plain) < TOL


@pytest.mark.parametrize("c", [3.7, -0.25, 1e3])
def test_only_products_matter(c):
    X, y, x_q, eta, gamma = random_problem(42)
    d = X.shape[2]
    Z = build_prompt(X, y, x_q)
    for model in (lsa_from_gd_step(d, eta), lsa_from_gd_plus_plus(d, eta, gamma)):
        with torch.no_grad():
            before = model.predict(Z)
            model.P.mul_(c)
            model.Q.div_(c)
            after = model.predict(Z)
        assert rel_err(after, before) < TOL


def test_constructions_return_new_models_and_reject_bad_d():
    a, b = lsa_from_gd_step(3, 0.5), lsa_from_gd_step(3, 0.5)
    assert a is not b and a.P.data_ptr() != b.P.data_ptr()
    with pytest.raises(ValueError, match="d must be"):
        lsa_from_gd_step(0, 0.5)
    with pytest.raises(ValueError, match="d must be"):
        lsa_from_gd_plus_plus(-1, 0.5, 0.1)
    assert lsa_from_gd_step(3, 0.5, dtype=torch.float32).P.dtype == torch.float32


# --- several GD++ steps --------------------------------------------------------------------------


def gd_plus_plus_steps_by_loop(X, y, x_q, etas, gammas):
    """The GD++ iteration written prompt by prompt and column by column (slow, obvious)."""
    B, n, d = X.shape
    out = torch.zeros(len(etas) + 1, B, dtype=X.dtype)
    for b in range(B):
        cols = [X[b, j].clone() for j in range(n)] + [x_q[b].clone()]
        res = [y[b, j].item() for j in range(n)] + [0.0]
        for step, (eta, gamma) in enumerate(zip(etas, gammas, strict=True)):
            S = sum(torch.outer(cols[i], cols[i]) for i in range(n)) / n
            g = [
                sum(res[i] * (cols[i] @ cols[j]).item() for i in range(n)) / n for j in range(n + 1)
            ]
            cols = [cols[j] - gamma * (S @ cols[j]) for j in range(n + 1)]
            res = [res[j] - eta * g[j] for j in range(n + 1)]
            out[step + 1, b] = -res[n]
    return out


@pytest.mark.parametrize("seed", range(4))
def test_gd_plus_plus_steps_by_hand_and_construction(seed):
    X, y, x_q, _, _ = random_problem(seed, B=5)
    g = make_generator(100 + seed)
    L = 1 + seed
    etas = 0.1 + torch.rand(L, generator=g, dtype=F64)
    gammas = 0.5 * torch.rand(L, generator=g, dtype=F64)
    steps = gd_plus_plus_steps(X, y, x_q, etas, gammas)  # (L+1, B)
    assert steps.shape == (L + 1, 5)
    assert (
        rel_err(steps, gd_plus_plus_steps_by_loop(X, y, x_q, etas.tolist(), gammas.tolist())) < TOL
    )
    for depth in range(1, L + 1):  # the construction's prediction after every depth
        model = lsa_from_gd_plus_plus_steps(X.shape[2], etas[:depth], gammas[:depth])
        assert model.config.n_layers == depth
        with torch.no_grad():
            pred = model.predict(build_prompt(X, y, x_q))
        assert rel_err(pred, steps[depth]) < TOL


@pytest.mark.parametrize("seed", range(3))
def test_gd_plus_plus_steps_special_cases(seed):
    X, y, x_q, eta, gamma = random_problem(seed)
    # γ = 0: plain GD with per-step steps
    etas = torch.tensor([eta, 0.5 * eta, 0.3], dtype=F64)
    plain = gd_plus_plus_steps(X, y, x_q, etas, torch.zeros(3, dtype=F64))
    gd = gradient_descent(X, y, etas).predict(x_q)  # (L+1, B), row 0 is w_0 = 0
    assert rel_err(plain, gd) < TOL
    # a covariate step then a GD step is the one-step GD++ of `gd_plus_plus`
    two = gd_plus_plus_steps(X, y, x_q, [0.0, eta], [gamma, 0.0])[-1]
    assert rel_err(two, gd_plus_plus(X, y, x_q, eta, gamma)) < TOL


def test_gd_plus_plus_steps_rejects_bad_shapes():
    X, y, x_q, _, _ = random_problem(0)
    with pytest.raises(ValueError, match="same length"):
        gd_plus_plus_steps(X, y, x_q, [0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="expected X"):
        gd_plus_plus_steps(X, y[:, :-1], x_q, [0.1], [0.1])
    with pytest.raises(ValueError, match="same length"):
        lsa_from_gd_plus_plus_steps(3, [0.1, 0.2], [0.1])


def test_fit_gd_plus_plus_beats_its_start_and_plain_gd():
    """The fitted (η, γ) are a stationary point no worse than the best constant-step GD."""
    g = make_generator(7)
    B, n, d = 4096, 10, 5
    X = 2 * torch.rand(B, n, d, generator=g, dtype=F64) - 1
    x_q = 2 * torch.rand(B, d, generator=g, dtype=F64) - 1
    w = torch.randn(B, d, generator=g, dtype=F64)
    y, y_q = torch.einsum("bnd,bd->bn", X, w), (x_q * w).sum(-1)
    etas, gammas = fit_gd_plus_plus(X, y, x_q, y_q, 2)
    assert etas.shape == gammas.shape == (2,) and etas.dtype == F64

    def loss(e, c):
        return (gd_plus_plus_steps(X, y, x_q, e, c)[-1] - y_q).square().mean().item()

    fitted = loss(etas, gammas)
    eta_gd = best_step_size(X, y, x_q, y_q, 2)
    assert fitted < loss(torch.full((2,), eta_gd), torch.zeros(2))
    # a stationary point: small moves in any coordinate do not lower the loss
    for k in range(4):
        for sign in (1, -1):
            p = torch.cat([etas, gammas]).clone()
            p[k] *= 1 + sign * 1e-3
            assert loss(p[:2], p[2:]) >= fitted - 1e-12
    with pytest.raises(ValueError, match="n_steps"):
        fit_gd_plus_plus(X, y, x_q, y_q, 0)


@pytest.mark.parametrize("seed", range(6))
def test_gd_plus_plus_spectral_equals_the_direct_iteration(seed):
    """The eigen-form (one eigh per prompt) equals the layer-by-layer iteration, n < d too."""
    X, y, x_q, _, _ = random_problem(seed)
    g = make_generator(200 + seed)
    L = 1 + seed % 4
    etas = 0.1 + 2 * torch.rand(L, generator=g, dtype=F64)
    gammas = torch.rand(L, generator=g, dtype=F64) - 0.2
    direct = gd_plus_plus_steps(X, y, x_q, etas, gammas)[-1]
    assert rel_err(gd_plus_plus_spectral(X, y, x_q, etas, gammas), direct) < TOL
    gd = gradient_descent(X, y, etas).predict(x_q)[-1]  # γ = 0: plain GD
    assert rel_err(gd_plus_plus_spectral(X, y, x_q, etas, torch.zeros(L, dtype=F64)), gd) < TOL
