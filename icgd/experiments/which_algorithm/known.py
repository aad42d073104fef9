"""What `icgd identify` should find in a `which-algorithm` model (Akyürek et al. 2023, §4: as depth
grows, trained in-context learners move from one step of GD toward ridge and least squares).

- One layer (`models/L1-…`): one GD step, with the step that is optimal for how the model was
  trained (every prefix length k = 1 … n_max, zero-padded, with 1/n_max):
  η* = n_max Σ_k k / Σ_k k (k + d + 1 + σ²) (`icgd.theory.optimal_prefix_step_scale`). On the
  full-length prompts `identify` draws, that model is `gd` with step η* on Ŝ = XᵀX/n_max.
- Deeper (`models/L{k}-…`, k ≥ 2): nearer, in held-out SPD, to the better of ridge (λ fitted)
  and OLS than to one GD step (η fitted): the candidate `one-step-gd`.

Approximate (`exact=False`): trained models. A model that diverges on some prompts (its held-out
MSE far above the zero predictor's) fails these claims honestly.
"""

from __future__ import annotations

import re
from typing import Any

from icgd.experiments.which_algorithm.config import WhichAlgorithmConfig
from icgd.theory import optimal_prefix_step_scale


def known_answer(config: WhichAlgorithmConfig, metrics: dict, sub: str, task: Any) -> dict | None:
    """The answer's fields (`sources.Expected`) for the model in `sub` (module docstring)."""
    match = re.fullmatch(r"models/L(\d+)-.*", sub)
    if match is None:
        return None
    depth, noise = int(match.group(1)), task.config.noise_std
    why = "Akyürek et al. 2023: "
    if depth == 1:
        eta = optimal_prefix_step_scale(config.context, config.d, noise)
        return {
            "algorithm": "gd",
            "steps": 1,
            "parameters": {"eta": eta},
            "why": why + "one layer runs one GD step, η* optimal over prefixes",
        }
    return {
        "algorithm": None,
        "steps": None,
        "nearer": ("ridge", "ols"),
        "than": "one-step-gd",
        "why": why + f"{depth} layers sit nearer ridge or OLS than one GD step",
    }
