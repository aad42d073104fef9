"""The test of `function-classes`: err(k) of the trained model and of each prefix baseline on one
test batch (the model also at shifted queries), and the baselines' hyper-parameters."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import torch
from torch import Tensor

from icgd.algorithms import (
    prefix_averaging,
    prefix_boosting,
    prefix_decision_tree,
    prefix_knn,
    prefix_lasso,
    prefix_ols,
    prefix_relu_net,
    prefix_ridge,
)
from icgd.core.rng import derive_seed, make_generator
from icgd.experiments.common.causal import normalised_error, prefix_baseline
from icgd.experiments.function_classes.config import (
    SLOW_BASELINES,
    Baseline,
    FunctionClassesConfig,
)
from icgd.models import GPT


def sklearn_available() -> bool:
    """Whether scikit-learn is installed (found, not imported: importing it takes seconds)."""
    return importlib.util.find_spec("sklearn") is not None


def baseline_fn(name: Baseline, config: FunctionClassesConfig, seed: int) -> Callable[..., Tensor]:
    """`(X, y, x_q) -> predictions` of a prefix baseline (convention (b) of
    `icgd.algorithms.prefix`), with this run's hyper-parameters."""
    if name == "least_squares":
        return prefix_ols
    if name == "ridge":  # the Bayes posterior mean of w ~ N(0, I) under noise σ: λ = σ²
        return lambda X, y, q: prefix_ridge(X, y, q, lam=max(config.noise_std, 1e-6) ** 2)
    if name == "lasso":
        return lambda X, y, q: prefix_lasso(X, y, q, alpha=config.lasso_alpha)
    if name == "knn3":
        return lambda X, y, q: prefix_knn(X, y, q, k_neighbors=3)
    if name == "averaging":
        return prefix_averaging
    if name == "relu_net":
        gen = make_generator(derive_seed(seed, "relu_net_baseline"), "cpu")
        # Garg et al.: as many hidden units as the class's nets (100), Adam, per prompt
        return lambda X, y, q: prefix_relu_net(X, y, q, generator=gen, hidden=config.hidden)
    if name == "decision_tree":
        return lambda X, y, q: prefix_decision_tree(X, y, q, max_depth=config.tree_depth)
    return prefix_boosting  # "boosting"


def evaluate(
    model: GPT,
    batch,
    names: tuple[Baseline, ...],
    config: FunctionClassesConfig,
    seed: int,
) -> dict[str, Tensor]:
    """err(k) (n,) of the model and of each baseline on one test batch (module docstring).

    The fast baselines run in float64 on every prompt; the slow ones on the first
    `slow_baseline_prompts`.
    """
    X, y, x_q, y_q = batch.X, batch.y, batch.x_q, batch.y_q
    d = config.d
    with torch.no_grad():
        # the model predicts y_q at x_q: put the query in x's slot (the context is X itself when
        # the shift leaves the queries alone, and then x_q = X)
        pred = model(X, y) if x_q is X else _model_at_queries(model, X, y, x_q)
    errors = {"model": normalised_error(pred, y_q, d)}
    X64, y64, q64, yq64 = (t.double() for t in (X, y, x_q, y_q))
    for name in names:
        fn = baseline_fn(name, config, seed)
        m = config.slow_baseline_prompts if name in SLOW_BASELINES else X.shape[0]
        p = prefix_baseline(fn, X64[:m], y64[:m], q64[:m])
        errors[name] = normalised_error(p, yq64[:m], d)
    return errors


def _model_at_queries(model: GPT, X: Tensor, y: Tensor, x_q: Tensor) -> Tensor:
    """The model's prediction at position i when x_i is replaced by the query `x_q[:, i]`.

    Position i sees `x_0, y_0, …, x_{i−1}, y_{i−1}` and then its own x-token, so one forward of
    the prompt with every x-token replaced would change the context of later positions. Instead,
    all n variants run as one batch: variant i is the prompt with `x_i := x_q[:, i]`, read at
    position i. (B·n, n, d) inputs: fine at test sizes (n ≤ 41).
    """
    B, n, d = X.shape
    eye = torch.eye(n, dtype=torch.bool, device=X.device)  # (n, n): variant i replaces row i
    Xv = torch.where(eye[None, :, :, None], x_q[:, None], X[:, None])  # (B, n, n, d)
    out = model(Xv.reshape(B * n, n, d), y.repeat_interleave(n, 0)).reshape(B, n, n)
    return out.diagonal(dim1=1, dim2=2)  # (B, n): variant i read at position i
