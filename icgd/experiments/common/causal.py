"""Pieces shared by the experiments that train causal models on Garg et al.'s prompts.

Garg, Tsipras, Liang, Valiant (2022) and Yang et al. (2024), SPEC §2.2: a prompt is n points
`(x_i, y_i)` of one function (`icgd.tasks.FunctionClass`); a causal model (`icgd.models.GPT`, or
`icgd.models.LoopedTransformer`) predicts `y_i` at token `x_i` after the k = i context points
`x_0 … x_{i−1}` (positions i = 0 … n−1, so k = 0 … n−1).

- `curriculum_sampler`: the trainer's batch sampler, with Garg's curriculum on (d_active, n) and an
  optional schedule of the loop count b, both read at the step of the batch;
- `gpt_loss`: Garg's loss, the mean squared error over all prefixes;
- `fit_causal`: train a model into a run sub-folder, resuming from a checkpoint found there;
- `normalised_error`: `mean_B (ŷ − y)² / d` per prefix (the zero predictor scores ≈ 1 on the
  regression classes, whose `E[f(x)²] = d`);
- `prefix_baseline`: a baseline of `icgd.algorithms.prefix` (convention (b)) at every position,
  the prediction at position 0 (no context) being 0.
- `gpt_parameter_count`, `block_activation_bytes`, `prefix_baseline_bytes`: the sizes the
  experiments' memory estimates (`memory`) are made of.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from icgd.core.rng import derive_seed, make_generator
from icgd.experiments.api import RunContext
from icgd.models import LoopedTransformer
from icgd.tasks import CurriculumConfig, FunctionClass, ScheduleConfig
from icgd.training import TrainConfig, TrainResult, read_checkpoint_metadata, train


def curriculum_sampler(
    task: FunctionClass,
    start_step: int,
    curriculum: CurriculumConfig | None = None,
    loops: ScheduleConfig | None = None,
    n_loops: int | None = None,
) -> Callable[[int, torch.Generator], tuple]:
    """`(B, generator) -> (X (B, n, d), y (B, n), b)`: the batch of the next update.

    The sampler counts the batches it has drawn, from `start_step` (the checkpoint's step on
    resume), so it must be called once per update (`TrainConfig.resample_every = 1`). At step t
    the batch has `curriculum.dims.at(t)` active coordinates and `curriculum.points.at(t)` points
    (all of them without a curriculum), and b is `loops.at(t)` (`n_loops` without a schedule).
    """
    counter = [start_step]

    def sample(batch_size: int, generator: torch.Generator) -> tuple:
        step = counter[0]
        counter[0] += 1
        d_active, n = (None, None)
        if curriculum is not None:
            d_active, n = curriculum.dims.at(step), curriculum.points.at(step)
        b = n_loops if loops is None else loops.at(step)
        batch = task.sample(batch_size, generator, n=n, d_active=d_active)
        return batch.X, batch.y, b

    return sample


def gpt_loss(model: nn.Module, batch: tuple) -> Tensor:
    """Garg et al.'s loss: the mean squared error over all prefixes of the batch."""
    X, y, _ = batch
    return (model(X, y) - y).square().mean()


def fit_causal(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Any], Tensor],
    task: FunctionClass,
    train_config: TrainConfig,
    *,
    seed: int,
    label: str,
    eval_batch: tuple,
    ctx: RunContext,
    curriculum: CurriculumConfig | None = None,
    loops: ScheduleConfig | None = None,
    n_loops: int | None = None,
) -> TrainResult:
    """Train `model` into `ctx.run_dir / label` with `ctx.trainer` (plain `train` when None),
    resuming from a checkpoint there when `ctx.resume`; each eval record also holds
    `normalised_error`, the final prediction's error on `eval_batch` (X, y, b) divided by d. The
    training stream is `derive_seed(seed, "train", label)`; the training step is compiled when
    `ctx.compile`; TensorBoard events go to `ctx.tensorboard_dir(label)` when `ctx.tensorboard`.
    """
    run_dir = ctx.run_dir / label
    resume = ctx.resume and (run_dir / "checkpoint.safetensors").exists()
    start = int(read_checkpoint_metadata(run_dir).get("step", 0)) if resume else 0
    d = task.d

    def on_eval(step: int, m: nn.Module) -> dict[str, float]:
        X, y, _ = eval_batch
        with torch.no_grad():
            pred = m(X, y)[-1] if isinstance(m, LoopedTransformer) else m(X, y)
        return {"normalised_error": float((pred - y).square().mean()) / d}

    trainer = ctx.trainer if ctx.trainer is not None else train
    return trainer(
        model,
        curriculum_sampler(task, start, curriculum, loops, n_loops),
        loss_fn,
        train_config,
        generator=make_generator(derive_seed(seed, "train", label), task.device),
        eval_batch=eval_batch,
        run_dir=run_dir,
        resume=resume,
        on_eval=on_eval,
        progress=ctx.progress_for(label),
        compile=ctx.compile,
        tensorboard=ctx.tensorboard_dir(label),
    )


def normalised_error(pred: Tensor, y: Tensor, d: int) -> Tensor:
    """Normalised squared error per prefix, `mean_B (ŷ − y)² / d`: (..., B, n) → (..., n),
    computed in float64."""
    return (pred.double() - y.double()).square().mean(-2) / d


def prefix_baseline(fn: Callable[..., Tensor], X: Tensor, y: Tensor, x_q: Tensor, **kw) -> Tensor:
    """A prefix baseline's prediction at every position, (B, n).

    Position i is predicted from the first i points at the query `x_q[:, i]`: `fn(X[:, :-1],
    y[:, :-1], x_q[:, 1:])` (convention (b) of `icgd.algorithms.prefix`) gives positions
    1 … n−1; position 0 has no context and is predicted 0 (as the models' zero-context prior).
    """
    pred = fn(X[:, :-1], y[:, :-1], x_q[:, 1:], **kw)  # (B, n−1)
    return torch.cat([torch.zeros_like(pred[:, :1]), pred], dim=1)


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------- memory estimates (bytes)


def gpt_parameter_count(d: int, n_points: int, n_embd: int, n_blocks: int) -> int:
    """Parameters of a `GPT` / `LoopedTransformer` with `n_blocks` blocks of width C = n_embd:
    each block `12·C² + 13·C` (QKV and output projections, the 4×-wide MLP, two LayerNorms); the
    read-in/out `(d + 2·n_points + 4)·C + 1` (read-in, positions, final LayerNorm, read-out)."""
    C = n_embd
    return n_blocks * (12 * C * C + 13 * C) + (d + 2 * n_points + 4) * C + 1


def block_activation_bytes(
    batch: int, tokens: int, n_embd: int, n_head: int, size: int, *, backward: bool = True
) -> int:
    """Bytes of one GPT block's activations on `batch` prompts of T = `tokens` tokens, `size`
    bytes a number. With `backward`, what autograd keeps of a block for the backward pass: per
    token `16·C` (the two LayerNorms' inputs and outputs, QKV 3C, the attention's and the
    projections' outputs, the MLP's 4C hidden layer before and after GELU, the residuals);
    without, the peak of one block's forward, `10·C` (the residual, LN_2's output and the MLP's
    hidden layer before and after GELU). Both plus `2·n_head·T` a token: the attention weights
    as the math kernel of SDPA holds them (the fused kernels hold less)."""
    per_token = (16 if backward else 10) * n_embd + 2 * n_head * tokens
    return batch * tokens * per_token * size


def prefix_baseline_bytes(batch: int, n_points: int, d: int) -> int:
    """Bytes of the float64 prefix baselines on `batch` prompts of n points: least squares'
    cumulative Gram matrices and their eigenvectors (B, n, d, d) with the solver's copies (4 of
    them), and 3-NN's (B, n, n) distance tables, masks and sort (4 of them)."""
    return batch * n_points * (4 * d * d + 4 * n_points) * 8
