"""The preconditioned-GD construction reproduces L steps of preconditioned GD (float64, 1e-10)."""

from __future__ import annotations

import pytest
import torch

from icgd.algorithms.gd import preconditioned_gd
from icgd.constructions import lsa_from_preconditioned_gd
from icgd.core.prompts import build_prompt
from icgd.core.rng import make_generator

F64 = torch.float64
B, N, D = 16, 12, 5


@pytest.fixture(scope="module")
def problem():
    g = make_generator(11)
    X = torch.randn(B, N, D, generator=g, dtype=F64)
    y = torch.randn(B, N, generator=g, dtype=F64)
    x_q = torch.randn(B, D, generator=g, dtype=F64)
    return X, y, x_q


def random_preconditioners(L: int, seed: int) -> torch.Tensor:
    """Non-symmetric Γ_l around 0.3·I (small enough that GD stays bounded on these prompts)."""
    g = make_generator(seed)
    G = 0.3 * torch.eye(D, dtype=F64) + 0.15 * torch.randn(L, D, D, generator=g, dtype=F64)
    assert (G - G.transpose(1, 2)).abs().max() > 0.05  # genuinely non-symmetric
    return G


def gd_by_hand(X, y, gammas):
    """w_0 = 0, w_{l+1} = w_l − Γ_l ((1/n) Xᵀ (X w_l − y)); returns [w_0, …, w_L]."""
    w = torch.zeros(X.shape[0], X.shape[2], dtype=X.dtype)
    iterates = [w]
    for gamma in gammas:
        grad = torch.einsum("bnd,bn->bd", X, torch.einsum("bnd,bd->bn", X, w) - y) / X.shape[1]
        w = w - torch.einsum("ij,bj->bi", gamma, grad)
        iterates.append(w)
    return iterates


@pytest.mark.parametrize("parametrisation", ["sparse", "full"])
@pytest.mark.parametrize("looped", [False, True])
def test_construction_equals_preconditioned_gd(problem, parametrisation, looped):
    X, y, x_q = problem
    L = 4
    if looped:
        gamma = random_preconditioners(1, seed=5)[0]
        model = lsa_from_preconditioned_gd(
            gamma, looped=True, n_loops=L, parametrisation=parametrisation
        )
        gammas = gamma.expand(L, D, D)
    else:
        gammas = random_preconditioners(L, seed=6)
        model = lsa_from_preconditioned_gd(gammas, parametrisation=parametrisation)
    assert model.config.parametrisation == parametrisation and model.config.looped == looped
    assert next(model.parameters()).dtype == F64
    Z = build_prompt(X, y, x_q)

    with torch.no_grad():
        y_hat, cache = model.run_with_cache(Z, names_filter=lambda name: name.startswith("hook_z"))
    reference = preconditioned_gd(X, y, gammas)
    assert reference.weights.shape == (L + 1, B, D)
    torch.testing.assert_close(
        model.predict(Z).detach(), reference.predict(x_q)[-1], rtol=1e-10, atol=1e-10
    )
    torch.testing.assert_close(
        -y_hat[:, -1, -1], reference.predict(x_q)[-1], rtol=1e-10, atol=1e-10
    )

    # Second, independent check: every layer's label row holds the residuals of w_t.
    for t, w in enumerate(gd_by_hand(X, y, gammas)):
        Zt = cache[f"hook_z.{t}"]
        torch.testing.assert_close(
            Zt[:, D, :N], y - torch.einsum("bnd,bd->bn", X, w), rtol=1e-10, atol=1e-10
        )
        torch.testing.assert_close(Zt[:, D, N], -(x_q * w).sum(-1), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(Zt[:, :D], Z[:, :D], rtol=0, atol=1e-12)  # covariates stay
        torch.testing.assert_close(reference.weights[t], w, rtol=1e-10, atol=1e-10)


def test_looped_construction_runs_any_number_of_loops(problem):
    X, y, x_q = problem
    gamma = random_preconditioners(1, seed=8)[0]
    model = lsa_from_preconditioned_gd(gamma, looped=True, n_loops=2)
    Z = build_prompt(X, y, x_q)
    reference = preconditioned_gd(X, y, gamma.expand(7, D, D)).predict(x_q)  # (8, B)
    with torch.no_grad():
        for k in (0, 1, 3, 7):
            torch.testing.assert_close(
                model.predict(Z, n_loops=k), reference[k], rtol=1e-10, atol=1e-10
            )


def test_construction_returns_a_new_model_with_sparse_weights():
    gammas = random_preconditioners(3, seed=9)
    model = lsa_from_preconditioned_gd(gammas)
    torch.testing.assert_close(model.A.detach()[:, 0], gammas.transpose(1, 2), rtol=0, atol=0)
    gammas.zero_()  # the model does not share storage with its input
    assert model.A.detach().abs().sum() > 0
    other = lsa_from_preconditioned_gd(random_preconditioners(3, seed=9), dtype=torch.float32)
    assert other.A.dtype == torch.float32 and other is not model


def test_full_construction_matrices():
    gammas = random_preconditioners(2, seed=10)
    model = lsa_from_preconditioned_gd(gammas, parametrisation="full")
    P, Q = model.layer_matrices()
    expected_P = torch.zeros(2, 1, D + 1, D + 1, dtype=F64)
    expected_P[..., D, D] = 1.0
    expected_Q = torch.zeros(2, 1, D + 1, D + 1, dtype=F64)
    expected_Q[:, 0, :D, :D] = -gammas.transpose(1, 2)
    torch.testing.assert_close(P.detach(), expected_P, rtol=0, atol=0)
    torch.testing.assert_close(Q.detach(), expected_Q, rtol=0, atol=0)


def test_construction_input_validation():
    gammas = random_preconditioners(3, seed=12)
    with pytest.raises(ValueError, match="n_loops"):
        lsa_from_preconditioned_gd(gammas[0], looped=True)
    with pytest.raises(ValueError, match=r"\(d, d\)"):
        lsa_from_preconditioned_gd(gammas, looped=True, n_loops=3)
    with pytest.raises(ValueError, match=r"\(L, d, d\)"):
        lsa_from_preconditioned_gd(gammas[0])
    with pytest.raises(ValueError, match="does not match"):
        lsa_from_preconditioned_gd(gammas, n_loops=2)
    with pytest.raises(ValueError, match="parametrisation"):
        lsa_from_preconditioned_gd(gammas, parametrisation="relaxed")  # type: ignore[arg-type]
    # (1, d, d) is accepted for a looped model
    model = lsa_from_preconditioned_gd(gammas[:1], looped=True, n_loops=2)
    assert model.config.n_layers == 2 and model.A.shape == (1, 1, D, D)
