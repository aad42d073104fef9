"""Population loss of LSA from (P, Q): equal to the closed forms icgd has, within 4 SE of Monte
Carlo of the real models, autograd = finite differences of the CRN loss, batching = separate
calls."""

import math

import pytest
import torch

from icgd.models.lsa import LinearSelfAttention, LSAConfig
from icgd.tasks.linear_regression import LinearRegression, LinearRegressionConfig
from icgd.theory.looped import looped_loss
from icgd.theory.one_layer import one_layer_loss
from icgd.theory.population import (
    GaussianRegression,
    heads,
    population_draws,
    population_gradient,
    population_loss,
    sparse_heads,
)
from icgd.theory.preconditioner_loss import preconditioner_loss
from icgd.theory.wishart import WishartMoments

F64 = torch.float64


def _randn(*shape, seed, scale=1.0):
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _rotated(eigs, seed):
    q, _ = torch.linalg.qr(_randn(len(eigs), len(eigs), seed=seed))
    return q @ torch.diag(torch.tensor(eigs, dtype=F64)) @ q.T


SIGMA = _rotated([1.5, 1.0, 0.4], 1)
D = 3


@pytest.mark.parametrize("noise", [0.0, 0.5])
def test_sparse_stacked_equals_preconditioner_loss(noise):
    n, L = 10, 3
    cov_w = torch.linalg.inv(SIGMA)
    A = 0.5 * cov_w + _randn(L, 1, D, D, seed=2, scale=0.1)  # non-symmetric, per layer
    data = GaussianRegression(SIGMA, n, weight_cov=cov_w, noise_std=noise)
    loss, se = population_loss(*sparse_heads(A), data, n_samples=6_000, seed=4)
    ref, ref_se = preconditioner_loss(
        A[:, 0].transpose(1, 2),
        SIGMA,
        n,
        weight_cov=cov_w,
        noise_std=noise,
        n_samples=6_000,
        seed=4,
    )
    assert abs(float(loss) - ref) < 1e-10 * ref and abs(float(se) - ref_se) < 1e-8 * ref_se


def test_one_layer_closed_form_equals_one_layer_loss():
    n, noise = 7, 0.3
    A = _randn(2, D, D, seed=3, scale=0.3)  # two heads: Γ = Σ_h A_hᵀ
    P, Q = sparse_heads(A.unsqueeze(0))
    data = GaussianRegression(SIGMA, n, noise_std=noise)
    loss, se = population_loss(P, Q, data)
    ref = one_layer_loss(A.sum(0).T, SIGMA, n, noise_std=noise)
    assert abs(float(loss) - ref) < 1e-12 * ref and float(se) == 0.0


def test_one_layer_closed_form_with_u_and_b_matches_crn_given_x():
    """u ≠ 0 (the βᵀΣβ term, via Isserlis for non-symmetric N) and B (irrelevant for one step)."""
    n, noise = 6, 0.4
    A, u, B = (
        _randn(1, 2, D, D, seed=5, scale=0.3),
        _randn(1, 2, D, seed=6),
        _randn(1, 2, D, D, seed=7),
    )
    P, Q = sparse_heads(A, u=u, B=B)
    data = GaussianRegression(SIGMA, n, weight_cov=torch.linalg.inv(SIGMA), noise_std=noise)
    exact, _ = population_loss(P, Q, data, method="closed_form")
    mc, se = population_loss(P, Q, data, method="given_x", n_samples=40_000, seed=1)
    assert abs(float(exact) - float(mc)) < 4 * float(se), f"{exact} vs {mc}, SE {float(se):.3g}"


def test_looped_equals_looped_loss_on_same_draws():
    n, L, a = 12, 3, 0.6
    sigma_inv = torch.linalg.inv(SIGMA)
    draws = population_draws(n, D, n_samples=5_000, seed=9)
    data = GaussianRegression(SIGMA, n, weight_cov=sigma_inv)
    P, Q = sparse_heads((a * sigma_inv).T.reshape(1, 1, D, D))
    loss, se = population_loss(P, Q, data, n_loops=L, draws=draws)
    lam = torch.linalg.eigvalsh(draws.g.transpose(1, 2) @ draws.g / n)  # (S, d) of S̃
    samples = (lam.unsqueeze(-1) ** torch.arange(2 * L + 1, dtype=F64)).sum(1)
    moments = WishartMoments(n=n, d=D, moments=samples.mean(0), samples=samples)
    ref, ref_se = looped_loss(a, L, n, D, moments=moments)
    assert abs(float(loss) - ref) < 1e-10 * ref and abs(float(se) - ref_se) < 1e-8 * ref_se


def _model_mc(cfg, weights, task, n_prompts, seed):
    """(mean, SE) of (ŷ − y_q)² of the real float64 model over fresh prompts."""
    model = LinearSelfAttention(cfg, dtype=F64)
    with torch.no_grad():
        for name, value in weights.items():
            getattr(model, name).copy_(value)
        batch = task.sample(n_prompts, torch.Generator().manual_seed(seed))
        err2 = (model.predict(batch.prompt()) - batch.y_q) ** 2
    return float(err2.mean()), float(err2.std()) / math.sqrt(n_prompts)


def _gd_like(L, H, seed, noise):
    """Full heads near the GD construction (P = e_{d+1}e_{d+1}ᵀ, Q = −[[0.4 I, 0], [0, 0]]/H)."""
    P0, Q0 = sparse_heads(0.4 / H * torch.eye(D, dtype=F64).expand(L, H, D, D))
    shape = (L, H, D + 1, D + 1)
    return {
        "P": P0 + _randn(*shape, seed=seed, scale=noise),
        "Q": Q0 + _randn(*shape, seed=seed + 1, scale=noise),
    }


EYE = torch.eye(D, dtype=F64)
CASES = {  # parametrisation, looped, n_layers, weights, weight_prior
    "full_2_layers": ("full", False, 2, lambda: _gd_like(2, 2, 11, 0.05), "identity"),
    "looped_sparse_u": (
        "sparse_u",
        True,
        3,
        lambda: {
            "A": (0.4 * EYE + _randn(D, D, seed=13, scale=0.1)).reshape(1, 1, D, D),
            "u": _randn(1, 1, D, seed=14, scale=0.2),
        },
        "inverse_covariance",
    ),
    "relaxed_2_layers": (
        "relaxed",
        False,
        2,
        lambda: {
            "A": 0.4 * EYE + _randn(2, 1, D, D, seed=15, scale=0.1),
            "B": _randn(2, 1, D, D, seed=16, scale=0.3),
        },
        "identity",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_within_4_se_of_real_model(case):
    kind, looped, L, make, prior = CASES[case]
    n, noise = 16, 0.3
    task = LinearRegression(
        LinearRegressionConfig(
            d=D,
            n=n,
            covariance="eigenvalues",
            eigenvalues=(1.5, 1.0, 0.4),
            weight_prior=prior,
            noise_std=noise,
        ),
        dtype=F64,
    )
    weights = make()
    cfg = LSAConfig(
        d=D,
        n_layers=L,
        looped=looped,
        parametrisation=kind,
        n_heads=next(iter(weights.values())).shape[1],
    )
    data = GaussianRegression(task.sigma, n, weight_cov=task.weight_covariance, noise_std=noise)
    P, Q = heads(kind, weights)
    theory, t_se = population_loss(P, Q, data, n_loops=L if looped else None, n_samples=20_000)
    mc, mc_se = _model_mc(cfg, weights, task, 200_000, seed=3)
    tot = math.hypot(float(t_se), mc_se)
    assert abs(float(theory) - mc) < 4 * tot, (
        f"{case}: theory {float(theory)} vs model {mc}, SE {tot:.3g}"
    )


def test_exact_and_monte_carlo_paths_agree_on_structured_heads():
    n = 8
    P, Q = sparse_heads(
        _randn(2, 1, D, D, seed=20, scale=0.3), u=_randn(2, 1, D, seed=21, scale=0.3)
    )
    data = GaussianRegression(SIGMA, n, noise_std=0.2)
    ex, ex_se = population_loss(P, Q, data, method="given_x", n_samples=8_000)
    mc, mc_se = population_loss(P, Q, data, method="monte_carlo", n_samples=8_000)
    assert float(ex_se) < float(mc_se)  # Rao–Blackwellisation over w*, ε helps
    tot = math.hypot(float(ex_se), float(mc_se))
    assert abs(float(ex) - float(mc)) < 4 * tot, f"{ex} vs {mc}, SE {tot:.3g}"


def _fd_check(params, kind, data, **kw):
    loss, _, grads = population_gradient(params, data, parametrisation=kind, **kw)
    h = 1e-5
    for name, value in params.items():
        direction = _randn(*value.shape, seed=30 + len(name))
        plus = dict(params, **{name: value + h * direction})
        minus = dict(params, **{name: value - h * direction})
        lp, _ = population_loss(*heads(kind, plus), data, **kw)
        lm, _ = population_loss(*heads(kind, minus), data, **kw)
        fd = float(lp - lm) / (2 * h)
        an = float((grads[name] * direction).sum())
        assert abs(fd - an) < 1e-6 * max(abs(an), 1e-3), f"{name}: autograd {an} vs FD {fd}"


def test_gradient_equals_finite_differences_full_crn():
    params = {
        "P": _randn(2, 1, D + 1, D + 1, seed=40, scale=0.3),
        "Q": _randn(2, 1, D + 1, D + 1, seed=41, scale=0.3),
    }
    data = GaussianRegression(SIGMA, 6, noise_std=0.2)
    _fd_check(params, "full", data, n_samples=2_000)


@pytest.mark.parametrize("n_loops", [None, 1])
def test_gradient_equals_finite_differences_structured(n_loops):
    L = 2 if n_loops is None else 1
    params = {"A": _randn(L, 2, D, D, seed=42, scale=0.3), "u": _randn(L, 2, D, seed=43, scale=0.3)}
    data = GaussianRegression(SIGMA, 6, weight_cov=torch.linalg.inv(SIGMA), noise_std=0.2)
    _fd_check(params, "sparse_u", data, n_loops=n_loops, n_samples=2_000)  # given_x / closed form
    relaxed = {"A": params["A"], "B": _randn(L, 2, D, D, seed=44, scale=0.3)}
    _fd_check(relaxed, "relaxed", data, n_loops=n_loops, n_samples=2_000)


@pytest.mark.parametrize(
    ("kind", "n_loops"), [("full", None), ("relaxed", None), ("sparse_u", 3), ("sparse", None)]
)
def test_batched_equals_separate_calls(kind, n_loops):
    S, L = 3, 1 if n_loops else 2
    shapes = {
        "full": {"P": (L, 1, D + 1, D + 1), "Q": (L, 1, D + 1, D + 1)},
        "relaxed": {"A": (L, 1, D, D), "B": (L, 1, D, D)},
        "sparse_u": {"A": (L, 1, D, D), "u": (L, 1, D)},
        "sparse": {"A": (L, 1, D, D)},
    }[kind]
    params = {k: _randn(S, *s, seed=50 + i, scale=0.3) for i, (k, s) in enumerate(shapes.items())}
    data = GaussianRegression(SIGMA, 6, noise_std=0.1)
    loss, se, grads = population_gradient(
        params, data, parametrisation=kind, n_loops=n_loops, n_samples=1_500
    )
    assert loss.shape == se.shape == (S,)
    for s in range(S):
        one = {k: v[s] for k, v in params.items()}
        l1, se1, g1 = population_gradient(
            one, data, parametrisation=kind, n_loops=n_loops, n_samples=1_500
        )
        torch.testing.assert_close(loss[s], l1, rtol=1e-12, atol=0)
        torch.testing.assert_close(se[s], se1, rtol=1e-10, atol=0)
        for k in params:
            torch.testing.assert_close(grads[k][s], g1[k], rtol=1e-10, atol=1e-14)


def test_same_seed_same_numbers_and_bad_input():
    P, Q = heads(
        "full", {"P": _randn(1, 1, D + 1, D + 1, seed=60), "Q": _randn(1, 1, D + 1, D + 1, seed=61)}
    )
    data = GaussianRegression(SIGMA, 5)
    a = population_loss(P, Q, data, n_samples=500, seed=3)
    b = population_loss(P, Q, data, n_samples=500, seed=3)
    assert float(a[0]) == float(b[0])
    with pytest.raises(ValueError, match="structured"):
        population_loss(P, Q, data, method="given_x")
    with pytest.raises(ValueError, match="looped"):
        population_loss(torch.cat([P, P]), torch.cat([Q, Q]), data, n_loops=2)
