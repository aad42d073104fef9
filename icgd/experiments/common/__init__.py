"""Pieces shared by the in-context linear-regression experiments.

- `regression_task_config`: the task config, its validation error re-worded as "field: message"
  so that an experiment config's own validator names the field (`icgd.core.config` reads it);
- `regression_sampler` and `prompt_mse`: the trainer's sampler and loss for LSA prompts;
- `fit_lsa`: build an LSA model from a seed and train it into a run (sub)folder, resuming when
  the folder already holds a checkpoint of an interrupted run;
- `apply_preset`: fill a config's fields from a named preset, keeping the fields set by the user.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pydantic import ValidationError

from icgd.core.config import Config
from icgd.core.rng import derive_seed, make_generator
from icgd.experiments.api import RunContext
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


def fit_model(
    model: torch.nn.Module,
    sample: Callable[[int, torch.Generator], Any],
    loss: Callable[[torch.nn.Module, Any], torch.Tensor],
    train_config: TrainConfig,
    *,
    seed: int,
    label: str | None,
    eval_batch: Any,
    ctx: RunContext,
    sub: str = "",
    device: torch.device | str = "cpu",
    on_eval: Callable[[int, torch.nn.Module], dict[str, float]] | None = None,
) -> TrainResult:
    """Train `model` in place with `ctx.trainer` (plain `train` when None) into
    `ctx.run_dir / sub`.

    The training stream is `derive_seed(seed, "train"[, label])` on `device`, so models of one run
    get independent streams; an interrupted run resumes from the checkpoint found in the folder.
    The training step is compiled when `ctx.compile`; TensorBoard events go to
    `ctx.tensorboard_dir(sub)` when `ctx.tensorboard`.
    """
    streams = () if label is None else (label,)
    run_dir = ctx.run_dir / sub if sub else ctx.run_dir
    trainer = ctx.trainer if ctx.trainer is not None else train
    return trainer(
        model,
        sample,
        loss,
        train_config,
        generator=make_generator(derive_seed(seed, "train", *streams), device),
        eval_batch=eval_batch,
        run_dir=run_dir,
        resume=ctx.resume and (run_dir / "checkpoint.safetensors").exists(),
        on_eval=on_eval,
        progress=ctx.progress_for(label or "training"),
        compile=ctx.compile,
        tensorboard=ctx.tensorboard_dir(sub),
    )


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
    outcome = fit_model(
        model,
        regression_sampler(task),
        prompt_mse,
        train_config,
        seed=seed,
        label=label,
        eval_batch=eval_batch,
        ctx=ctx,
        sub=sub,
        device=task.device,
        on_eval=on_eval,
    )
    return model, outcome


def apply_preset(cls: type[Config], data: Any, name: str, preset: dict[str, Any]) -> Any:
    """Before-validation: with `data["preset"] == name`, every key of `preset` that `data` does
    not set, or sets to the field's default, takes the preset's value (so a field set explicitly
    to its default value is replaced too)."""
    if not isinstance(data, dict) or data.get("preset") != name:
        return data
    data = dict(data)
    for key, value in preset.items():
        default = cls.model_fields[key].default
        default = default.model_dump() if isinstance(default, Config) else default
        current = data.get(key, default)
        current = current.model_dump() if isinstance(current, Config) else current
        if key not in data or current == default:
            data[key] = value
    return data
