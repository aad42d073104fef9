"""The finite-task-pool posterior against a scipy Gaussian-likelihood reference, its limits in σ,
and its calibration (it is the true posterior) by Monte Carlo, in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import norm

from icgd.algorithms import TaskPoolResult, ols, ridge, task_pool_posterior

F64 = torch.float64


def pool_prompts(B, n, d, K, sigma, seed):
    """A pool (K, d) of standard normal tasks; each prompt draws one uniformly, y = Xw + σε."""
    g = torch.Generator().manual_seed(seed)
    tasks = torch.randn(K, d, generator=g, dtype=F64)
    k_true = torch.randint(K, (B,), generator=g)
    X = torch.randn(B, n, d, generator=g, dtype=F64)
    w = tasks[k_true]  # (B, d)
    y = torch.einsum("bnd,bd->bn", X, w) + sigma * torch.randn(B, n, generator=g, dtype=F64)
    x_q = torch.randn(B, d, generator=g, dtype=F64)
    y_q = (x_q * w).sum(-1) + sigma * torch.randn(B, generator=g, dtype=F64)
    return X, y, x_q, y_q, tasks, k_true


def reference(X, y, tasks, sigma):
    """Per prompt and prefix, numpy/scipy: log p_k = Σ_{i≤m} log N(y_i; x_iᵀ w_k, σ²) − logZ."""
    B, n, _ = X.shape
    out = np.zeros((n + 1, B, tasks.shape[0]))
    for b in range(B):
        for m in range(n + 1):
            mean = X[b, :m].numpy() @ tasks.numpy().T  # (m, K)
            loglik = norm.logpdf(y[b, :m].numpy()[:, None], mean, sigma).sum(0)  # (K,)
            out[m, b] = np.exp(loglik - logsumexp(loglik))
    return torch.tensor(out)


def test_matches_a_gaussian_likelihood_reference_for_every_prefix():
    X, y, x_q, _, tasks, _ = pool_prompts(4, 6, 3, 5, 0.7, seed=0)
    result = task_pool_posterior(X, y, tasks, 0.7)
    assert isinstance(result, TaskPoolResult)
    assert result.posterior.shape == (7, 4, 5) and result.weights.shape == (7, 4, 3)
    torch.testing.assert_close(result.posterior, reference(X, y, tasks, 0.7), rtol=0, atol=1e-12)
    torch.testing.assert_close(result.posterior.sum(-1), torch.ones(7, 4, dtype=F64))
    torch.testing.assert_close(result.weights, result.posterior @ tasks, rtol=0, atol=1e-14)
    by_task = x_q @ tasks.T  # (B, K): x_qᵀ w_k
    torch.testing.assert_close(
        result.predict(x_q), (result.posterior * by_task).sum(-1), rtol=0, atol=1e-13
    )
    # prefix 0 is the uniform prior: the pool mean
    torch.testing.assert_close(result.weights[0], tasks.mean(0).expand(4, 3))


def test_shared_and_per_prompt_pools_agree_and_batching_is_exact():
    X, y, _, _, tasks, _ = pool_prompts(3, 5, 2, 4, 0.5, seed=1)
    shared = task_pool_posterior(X, y, tasks, 0.5)
    per_prompt = task_pool_posterior(X, y, tasks.expand(3, 4, 2), 0.5)
    torch.testing.assert_close(shared.posterior, per_prompt.posterior, rtol=0, atol=0)
    for b in range(3):
        alone = task_pool_posterior(X[b : b + 1], y[b : b + 1], tasks, 0.5)
        torch.testing.assert_close(alone.posterior, shared.posterior[:, b : b + 1])


@pytest.mark.parametrize("sigma", [1e-2, 1e-4, 1e-9])
def test_small_noise_concentrates_on_the_true_task(sigma):
    """Noiseless data from task k*: as σ → 0 the posterior is one-hot at k* (log-sum-exp keeps it
    finite even where every unnormalised likelihood underflows)."""
    X, y, _, _, tasks, k_true = pool_prompts(6, 8, 3, 10, 0.0, seed=2)
    result = task_pool_posterior(X, y, tasks, sigma)
    assert torch.isfinite(result.posterior).all()
    p_true = result.posterior[-1, torch.arange(6), k_true]
    assert (p_true > 1 - 1e-12).all(), p_true
    torch.testing.assert_close(result.final, tasks[k_true], rtol=0, atol=1e-10)


def test_large_noise_keeps_the_prior():
    X, y, _, _, tasks, _ = pool_prompts(3, 8, 3, 6, 0.5, seed=3)
    result = task_pool_posterior(X, y, tasks, 1e6)
    torch.testing.assert_close(result.posterior, torch.full((9, 3, 6), 1 / 6, dtype=F64))


def test_posterior_is_calibrated_and_beats_ridge_and_ols():
    """It is the true posterior: E[p_{k*}] = E[Σ_k p_k²] (both are P(k* = k' | data) averaged over
    the data), checked within 4 standard errors; being the Bayes predictor for this prior, its
    query error is below ridge's and OLS's."""
    B, sigma = 4000, 1.0
    X, y, x_q, y_q, tasks, k_true = pool_prompts(B, 3, 3, 8, sigma, seed=4)
    post = task_pool_posterior(X, y, tasks, sigma).posterior[-1]  # (B, K)
    diff = post[torch.arange(B), k_true] - post.square().sum(-1)  # (B,), mean 0 in expectation
    se = diff.std() / B**0.5
    assert diff.mean().abs() < 4 * se, (diff.mean(), se)
    mis = task_pool_posterior(X, y, tasks, 0.1).posterior[-1]  # a wrong σ is not calibrated
    miss = mis[torch.arange(B), k_true] - mis.square().sum(-1)
    assert miss.mean().abs() > 4 * miss.std() / B**0.5
    mse = (task_pool_posterior(X, y, tasks, sigma).predict(x_q)[-1] - y_q).square().mean()
    mse_ridge = ((ridge(X, y, sigma**2) * x_q).sum(-1) - y_q).square().mean()
    mse_ols = ((ols(X, y) * x_q).sum(-1) - y_q).square().mean()
    assert mse < mse_ridge < mse_ols, (mse, mse_ridge, mse_ols)


def test_bad_arguments_are_refused():
    X, y, _, _, tasks, _ = pool_prompts(2, 4, 3, 5, 0.5, seed=0)
    with pytest.raises(ValueError, match="noise_std"):
        task_pool_posterior(X, y, tasks, 0.0)
    with pytest.raises(ValueError, match="tasks"):
        task_pool_posterior(X, y, tasks[:, :2], 0.5)
