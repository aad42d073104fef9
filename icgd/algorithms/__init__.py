"""Reference algorithms as plain batched functions (no Python loop over prompts or points).

Every registered algorithm carries an `example` (the `Algorithm` protocol of
`icgd.algorithms.plugins`): its arguments for B prompts, attached at the bottom of this module.
"""

import torch
from torch import Tensor

from icgd.algorithms.chebyshev import chebyshev_iteration, richardson_iteration, spectral_interval
from icgd.algorithms.debiased_gd import debiased_gd
from icgd.algorithms.entropic_ot import (
    OTResult,
    semi_dual,
    semi_dual_ascent,
    semi_dual_gradient,
    sinkhorn_log,
    squared_distances,
)
from icgd.algorithms.gd import (
    GDResult,
    best_step_size,
    empirical_risk_gradient,
    gradient_descent,
    preconditioned_gd,
)
from icgd.algorithms.gd_beta import fit_gd_beta_init, gd_beta
from icgd.algorithms.gd_plus_plus import (
    fit_gd_plus_plus,
    gd_plus_plus,
    gd_plus_plus_spectral,
    gd_plus_plus_steps,
    gd_plus_plus_transform,
)
from icgd.algorithms.lasso import LassoResult, fista_lasso_gram, lasso, prefix_lasso
from icgd.algorithms.least_squares import bayes_posterior_mean, ols, ridge
from icgd.algorithms.newton import NewtonResult, iterative_newton, newton_alpha
from icgd.algorithms.plugins import AlgorithmExample, with_example
from icgd.algorithms.prefix import (
    prefix_averaging,
    prefix_knn,
    prefix_ols,
    prefix_one_step_gd,
    prefix_ridge,
)
from icgd.algorithms.relu_net import ReLUNetFit, fit_relu_nets, init_relu_nets, prefix_relu_net
from icgd.algorithms.task_pool import TaskPoolResult, task_pool_posterior
from icgd.algorithms.td import (
    TDResult,
    average_reward_td,
    batch_td0,
    eligibility_traces,
    residual_gradient,
    td_errors,
    td_fixed_point,
    td_lambda,
)
from icgd.algorithms.trees import prefix_boosting, prefix_decision_tree

__all__ = [
    "GDResult",
    "LassoResult",
    "NewtonResult",
    "OTResult",
    "ReLUNetFit",
    "TDResult",
    "TaskPoolResult",
    "average_reward_td",
    "batch_td0",
    "bayes_posterior_mean",
    "best_step_size",
    "chebyshev_iteration",
    "debiased_gd",
    "eligibility_traces",
    "empirical_risk_gradient",
    "fista_lasso_gram",
    "fit_gd_beta_init",
    "fit_gd_plus_plus",
    "fit_relu_nets",
    "gd_beta",
    "gd_plus_plus",
    "gd_plus_plus_spectral",
    "gd_plus_plus_steps",
    "gd_plus_plus_transform",
    "gradient_descent",
    "init_relu_nets",
    "iterative_newton",
    "lasso",
    "newton_alpha",
    "ols",
    "preconditioned_gd",
    "prefix_averaging",
    "prefix_boosting",
    "prefix_decision_tree",
    "prefix_knn",
    "prefix_lasso",
    "prefix_ols",
    "prefix_one_step_gd",
    "prefix_relu_net",
    "prefix_ridge",
    "residual_gradient",
    "richardson_iteration",
    "ridge",
    "semi_dual",
    "semi_dual_ascent",
    "semi_dual_gradient",
    "sinkhorn_log",
    "spectral_interval",
    "squared_distances",
    "task_pool_posterior",
    "td_errors",
    "td_fixed_point",
    "td_lambda",
]


# --- examples: each registered algorithm's arguments for B prompts (float64) ----------------------


def _normal(generator: torch.Generator, *shape: int) -> Tensor:
    """Standard normal float64 numbers of `shape` on the generator's device."""
    return torch.randn(*shape, generator=generator, dtype=torch.float64, device=generator.device)


def _regression(g: torch.Generator, B: int, query: str = "none", n: int = 6, d: int = 3) -> dict:
    """X (B, n, d), y (B, n), and x_q: none, (B, d) ("one") or (B, n, d) ("each")."""
    data = {"X": _normal(g, B, n, d), "y": _normal(g, B, n)}
    if query != "none":
        data["x_q"] = _normal(g, B, d) if query == "one" else _normal(g, B, n, d)
    return data


def _transitions(g: torch.Generator, B: int, n: int = 6, d: int = 2) -> dict:
    """phi, phi_next (B, n, d) and rewards (B, n), standard normal."""
    return {
        "phi": _normal(g, B, n, d),
        "phi_next": _normal(g, B, n, d),
        "rewards": _normal(g, B, n),
    }


def _cost(g: torch.Generator, B: int, n: int = 4, m: int = 5) -> dict:
    """C (B, n, m): squared distances between standard normal clouds in d = 2."""
    return {"C": squared_distances(_normal(g, B, n, 2), _normal(g, B, m, 2))}


def _td(**options):
    """The example of a batch TD method: 3 iterations at step 0.5 on `_transitions`."""
    return lambda B, g: AlgorithmExample(_transitions(g, B), {"steps": 3, "alpha": 0.5, **options})


def _prefix(query: str, **options):
    """The example of a prefix baseline: `_regression` with queries `query`, and `options`."""
    return lambda B, g: AlgorithmExample(_regression(g, B, query), options)


def _spd(g: torch.Generator, d: int = 3) -> Tensor:
    """A random symmetric positive definite (d, d) matrix, `A Aᵀ / d + I`."""
    A = _normal(g, d, d)
    return A @ A.T / d + torch.eye(d, dtype=A.dtype, device=A.device)  # (d, d) ≻ I


def _preconditioned_gd(B: int, g: torch.Generator) -> AlgorithmExample:
    inputs = {**_regression(g, B), "w0": _normal(g, B, 3)}
    return AlgorithmExample(inputs, {"preconditioners": 0.1 * _normal(g, 2, 3, 3)}, out_axis=1)


def _relu_net(B: int, g: torch.Generator) -> AlgorithmExample:
    init = init_relu_nets((B, 6), 3, 4, g, dtype=torch.float64, device=g.device)
    return AlgorithmExample({**_regression(g, B, "each"), "init": init}, {"hidden": 4, "steps": 3})


def _gd_beta(B: int, g: torch.Generator) -> AlgorithmExample:
    options = {"w0": _normal(g, 3), "step_sizes": 0.1, "n_steps": 3}
    return AlgorithmExample(_regression(g, B), options, out_axis=1)


def _task_pool(B: int, g: torch.Generator) -> AlgorithmExample:
    options = {"tasks": _normal(g, 4, 3), "noise_std": 0.5}
    return AlgorithmExample(_regression(g, B), options, out_axis=1)


_EXAMPLES = {
    gradient_descent: lambda B, g: AlgorithmExample(
        _regression(g, B), {"step_sizes": 0.1, "n_steps": 3}, out_axis=1
    ),
    preconditioned_gd: _preconditioned_gd,
    ols: lambda B, g: AlgorithmExample(_regression(g, B)),
    ridge: lambda B, g: AlgorithmExample({**_regression(g, B), "lam": 0.1 + _normal(g, B).abs()}),
    bayes_posterior_mean: lambda B, g: AlgorithmExample(
        _regression(g, B), {"noise_std": 0.5, "prior_cov": _spd(g)}
    ),
    gd_plus_plus: _prefix("one", eta=0.5, gamma=0.1),
    lasso: lambda B, g: AlgorithmExample(_regression(g, B), {"alpha": 0.05}),
    prefix_relu_net: _relu_net,
    prefix_decision_tree: _prefix("each", max_depth=2),
    prefix_boosting: _prefix("one", n_estimators=3, max_depth=2),
    prefix_ols: _prefix("each"),
    prefix_ridge: lambda B, g: AlgorithmExample(
        _regression(g, B, "one"), {"lam": torch.tensor([0.0, 0.5, 2.0])}, out_axis=1
    ),
    prefix_one_step_gd: _prefix("each", step=0.5),
    prefix_averaging: _prefix("one"),
    prefix_knn: _prefix("each", k_neighbors=2),
    batch_td0: _td(gamma=0.9),
    td_lambda: _td(gamma=0.9, trace_decay=0.5),
    residual_gradient: _td(gamma=0.9),
    average_reward_td: lambda B, g: AlgorithmExample(
        {**_transitions(g, B), "rbar0": _normal(g, B)}, {"steps": 3, "alpha": 0.5, "beta": 0.5}
    ),
    sinkhorn_log: lambda B, g: AlgorithmExample(_cost(g, B), {"eps": 0.5}),
    semi_dual_ascent: lambda B, g: AlgorithmExample(
        _cost(g, B), {"eps": 0.5, "steps": 4, "return_iterates": True}, out_axes={"iterates": 1}
    ),
    iterative_newton: lambda B, g: AlgorithmExample(
        _regression(g, B), {"n_steps": 3}, out_axis=1, out_axes={"alpha": 0}
    ),
    richardson_iteration: lambda B, g: AlgorithmExample(
        _regression(g, B), {"n_steps": 3}, out_axis=1
    ),
    chebyshev_iteration: lambda B, g: AlgorithmExample(
        _regression(g, B), {"n_steps": 4}, out_axis=1
    ),
    gd_beta: _gd_beta,
    task_pool_posterior: _task_pool,
    debiased_gd: lambda B, g: AlgorithmExample(_regression(g, B), {"step_sizes": 0.5}, out_axis=1),
}
for _algorithm, _example in _EXAMPLES.items():
    with_example(_algorithm, _example)
