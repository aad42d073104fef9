"""`looped-transformer`: one looped block ≈ a multi-layer transformer (Yang et al. 2024).

Yang, Lee, Nowak, Papailiopoulos (2024), "Looped transformers are better at learning learning
algorithms" (SPEC §2.2). Noiseless linear regression in Garg et al.'s token format: prompts of
`n_points` points `x_i ~ N(0, I_d)`, `y_i = wᵀx_i`, `w ~ N(0, I_d)`, tokens `x_1, y_1, x_2, …`;
the model predicts `y_i` at token `x_i`, after `k = i − 1` context points (k = 0 … n_points − 1).

1. A looped transformer (`icgd.models.LoopedTransformer`: one GPT block f applied b times with
   input injection, `z_{t+1} = f(z_t + e)`) is trained with Yang et al.'s loss: the mean squared
   error averaged over the predictions of the last T loops, the first b − T loops without
   gradient. A GPT (`icgd.models.GPT`) of the same width with `depth` layers is trained on the
   same prompts with the same optimizer budget, on the mean squared error over all prefixes.
2. Test: the normalised error `err(k) = E[(ŷ_k − y_k)²] / d` (the zero predictor scores ≈ 1) for
   each number k of context points, for both models and for least squares, 3-NN and averaging
   (`icgd.algorithms.prefix`, all prefixes in one batched computation); the looped model's error
   after every loop t = 1 … `test_loop_factor`·b (one forward returns all loops); the parameter
   counts of both models.

Aggregate used by the claims (ours): `err_{k≥d}`, the mean of err(k) over the prefixes with
k ≥ d context points. Below d points the error is dominated by the irreducible part
`(d − k)/d` that every good learner shares (least squares reaches it exactly), so including those
prefixes would make any two learners look alike; from k = d on, least squares is exact and a
model's error is all its own.

Presets. `preset="cpu"` (default): d = 2, 5 points (so k = 2d = 4 is the last prefix), width
64 with 2 heads (GPT size "tiny"), b = 10 loops with the loss over the last T = 5 (b grows from 1
by a loop curriculum), a 4-layer GPT, and a training budget that fits the whole run in about
5 minutes on 2 CPU cores. Yang et al. use
b = 30 and T = 15 for linear regression and compare with a 12-layer GPT: a loop costs what a layer
costs, so b and L scale together; ours keep b/T = 2 as theirs do. `preset="paper"` holds Yang et
al.'s setting (d = 20, 41 points, width 256, 8 heads, b = 30, T = 15, a 12-layer GPT, Garg's
curriculum on d and n, a curriculum on b, Adam lr 1e-4, batch 64): GPU-sized, not run by the
tests. A preset replaces every field that still holds its cpu default, so
`--set preset=paper --set depth=6` keeps depth 6 (and a field set explicitly to its cpu default
value is replaced by the paper value).

Curricula (`loop_curriculum` in both presets, `curriculum` in the paper preset): the step of a
training batch is counted by the sampler (one batch per update: `train.resample_every` must be 1;
a resumed run starts counting at the checkpoint's step). `loop_curriculum` schedules b; T is
`min(T, b)`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from icgd.algorithms import prefix_averaging, prefix_knn, prefix_ols
from icgd.core.results import Claim, Result, make_claim
from icgd.core.rng import derive_seed, make_generator
from icgd.experiments.api import MemoryEstimate, Outcome, RunContext
from icgd.experiments.common.causal import (
    block_activation_bytes,
    fit_causal,
    gpt_loss,
    gpt_parameter_count,
    n_parameters,
    normalised_error,
    prefix_baseline,
    prefix_baseline_bytes,
)
from icgd.experiments.looped_transformer.config import LoopedTransformerConfig
from icgd.models import GPT, LoopedTransformer

# Tiny sizes for unit tests and the contract suite: seconds on one core.
SMOKE = (
    "d=2",
    "n_points=5",
    "n_embd=16",
    "n_head=2",
    "n_loops=2",
    "grad_last=1",
    "depth=2",
    "train.steps=6",
    "train.batch_size=8",
    "train.eval_batch_size=16",
    "train.eval_every=3",
    "train.checkpoint_every=3",
    "test_loop_factor=2",
    "test_batch_size=32",
    "loop_curriculum=null",
)


def _looped_loss(model: LoopedTransformer, batch: tuple) -> torch.Tensor:
    """Yang et al.'s loss: MSE over all prefixes, averaged over the last min(T, b) of b loops."""
    X, y, b = batch
    return model.loss_over_last_loops(X, y, n_loops=b, last=min(model.config.grad_last, b))


class LoopedTransformerExperiment:
    name = "looped-transformer"
    paper = "Yang, Lee, Nowak, Papailiopoulos 2024"
    summary = "Yang et al. 2024: one looped block ≈ a multi-layer GPT; error flat past b loops"
    Config = LoopedTransformerConfig
    presets = {"smoke": SMOKE}

    def run(self, config: LoopedTransformerConfig, ctx: RunContext) -> Outcome:
        device, dtype = torch.device(config.device), config.torch_dtype
        seed, b = config.seed, config.n_loops
        task = config.task(device, dtype)

        def draw(size: int, stream: str):
            batch = task.sample(size, make_generator(derive_seed(seed, stream), device))
            return batch.X, batch.y, b

        eval_batch = draw(config.train.eval_batch_size, "eval")

        def init(label: str) -> torch.Generator:
            return make_generator(derive_seed(seed, "init", label), "cpu")

        looped = LoopedTransformer(
            config.looped_config(), generator=init("looped"), dtype=dtype, device=device
        )
        gpt = GPT(config.gpt_config(), generator=init("multilayer"), dtype=dtype).to(device)
        metrics: dict[str, Any] = {}
        for label, model, loss_fn in (
            ("looped", looped, _looped_loss),
            ("multilayer", gpt, gpt_loss),
        ):
            outcome = fit_causal(
                model,
                loss_fn,
                task,
                config.train,
                seed=seed,
                label=label,
                eval_batch=eval_batch,
                ctx=ctx,
                curriculum=config.curriculum,
                loops=config.loop_curriculum,
                n_loops=config.n_loops,
            )
            if outcome.status == "diverged":
                return Outcome(
                    metrics=metrics | {"diverged_at": outcome.steps_done},
                    diverged=True,
                    message=f"{label} model: {outcome.message}",
                )

        X, y, _ = draw(config.test_batch_size, "test")
        tested, arrays = _test(config, looped, gpt, X, y)
        return Outcome(metrics=metrics | tested, arrays=arrays)

    def claims(self, config: LoopedTransformerConfig, metrics: dict) -> list[Claim]:
        """Yang et al.'s claims at the configured size, tolerances chosen before any default run:

        - looped ≈ multi-layer: `err_{k≥d}(looped at b loops) ≤ 2 × err_{k≥d}(GPT)`, one-sided
          (a looped model that is better passes). Factor 2, not ~1: on a CPU budget neither model
          is near convergence and their errors at k ≥ d are small numbers (a few % of the zero
          predictor's) whose ratio moves by tens of % between seeds and training lengths; a factor
          2 still separates "the same algorithm, learnt about as far" from a model that has not
          left the plateau (ratio ≫ 2, err ≈ 1).
        - with a fraction of the parameters: looped / GPT parameter count ≤ 0.5 (one block
          against `depth` ≥ 2 blocks; the shared read-in/out keeps it above 1/depth).
        - flat past b: `max_{t ∈ [b, factor·b]} err_{k≥d}(t) / err_{k≥d}(b) ≤ 1.1` (the issue's
          10%): Yang et al.'s loss over the last T loops trains a fixed point, so extra loops at
          test time should not hurt.
        - far below 3-NN and averaging at k = 2d context points (the last prefix when
          n_points ≤ 2d): `max(looped, GPT) ≤ 0.5 × min(3-NN, averaging)`. Both baselines keep an
          error of order (d+1)/k at k = 2d (averaging) or larger (3-NN); half of it is "far below"
          with room for a partly trained model, and a model that merely averages fails.

        Read the first and third together with the last: two models that never left the initial
        plateau (both ≈ the zero predictor, err ≈ 1) have an error ratio ≈ 1 and a flat loop
        curve, so those two pass vacuously; `far_below_knn_averaging` is the claim that fails
        then, and the run's status is "failed".
        """
        tol = config.tolerances
        b, factor, L = config.n_loops, config.test_loop_factor, config.depth
        return [
            make_claim(
                "looped_matches_multilayer",
                f"err_{{k≥d}}: looped (1 block, b = {b}) / {L}-layer GPT",
                metrics["error_ratio_looped_multilayer"],
                1.0,
                tol.error_factor - 1.0,
                "at_most",
            ),
            make_claim(
                "looped_fewer_parameters",
                f"parameters: looped / {L}-layer GPT",
                metrics["param_ratio"],
                tol.param_fraction,
                0.0,
                "at_most",
            ),
            make_claim(
                "flat_past_b",
                f"max over t ∈ [{b}, {factor * b}] loops of err_{{k≥d}}(t) / err_{{k≥d}}({b})",
                metrics["loop_flatness"],
                1.0,
                tol.loop_flatness,
                "at_most",
            ),
            make_claim(
                "far_below_knn_averaging",
                f"at k = {metrics.get('k_2d', 2 * config.d)}: max(looped, GPT) error / "
                "min(3-NN, averaging) error",
                metrics["models_vs_baselines_at_2d"],
                tol.baseline_fraction,
                0.0,
                "at_most",
            ),
        ]

    def figures(self, run_dir: Path, result: Result, out: Path) -> list[Path]:
        from icgd.experiments.looped_transformer.figures import draw

        return draw(run_dir, result, out)

    def memory(self, config: LoopedTransformerConfig) -> MemoryEstimate:
        """Peak bytes, `s` bytes a number (4, or 8 in float64), T = 2·n_points tokens, width C =
        n_embd, h = n_head heads; both models live through the whole run, trained one after the
        other:

        - models and optimisers: 4 × (the looped model's parameters, one block, + the GPT's,
          `depth` blocks) × s (weights, gradients, Adam's two moments);
        - training batch: `train.batch_size` prompts through the activations kept for backward
          (`block_activation_bytes`: ≈ (16·C + 2·h·T)·T numbers a prompt and block) of the larger
          of the GPT's `depth` + 1 blocks and the looped model's `grad_last` + 1 (the loops with
          gradient and the injected read-in; the first b − T loops keep nothing);
        - evaluation batch: `train.eval_batch_size` prompts, one block at a time (no gradient:
          (10·C + 2·h·T)·T numbers a prompt), plus the prompts;
        - test batch: `test_batch_size` prompts, one block at a time, the looped model's
          predictions after each of the `test_loop_factor`·b loops, the prompts, and the float64
          prefix baselines (`prefix_baseline_bytes`: (4·d² + 4·n)·n numbers of 8 bytes a prompt).
        """
        size = 8 if config.dtype == "float64" else 4
        d, n, C, h = config.d, config.n_points, config.n_embd, config.n_head
        T, prompt = 2 * n, n * (d + 1) * size
        params = gpt_parameter_count(d, n, C, 1) + gpt_parameter_count(d, n, C, config.depth)
        kept = max(config.depth, config.grad_last) + 1
        batch, eval_batch, test = (
            config.train.batch_size,
            config.train.eval_batch_size,
            config.test_batch_size,
        )
        loops = config.test_loop_factor * config.n_loops
        return MemoryEstimate(
            parts={
                "models and optimisers": 4 * params * size,
                "training batch": kept * block_activation_bytes(batch, T, C, h, size)
                + batch * prompt,
                "evaluation batch": block_activation_bytes(
                    eval_batch, T, C, h, size, backward=False
                )
                + eval_batch * prompt,
                "test batch": block_activation_bytes(test, T, C, h, size, backward=False)
                + test * (loops * n * size + prompt)
                + prefix_baseline_bytes(test, n, d),
            },
            fields=(
                "d",
                "n_points",
                "n_embd",
                "depth",
                "grad_last",
                "n_loops",
                "train.batch_size",
                "train.eval_batch_size",
                "test_batch_size",
            ),
        )


def _test(
    config: LoopedTransformerConfig,
    looped: LoopedTransformer,
    gpt: GPT,
    X: torch.Tensor,
    y: torch.Tensor,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Test both trained models on the test prompts X (B, n, d), y (B, n): every prefix, every
    loop; the baselines; the parameter counts and the aggregates the claims read."""
    d, n, b = config.d, config.n_points, config.n_loops
    n_test_loops = config.test_loop_factor * b
    with torch.no_grad():
        loop_preds = looped(X, y, n_loops=n_test_loops)  # (4b, B, n)
        gpt_pred = gpt(X, y)  # (B, n)
    err_loops = normalised_error(loop_preds, y, d)  # (4b, n)
    err_looped = err_loops[b - 1]  # (n,)
    err_gpt = normalised_error(gpt_pred, y, d)

    def baseline(fn, **kw) -> torch.Tensor:
        return normalised_error(prefix_baseline(fn, X, y, X, **kw), y, d)

    err_ols = baseline(prefix_ols)
    err_knn = baseline(prefix_knn, k_neighbors=3)
    err_avg = baseline(prefix_averaging)

    # per-prompt aggregate over k ≥ d, for standard errors
    def agg_se(pred: torch.Tensor) -> tuple[float, float]:
        per_prompt = (pred.double() - y.double())[:, d:].square().mean(-1) / d  # (B,)
        return float(per_prompt.mean()), float(per_prompt.std() / math.sqrt(len(per_prompt)))

    k2d = min(2 * d, n - 1)  # the prefix with 2d context points (or the last one)
    loops_agg = err_loops[:, d:].mean(-1)  # (4b,)
    params_looped, params_gpt = n_parameters(looped), n_parameters(gpt)
    metrics: dict[str, Any] = {
        "k": list(range(n)),
        "err_looped": err_looped.tolist(),
        "err_multilayer": err_gpt.tolist(),
        "err_least_squares": err_ols.tolist(),
        "err_knn3": err_knn.tolist(),
        "err_averaging": err_avg.tolist(),
        "loop_index": list(range(1, n_test_loops + 1)),
        "err_vs_loops": loops_agg.tolist(),
        "params_looped": params_looped,
        "params_multilayer": params_gpt,
        "param_ratio": params_looped / params_gpt,
        "k_2d": k2d,
    }
    metrics["err_looped_k_ge_d"], metrics["err_looped_k_ge_d_se"] = agg_se(loop_preds[b - 1])
    metrics["err_multilayer_k_ge_d"], metrics["err_multilayer_k_ge_d_se"] = agg_se(gpt_pred)
    metrics["error_ratio_looped_multilayer"] = (
        metrics["err_looped_k_ge_d"] / metrics["err_multilayer_k_ge_d"]
    )
    metrics["loop_flatness"] = float((loops_agg[b - 1 :] / loops_agg[b - 1]).max())
    metrics["err_looped_at_2d"] = float(err_looped[k2d])
    metrics["err_multilayer_at_2d"] = float(err_gpt[k2d])
    metrics["err_knn3_at_2d"] = float(err_knn[k2d])
    metrics["err_averaging_at_2d"] = float(err_avg[k2d])
    metrics["models_vs_baselines_at_2d"] = max(
        metrics["err_looped_at_2d"], metrics["err_multilayer_at_2d"]
    ) / min(metrics["err_knn3_at_2d"], metrics["err_averaging_at_2d"])
    arrays = {"err_loops_per_prefix": err_loops.cpu()}  # (4b, n)
    return metrics, arrays
