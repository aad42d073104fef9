"""Pieces shared by the in-context linear-regression experiments.

- `regression_task_config`: the task config, its validation error re-worded as "field: message"
  so that an experiment config's own validator names the field (`icgd.core.config` reads it);
- `regression_sampler` and `prompt_mse`: the trainer's sampler and loss for LSA prompts;
- `fit_lsa`: build an LSA model from a seed and train it into a run (sub)folder, resuming when
  the folder already holds a checkpoint of an interrupted run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pydantic import ValidationError

from icgd.core.rng import derive_seed, make_generator
from icgd.experiments.base import RunContext
from icgd.models import LinearSelfAttention, LSAConfig
from icgd.tasks import LinearRegression, LinearRegressionConfig
from icgd.training import TrainConfig, TrainResult, train


def regression_task_config(**fields: Any) -> LinearRegressionConfig:
    """`LinearRegressionConfig(**fields)`; a validation error becomes `ValueError("field: msg")`."""
    try:
        return LinearRegressionConfig(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "eigenvalues"
        raise ValueError(f"{field}: {err['msg'].removeprefix('Value error, ')}") from None


def regression_sampler(task: LinearRegression) -> Callable[[int, torch.Generator], tuple]:
    """`(batch_size, generator) -> (Z (B, d+1, n+1), y_q (B,))` for the trainer."""

    def sample(batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        batch = task.sample(batch_size, generator)
        return batch.prompt(), batch.y_q

    return sample


def prompt_mse(
    model: LinearSelfAttention, batch: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """Mean squared query error `mean_b (ŷ_b − y_q,b)²` (no ½, as in SPEC §1)."""
    Z, y_q = batch
    return ((model.predict(Z) - y_q) ** 2).mean()


def fit_lsa(
    model_config: LSAConfig,
    train_config: TrainConfig,
    task: LinearRegression,
    *,
    seed: int,
    label: str | None,
    eval_batch: tuple[torch.Tensor, torch.Tensor],
    ctx: RunContext,
    sub: str = "",
    on_eval: Callable[[int, torch.nn.Module], dict[str, float]] | None = None,
) -> tuple[LinearSelfAttention, TrainResult]:
    """Initialise an LSA model from the run seed and train it on `task`'s prompts.

    The init and training streams are `derive_seed(seed, "init"[, label])` and
    `derive_seed(seed, "train"[, label])`, so models of one run get independent streams. Files go
    to `ctx.run_dir / sub`; an interrupted run resumes from the checkpoint found there.
    """
    streams = () if label is None else (label,)
    init = make_generator(derive_seed(seed, "init", *streams), "cpu")
    model = LinearSelfAttention(model_config, generator=init, dtype=task.dtype).to(task.device)
    run_dir = ctx.run_dir / sub if sub else ctx.run_dir
    outcome = train(
        model,
        regression_sampler(task),
        prompt_mse,
        train_config,
        generator=make_generator(derive_seed(seed, "train", *streams), task.device),
        eval_batch=eval_batch,
        run_dir=run_dir,
        resume=ctx.resume and (run_dir / "checkpoint.safetensors").exists(),
        on_eval=on_eval,
        progress=ctx.progress_for(label or "training"),
    )
    return model, outcome
