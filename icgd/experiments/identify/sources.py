"""The model `identify` looks at, its task, and the answer known in advance (if any).

Two kinds of source:

- **a run folder** of any experiment whose `task(config, sub)` says what its model in `sub` was
  trained on (`icgd.experiments.api.task_for`); the model is rebuilt from its checkpoint.
  The known answer comes from the experiment's optional `known_answer` method
  (`icgd.experiments.api.known_answer_for`; each in that experiment's `known.py`): `looped-gd`
  (L steps of preconditioned GD, Γ = a*·Σ⁻¹), `one-step-gd` (one step with Ahn et al.'s Γ*),
  `which-algorithm` (one layer: one GD step at the optimal η; deeper: nearer ridge or OLS than
  one GD step), `in-context-td` (L steps of batch TD(0)).
- **`construction:NAME`**, a hand-built LSA that runs NAME exactly, with parameters fixed here:
  `gd` one GD step, η = 0.37 (von Oswald et al. 2023); `preconditioned-gd` two looped steps with
  a fixed non-symmetric Γ (Ahn et al. 2023); `iterative-newton` three Newton–Schulz steps with
  α = (1 + √(d/n))⁻⁴ (Giannou et al. 2024); the task is isotropic regression at (d, n).
  `td0`: the TD(0) transformer, 3 looped steps of α = 0.5 (Wang et al. 2025), on Boyan-chain
  prompts of n transitions (`icgd.experiments.in_context_td.known.td0_construction`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from icgd.constructions import (
    lsa_from_gd_step,
    lsa_from_newton_schulz,
    lsa_from_preconditioned_gd,
    newton_schulz_prompt,
)
from icgd.core.config import validate_config
from icgd.core.errors import InputError
from icgd.core.results import read_result
from icgd.experiments.api import EXPERIMENTS, known_answer_for, task_for
from icgd.experiments.common import regression_task_config
from icgd.experiments.identify.config import IdentifyConfig
from icgd.experiments.in_context_td.known import td0_construction
from icgd.tasks import LinearRegression
from icgd.training.checkpoint import CHECKPOINT_FILE, build_from_checkpoint

GD_STEP = 0.37
NEWTON_STEPS = 3


@dataclass(frozen=True)
class Expected:
    """The known answer: `algorithm` (a candidate name; None: no single one), its `steps`, its
    `parameters` by name, and whether the model runs it exactly (a construction) or
    approximately (a trained model). `nearer`, `than`: the model is nearer (held-out SPD) to the
    best of the candidates `nearer` than to the candidate `than` (e.g. ridge or OLS against one
    GD step)."""

    algorithm: str | None
    steps: int | None
    parameters: dict[str, Any] = field(default_factory=dict)
    exact: bool = False
    why: str = ""
    nearer: tuple[str, ...] = ()
    than: str | None = None

    @property
    def algorithms(self) -> tuple[str, ...]:
        """Every candidate the answer names (they must be fitted)."""
        named = (self.algorithm, *self.nearer, self.than)
        return tuple(dict.fromkeys(a for a in named if a is not None))


@dataclass(frozen=True)
class Source:
    """A model to identify, the task to draw prompts from, the prompt builder of a model that
    takes another embedding (None: the model's own), and the known answer (None: unknown)."""

    model: nn.Module
    task: Any
    prompt: Callable | None
    expected: Expected | None
    name: str


def _fixed_gamma(d: int) -> torch.Tensor:
    """A non-symmetric, well-conditioned Γ (d, d) with spectral radius < 1 on Ŝ ≈ I."""
    g = torch.Generator().manual_seed(1234)
    noise = torch.randn(d, d, generator=g, dtype=torch.float64)
    return 0.45 * torch.eye(d, dtype=torch.float64) + 0.08 * noise


def from_construction(config: IdentifyConfig) -> Source:
    name, d = config.source.split(":", 1)[1], config.d
    if name == "td0":
        model, task, answer = td0_construction(d, config.n)
        return Source(model, task, None, Expected(**answer), config.source)
    task = LinearRegression(
        regression_task_config(
            d=d, n=config.n, covariance="identity", weight_prior="identity", noise_std=0.0
        ),
        dtype=torch.float64,
    )
    if name == "gd":
        model, prompt = lsa_from_gd_step(d, GD_STEP), None
        expected = Expected("gd", 1, {"eta": GD_STEP}, exact=True)
    elif name == "preconditioned-gd":
        gamma = _fixed_gamma(d)
        model = lsa_from_preconditioned_gd(gamma, looped=True, n_loops=2, dtype=torch.float64)
        prompt, expected = None, Expected("preconditioned-gd", 2, {"gamma": gamma}, exact=True)
    else:
        # α ≈ 1/λ_max(Ŝ)² at the Marchenko–Pastur edge (1 + √(d/n))²: below 2/‖Ŝ‖² on most prompts
        alpha = 1.0 / (1.0 + (d / config.n) ** 0.5) ** 4
        model = lsa_from_newton_schulz(d, NEWTON_STEPS, alpha)
        prompt = newton_schulz_prompt
        expected = Expected("iterative-newton", NEWTON_STEPS, {"alpha": alpha}, exact=True)
    return Source(model, task, prompt, expected, config.source)


def from_run(config: IdentifyConfig) -> Source:
    path = Path(config.source)
    if not (path / "result.json").is_file():
        raise InputError("source", f"{path} is not a run folder (no result.json)")
    result = read_result(path / "result.json")
    if result.seeds is not None:
        raise InputError("source", f"{path} is a seed ensemble: give one seed folder, e.g. seed0")
    if result.experiment not in EXPERIMENTS:
        raise InputError("source", f"experiment {result.experiment!r} is not installed")
    experiment = EXPERIMENTS.get(result.experiment)
    source_config = validate_config(experiment.Config, result.config)
    checkpoint = path / config.model / CHECKPOINT_FILE
    if not checkpoint.is_file():
        raise InputError("model", f"no {CHECKPOINT_FILE} in {path / config.model}")
    task = task_for(experiment, source_config, config.model)
    model = build_from_checkpoint(checkpoint)
    answer = known_answer_for(experiment, source_config, result.metrics, config.model, task)
    expected = None if answer is None else Expected(**answer)
    return Source(model, task, None, expected, str(path))


def resolve(config: IdentifyConfig) -> Source:
    """The `Source` that `config.source` names."""
    if config.source.startswith("construction:"):
        return from_construction(config)
    return from_run(config)
