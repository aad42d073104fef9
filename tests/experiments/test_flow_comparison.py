"""SGD and Adam against the population gradient flow (`icgd.experiments.common.flow_comparison`):
at matching times (time = step × lr) SGD with a small learning rate tracks the flow within its own
computed noise."""

from __future__ import annotations

import math

import torch

from icgd.core.rng import make_generator
from icgd.experiments.common import prompt_mse, regression_sampler
from icgd.experiments.common.flow_comparison import compare_with_flow, population_objective
from icgd.models import LinearSelfAttention, LSAConfig
from icgd.tasks import LinearRegression, LinearRegressionConfig
from icgd.training import OptimizerConfig

F64 = torch.float64
H = torch.tensor([[1.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 3.0]], dtype=F64)
THETA0 = torch.tensor([1.0, -0.5, 0.7], dtype=F64)


def test_sgd_tracks_the_flow_at_matching_times():
    """SGD at lr η after k steps = flow at t = kη, up to (i) the Euler bias, measured as the
    distance of full-batch population GD (same η) to the flow, and (ii) the minibatch noise.
    One sparse layer has a quadratic population loss (constant Hessian H) and minibatch gradients
    linear in θ, so e_k = θ_SGD − θ_GD obeys e_{k+1} = (I − ηH) e_k − η ξ_k exactly, ξ_k the
    zero-mean gradient noise at θ_SGD,k with covariance C_k (estimated from 32 batches at each
    recorded point, held until the next): E e_k e_kᵀ = S_k, S_{k+1} = M S_k Mᵀ + η² C_k,
    M = I − ηH, and SE_k = √tr S_k (to first order: C is taken along SGD's path).
    Tolerance: bias + 4 SE_k. It must be small against the flow's own displacement."""
    task = LinearRegression(
        LinearRegressionConfig(d=2, n=10, covariance="eigenvalues", eigenvalues=(1.0, 0.5)),
        dtype=F64,
    )
    cfg = LSAConfig(d=2, n_layers=1, parametrisation="sparse", init_std=0.1)
    lr, steps, batch = 0.02, 200, 1024
    optimizers = {"sgd": OptimizerConfig(kind="sgd", lr=lr), "adam": OptimizerConfig(lr=0.01)}
    out = compare_with_flow(cfg, task, optimizers, steps=steps, batch_size=batch, record_every=20)
    sgd, adam = out.tracks["sgd"], out.tracks["adam"]
    torch.testing.assert_close(sgd.t, sgd.steps.to(F64) * lr)
    assert float(sgd.distance[0]) < 1e-15 and float(adam.distance[0]) < 1e-15  # same init

    objective = population_objective(cfg, task)
    theta, gd_gap = sgd.theta[0].clone(), [0.0]
    for k in range(1, steps + 1):  # full-batch population GD, same lr
        th = theta.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(objective({"A": th.reshape(1, 1, 2, 2)}), th)
        theta = theta - lr * grad
        if k % 20 == 0:
            idx = int(torch.searchsorted(out.flow.t, torch.tensor(k * lr, dtype=F64)))
            gd_gap.append(float((theta - out.flow.theta_flat[idx]).norm()))
    covs = [_batch_gradient_covariance(cfg, task, th, batch) for th in sgd.theta]
    hess = torch.autograd.functional.hessian(
        lambda th: objective({"A": th.reshape(1, 1, 2, 2)}), sgd.theta[0]
    )
    M, S, se = torch.eye(4, dtype=F64) - lr * hess, torch.zeros(4, 4, dtype=F64), [0.0]
    for k in range(steps):  # S_{k+1} = M S_k Mᵀ + η² C(θ_k), C piecewise constant
        S = M @ S @ M.T + lr**2 * covs[k // 20]
        if (k + 1) % 20 == 0:
            se.append(math.sqrt(float(torch.trace(S))))
    se = torch.tensor(se)
    tol = torch.tensor(gd_gap) + 4 * se + 1e-12
    assert bool((sgd.distance <= tol).all()), (sgd.distance, tol)
    displacement = float((out.flow.theta_flat[-1] - out.flow.theta_flat[0]).norm())
    assert float(tol.max()) < 0.1 * displacement, (gd_gap, se, displacement)
    assert float((sgd.loss[-1] - sgd.flow_loss[-1]).abs()) < 0.01 * float(sgd.flow_loss[-1])


def _batch_gradient_covariance(cfg, task, flat, batch, n_batches=32) -> torch.Tensor:
    """(p, p) covariance of the minibatch gradient at θ = ``flat``, from ``n_batches`` batches."""
    model = LinearSelfAttention(cfg, dtype=F64)
    with torch.no_grad():
        model.A.copy_(flat.reshape(model.A.shape))
    sampler, gen = regression_sampler(task), make_generator(7)
    grads = []
    for _ in range(n_batches):
        (g,) = torch.autograd.grad(prompt_mse(model, sampler(batch, gen)), [model.A])
        grads.append(g.reshape(-1))
    return torch.cov(torch.stack(grads).T)
