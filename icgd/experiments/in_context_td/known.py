"""What `icgd identify` should find for in-context TD models (Wang, Blaser, Daneshmand, Zhang
2025, "Transformers learn temporal difference methods for in-context reinforcement learning").

- `known_answer(config, metrics, sub, task)`: a trained `in-context-td` run. The paper's claim,
  and this experiment's claim 3 (`values_track_batch_td`), is that the looped L-layer model runs
  L steps of batch TD(0) from w = 0 with one scalar step: the candidate `td0`, k = `n_layers`
  (and, on request, α = the run's own `alpha_fitted`, `icgd.analysis.fitted_td_step`, fitted
  on every state's value with μ weights; `identify` fits α on the next-state queries of fresh
  prompts, so the two agree only approximately). Approximate (`exact=False`): the measured
  default run leaves 13.7% of the TD values' variance unexplained (the model also writes φ
  into the γφ' rows; see `experiment`).
- `td0_construction(d, n)`: the hand-built TD(0) transformer (`transformer_from_td0`, looped,
  float64) with `TD0_LAYERS` steps of size `TD0_STEP`, the prompts it reads (Boyan chains on
  10 states, γ = 0.9, random rewards, n transitions), and its exact answer.

The answers are plain dicts with the fields of `icgd.experiments.identify.sources.Expected`
(`algorithm`, `steps`, `parameters`, `exact`, `why`), so that this module needs nothing from
the identify experiment.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from icgd.constructions import transformer_from_td0
from icgd.experiments.in_context_td.config import InContextTDConfig
from icgd.models import TDTransformer
from icgd.tasks import MarkovReward, MarkovRewardConfig

TD0_STEP = 0.5  # ‖I − αA‖ < 1 on typical prompts at d = 4 (A's eigenvalues ≈ 0.1 … 0.6)
TD0_LAYERS = 3  # the in-context-td default n_layers


def known_answer(
    config: InContextTDConfig,
    metrics: dict[str, Any],
    sub: str = "",
    task: Any = None,
    *,
    with_alpha: bool = False,
) -> dict[str, Any] | None:
    """The expected answer for a trained in-context-td run (module docstring): `td0` with
    k = `n_layers`; with `with_alpha`, also α = the run's `alpha_fitted` (where finite). Off by
    default: the two fits weigh different queries of an approximately-TD model (measured on a
    quick d = 4 model: α 1.05 by `identify`, 0.73 by `fitted_td_step`). None for a softmax or
    relu model: the paper's claim is about linear attention."""
    if sub or config.activation != "linear":
        return None
    alpha = metrics.get("alpha_fitted")
    known = with_alpha and alpha is not None and math.isfinite(alpha)
    return {
        "algorithm": "td0",
        "steps": config.n_layers,
        "parameters": {"alpha": float(alpha)} if known else {},
        "exact": False,
        "why": f"{config.n_layers} steps of batch TD(0) (Wang et al. 2025; claim 3, "
        "values_track_batch_td)",
    }


def td0_construction(
    d: int, n: int, *, alpha: float = TD0_STEP, layers: int = TD0_LAYERS
) -> tuple[TDTransformer, Any, dict[str, Any]]:
    """(model, task, expected): the TD(0) transformer, its prompts (`TDPromptTask`, n
    transitions) and its exact answer (module docstring)."""
    from icgd.analysis.identify.td import TDPromptTask  # here: keeps the CLI's import light

    model = transformer_from_td0(d, layers, alpha=alpha, looped=True, dtype=torch.float64)
    process = MarkovReward(MarkovRewardConfig(kind="boyan", s=10, d=d, gamma=0.9))
    expected = {
        "algorithm": "td0",
        "steps": layers,
        "parameters": {"alpha": alpha},
        "exact": True,
        "why": "transformer_from_td0 (Wang et al. 2025)",
    }
    return model, TDPromptTask(process, n), expected
