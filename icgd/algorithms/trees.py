"""Greedy decision-tree and gradient-boosting baselines on every prefix, via scikit-learn.

The decision-tree baselines of Garg et al. 2022 ("What can transformers learn in-context? A case
study of simple function classes", `src/models.py`: `DecisionTreeModel(max_depth=4 | None)` and
`XGBoostModel`): for each prompt and each prefix k = 1 … n a regressor is fitted on
`(x_1, y_1) … (x_k, y_k)` and evaluated at the prefix's query (the two query conventions of
`icgd.algorithms.prefix`).

- `prefix_decision_tree`: scikit-learn's `DecisionTreeRegressor` (CART, greedy splits minimising
  the squared error), as Garg et al.
- `prefix_boosting`: scikit-learn's `GradientBoostingRegressor` (squared loss). Garg et al. use
  XGBoost with its defaults; **ours**: sklearn instead of an extra dependency, with XGBoost's
  default number of trees (100), learning rate (0.3) and depth (6); XGBoost's L2 leaf penalty
  (λ = 1) has no sklearn counterpart, so the two are close but not equal.

Not batched: scikit-learn fits one model at a time, so these loop in Python over the B·n
(prompt, prefix) pairs — the one exception to "no loop over prompts" in `icgd.algorithms`, allowed
for these baselines by issue 5. Cost: B·n fits (see `benchmarks/bench_function_baselines.py`).
Computed in float64 (sklearn casts the inputs to float32 inside its trees) and returned in X's
dtype. scikit-learn is an optional dependency (the `oracles` extra).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from icgd.algorithms.plugins import ALGORITHMS
from icgd.algorithms.prefix import check_prefix_inputs


def _sklearn_ensemble_and_tree() -> tuple[Any, Any]:
    try:
        from sklearn import ensemble, tree
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the tree baselines need scikit-learn: pip install 'icgd[oracles]'"
        ) from err
    return ensemble, tree


def _prefix_fit_predict(X: Tensor, y: Tensor, x_q: Tensor, make_model) -> Tensor:
    """Fit `make_model()` on `X[b, :k], y[b, :k]` for every b and k; predict at the query of
    (b, k). X (B, n, d), y (B, n), x_q (B, d) or (B, n, d) → (B, n)."""
    Xq = check_prefix_inputs(X, y, x_q)  # (B, r, d)
    B, n, _ = X.shape
    Xn = X.detach().cpu().double().numpy()
    yn = y.detach().cpu().double().numpy()
    qn = Xq.detach().cpu().double().numpy()
    out = np.empty((B, n))
    for b in range(B):
        for k in range(1, n + 1):
            model = make_model().fit(Xn[b, :k], yn[b, :k])
            q = qn[b, k - 1 if qn.shape[1] > 1 else 0]
            out[b, k - 1] = model.predict(q[None, :])[0]
    return torch.as_tensor(out, dtype=X.dtype, device=X.device)


def prefix_decision_tree(
    X: Tensor, y: Tensor, x_q: Tensor, max_depth: int | None = None, random_state: int = 0
) -> Tensor:
    """A greedy regression tree fitted on every prefix: `DecisionTreeRegressor(max_depth,
    random_state)` on `(x_1, y_1) … (x_k, y_k)`, evaluated at the query of prefix k.

    X: (B, n, d), y: (B, n), x_q: (B, d) or (B, n, d) (conventions of `icgd.algorithms.prefix`)
    → (B, n). max_depth: None grows the tree until every leaf is pure (Garg et al. report 4 and
    None). random_state: fixes sklearn's feature order when splits tie (Garg et al. leave it
    random). A Python loop over the B·n fits (module docstring): ~1 ms per fit and predict
    (40 s for 1000 prompts of d = 20, n = 41 on one CPU core).
    """
    if max_depth is not None and max_depth < 1:
        raise ValueError(f"max_depth must be >= 1 or None, got {max_depth}")
    _, tree = _sklearn_ensemble_and_tree()

    def make():
        return tree.DecisionTreeRegressor(max_depth=max_depth, random_state=random_state)

    return _prefix_fit_predict(X, y, x_q, make)


def prefix_boosting(
    X: Tensor,
    y: Tensor,
    x_q: Tensor,
    n_estimators: int = 100,
    learning_rate: float = 0.3,
    max_depth: int = 6,
    random_state: int = 0,
    **kwargs: Any,
) -> Tensor:
    """Gradient boosting fitted on every prefix: `GradientBoostingRegressor(n_estimators,
    learning_rate, max_depth, random_state, **kwargs)` on `(x_1, y_1) … (x_k, y_k)`, evaluated at
    the query of prefix k (module docstring: the stand-in for Garg et al.'s XGBoost, with its
    default 100 trees, learning rate 0.3 and depth 6).

    X: (B, n, d), y: (B, n), x_q: (B, d) or (B, n, d) → (B, n). A Python loop over the B·n fits,
    each of `n_estimators` trees: about 100× slower than `prefix_decision_tree`.
    """
    if n_estimators < 1 or not learning_rate > 0 or max_depth < 1:
        raise ValueError(
            "need n_estimators >= 1, learning_rate > 0, max_depth >= 1, got "
            f"{n_estimators}, {learning_rate}, {max_depth}"
        )
    ensemble, _ = _sklearn_ensemble_and_tree()

    def make():
        return ensemble.GradientBoostingRegressor(
            n_estimators=n_estimators,
            learning_rate=learning_rate,
            max_depth=max_depth,
            random_state=random_state,
            **kwargs,
        )

    return _prefix_fit_predict(X, y, x_q, make)


ALGORITHMS.register("decision-tree", prefix_decision_tree)
ALGORITHMS.register("boosting", prefix_boosting)
