"""`icgd.analysis.identify`: the closed-form predictions equal the reference algorithms, every
candidate recovers the parameters of the algorithm it is fitted to, and the one-step bootstrap's
spread matches the spread of fits on independent fitting sets."""

from __future__ import annotations

import math

import pytest
import torch

from icgd.algorithms import (
    chebyshev_iteration,
    debiased_gd,
    gd_beta,
    gradient_descent,
    iterative_newton,
    ols,
    preconditioned_gd,
    ridge,
)
from icgd.analysis.identify import (
    Chebyshev,
    DebiasedGD,
    GDBeta,
    GradientDescent,
    IterativeNewton,
    ModelView,
    OrdinaryLeastSquares,
    PreconditionedGD,
    Ridge,
    identify,
)
from icgd.analysis.identify.fitting import FitData, bootstrap_weights, one_step_bootstrap
from icgd.analysis.identify.spectral import (
    chebyshev_filter,
    gd_filter,
    newton_filter,
    ols_filter,
    pgd_weights,
    ridge_filter,
    spectrum,
)
from icgd.tasks import LinearRegression, LinearRegressionConfig

F64 = torch.float64


def _data(B: int = 64, n: int = 12, d: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(B, n, d, generator=g, dtype=F64)
    y = torch.randn(B, n, generator=g, dtype=F64)
    return X, y, torch.randn(B, d, generator=g, dtype=F64)


def _task(d: int = 4, n: int = 20, noise: float = 0.0) -> LinearRegression:
    return LinearRegression(LinearRegressionConfig(d=d, n=n, noise_std=noise), dtype=F64)


@pytest.mark.parametrize("centred", [False, True])
def test_spectral_filters_equal_the_reference_algorithms(centred):
    X, y, x_q = _data()
    spec = spectrum(X, y, x_q, centred=centred)
    one = torch.tensor([0.0], dtype=F64)  # placeholder shape (Q = 1)
    for k in range(5):
        eta = torch.tensor([0.37], dtype=F64)
        got = spec.predict(gd_filter(spec.s, eta, k))[0]
        run = debiased_gd if centred else gradient_descent
        want = run(X, y, 0.37, k).predict(x_q)[-1] if k else torch.zeros_like(got)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    if centred:
        return
    for k in range(4):
        got = spec.predict(newton_filter(spec.s, torch.tensor([0.02], dtype=F64), k))[0]
        want = iterative_newton(X, y, k, alpha=0.02).predict(x_q)[-1]
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
        lo, hi = torch.tensor([0.3], dtype=F64), torch.tensor([2.5], dtype=F64)
        got = spec.predict(chebyshev_filter(spec.s, lo, hi, k))[0]
        want = chebyshev_iteration(X, y, k, interval=(0.3, 2.5)).predict(x_q)[-1]
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    got = spec.predict(ridge_filter(spec.s, torch.tensor([1.7], dtype=F64), spec.n))[0]
    torch.testing.assert_close(got, (ridge(X, y, 1.7) * x_q).sum(-1), rtol=0, atol=1e-10)
    got = spec.predict(ols_filter(spec.s, spec.n)[None] + one[:, None, None])[0]
    torch.testing.assert_close(got, (ols(X, y) * x_q).sum(-1), rtol=0, atol=1e-10)


def test_ols_filter_is_min_norm_when_n_below_d():
    X, y, x_q = _data(n=3, d=5)
    spec = spectrum(X, y, x_q)
    got = spec.predict(ols_filter(spec.s, spec.n)[None])[0]
    torch.testing.assert_close(got, (ols(X, y) * x_q).sum(-1), rtol=0, atol=1e-10)


def test_pgd_weights_equal_preconditioned_gd():
    X, y, _ = _data()
    d = X.shape[2]
    gamma = 0.2 * torch.eye(d, dtype=F64) + 0.05 * torch.randn(d, d, dtype=F64)
    S_hat = X.transpose(1, 2) @ X / X.shape[1]
    b = torch.einsum("bnd,bn->bd", X, y) / X.shape[1]
    want = preconditioned_gd(X, y, gamma.expand(3, d, d)).final
    torch.testing.assert_close(pgd_weights(S_hat, b, gamma, 3), want, rtol=0, atol=1e-12)


BETA = torch.tensor([0.5, -1.0, 0.2, 0.0], dtype=F64)  # GD-β's learned start (d = 4)


def _view(fn) -> ModelView:
    return ModelView(predict_fn=fn)


# (candidate, the algorithm as a model, its true parameters, its true steps)
KNOWN = [
    (
        GradientDescent(),
        lambda X, y, q: gradient_descent(X, y, 0.4, 3).predict(q)[-1],
        {"eta": 0.4},
        3,
    ),
    (DebiasedGD(), lambda X, y, q: debiased_gd(X, y, 0.6, 2).predict(q)[-1], {"step": 0.6}, 2),
    (
        IterativeNewton(),
        lambda X, y, q: iterative_newton(X, y, 2, alpha=0.04).predict(q)[-1],
        {"alpha": 0.04},
        2,
    ),
    (
        Chebyshev(),
        lambda X, y, q: chebyshev_iteration(X, y, 3, interval=(0.4, 2.0)).predict(q)[-1],
        {"lam_lo": 0.4, "lam_hi": 2.0},
        3,
    ),
    (Ridge(), lambda X, y, q: (ridge(X, y, 3.0) * q).sum(-1), {"lam": 3.0}, None),
    (OrdinaryLeastSquares(), lambda X, y, q: (ols(X, y) * q).sum(-1), {}, None),
    (
        GDBeta(),
        lambda X, y, q: gd_beta(X, y, BETA, 0.3, 2).predict(q)[-1],
        {"eta": 0.3, "beta": BETA},
        2,
    ),
]


@pytest.mark.parametrize("candidate, fn, true, steps", KNOWN, ids=[c.name for c, *_ in KNOWN])
def test_each_candidate_recovers_the_algorithm_it_is_fitted_to(candidate, fn, true, steps):
    result = identify(
        _view(fn), _task(), algorithms=[candidate], n_prompts=1024, n_bootstrap=16, seed=1
    )
    fit = result[candidate.name]
    assert fit.steps == steps
    for name, value in true.items():
        value = torch.as_tensor(value, dtype=F64)
        torch.testing.assert_close(fit.parameters[name].value, value, rtol=1e-7, atol=1e-10)
        assert fit.parameters[name].sd.max().item() < 1e-8  # exact data: no spread
    assert fit.spd < 1e-24 and fit.r2 > 1 - 1e-12 and fit.exact
    assert fit.ilwd < 1e-20 and fit.weight_cosine == pytest.approx(1.0, abs=1e-12)


def test_newton_fit_tells_k_apart_where_the_coarse_grid_cannot():
    """Newton's loss is sharp in α (powers 2^k): on the coarse grid alone k = 3…5 look better
    than the true k = 2; zooming every k finds k = 2 exactly."""
    X, y, x_q = _data(B=1024, n=20, d=5, seed=3)
    target = iterative_newton(X, y, 2, alpha=0.05).predict(x_q)[-1]
    fits = IterativeNewton().fit(FitData(X, y, x_q), target)
    best = min(fits, key=lambda f: f.loss)
    assert best.steps == 2 and best.loss < 1e-25
    assert math.exp(best.theta.item()) == pytest.approx(0.05, rel=1e-9)


def _independent_fits(candidate_factory, fn, name: str, seeds: int, B: int):
    """(fitted values over independent fitting sets, the mean bootstrap SD)."""
    values, sds = [], []
    for seed in range(seeds):
        result = identify(
            _view(fn),
            _task(noise=0.5),
            algorithms=[candidate_factory()],
            n_prompts=B,
            n_heldout=16,
            n_bootstrap=200,
            ilwd_prompts=0,
            seed=seed,
        )
        p = result[candidate_factory().name].parameters[name]
        values.append(p.value.item())
        sds.append(p.sd.item())
    return torch.tensor(values, dtype=F64), torch.tensor(sds, dtype=F64)


@pytest.mark.parametrize("which", ["ridge", "gd"])
def test_bootstrap_sd_matches_the_spread_over_independent_fitting_sets(which):
    """The one-step bootstrap SD (one fitting set) estimates the SD of the fit across fitting
    sets. 24 independent sets: the empirical SD has relative SE ≈ 1/√(2·23) = 0.147, so
    |log(bootstrap / empirical)| < 4 SE = 0.59."""

    def model(X, y, q):  # a model neither candidate matches: one GD step on a ridge fit
        return 0.5 * (ridge(X, y, 2.0) * q).sum(-1) + gradient_descent(X, y, 0.3, 1).final.mul(
            q
        ).sum(-1)

    if which == "ridge":
        values, sds = _independent_fits(Ridge, model, "lam", 24, 256)
    else:
        values, sds = _independent_fits(lambda: GradientDescent(steps=[1]), model, "eta", 24, 256)
    ratio = sds.mean().item() / values.std().item()
    se = 1 / math.sqrt(2 * 23)
    assert abs(math.log(ratio)) < 4 * se, f"bootstrap/empirical SD = {ratio:.3f} (SE ≈ {se:.3f})"


def test_one_step_bootstrap_is_exact_for_a_linear_parameter():
    """One-step preconditioned GD is linear in Γ: the one-step bootstrap equals refitting Γ by
    weighted least squares on each resample."""
    X, y, x_q = _data(B=512, n=10, d=3, seed=4)
    target = (ridge(X, y, 1.0) * x_q).sum(-1)
    fits = PreconditionedGD(steps=[1]).fit(FitData(X, y, x_q), target)
    weights = bootstrap_weights(512, 8, torch.Generator().manual_seed(0))
    _, theta = one_step_bootstrap(fits, target, weights)  # (R, d²)
    b = torch.einsum("bnd,bn->bd", X, y) / X.shape[1]
    F = (x_q[:, :, None] * b[:, None, :]).reshape(512, 9)  # (B, d²): the prediction is F vec Γ
    root = weights.sqrt().unsqueeze(-1)  # (R, B, 1)
    refit = torch.linalg.lstsq(root * F, root * target[:, None]).solution[..., 0]  # (R, d²)
    torch.testing.assert_close(theta, refit, rtol=0, atol=1e-10)
