"""The model `identify` looks at, its task, and the answer known in advance (if any).

Two kinds of source:

- **a run folder** of any experiment whose `task(config, sub)` says what its model in `sub` was
  trained on (`icgd.experiments.api.task_for`); the model is rebuilt from its checkpoint.
  Known answers: `looped-gd` in Gatmiry's setting runs L steps of preconditioned GD with
  Γ = a*·Σ⁻¹ (where c(L, n, d) > 0; where it is negative the minimiser rotates, see
  `looped-landscape`); `one-step-gd` runs one step with Ahn et al.'s Γ*.
- **`construction:NAME`**, a hand-built LSA that runs NAME exactly, with parameters fixed here:
  `gd` one GD step, η = 0.37 (von Oswald et al. 2023); `preconditioned-gd` two looped steps with
  a fixed non-symmetric Γ (Ahn et al. 2023); `iterative-newton` three Newton–Schulz steps with
  α = (1 + √(d/n))⁻⁴ (Giannou et al. 2024). The task is isotropic regression at (d, n).
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
from icgd.experiments.api import EXPERIMENTS, task_for
from icgd.experiments.common import regression_task_config
from icgd.experiments.identify.config import IdentifyConfig
from icgd.tasks import LinearRegression
from icgd.theory import optimal_one_layer_preconditioner
from icgd.training.checkpoint import CHECKPOINT_FILE, build_from_checkpoint

GD_STEP = 0.37
NEWTON_STEPS = 3


@dataclass(frozen=True)
class Expected:
    """The known answer: `algorithm` (a candidate name), its `steps`, its `parameters` by name,
    and whether the model runs it exactly (a construction) or approximately (a trained model)."""

    algorithm: str
    steps: int | None
    parameters: dict[str, Any] = field(default_factory=dict)
    exact: bool = False
    why: str = ""


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
    expected = _known_answer(result.experiment, source_config, result.metrics, task, config)
    return Source(model, task, None, expected, str(path))


def _known_answer(experiment: str, cfg: Any, metrics: dict, task, config) -> Expected | None:
    """What icgd's theory says a run's main model computes (module docstring); None if unknown."""
    if config.model:
        return None
    if experiment == "looped-gd" and cfg.in_theorem_setting:
        gamma = metrics["alpha_theory"] * task.sigma_inv.double().cpu()
        why = "a*·Σ⁻¹ (Gatmiry et al.)"
        if metrics.get("skew_curvature", 1.0) < 0:
            why += "; c(L, n, d) < 0 here, so the minimiser rotates away from it"
        return Expected("preconditioned-gd", cfg.loops, {"gamma": gamma}, why=why)
    if experiment == "one-step-gd":
        gamma = optimal_one_layer_preconditioner(
            task.sigma.double().cpu(),
            cfg.n,
            noise_std=cfg.sigma_noise,
            weight_cov=task.weight_covariance.double().cpu(),
        )
        return Expected("preconditioned-gd", 1, {"gamma": gamma}, why="Γ* (Ahn et al. Thm 1)")
    return None


def resolve(config: IdentifyConfig) -> Source:
    """The `Source` that `config.source` names."""
    if config.source.startswith("construction:"):
        return from_construction(config)
    return from_run(config)
