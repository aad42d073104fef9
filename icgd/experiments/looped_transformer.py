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
from typing import Annotated, Any, Literal

import torch
from pydantic import Field, PositiveFloat, model_validator

from icgd.algorithms import prefix_averaging, prefix_knn, prefix_ols
from icgd.core.config import Config
from icgd.core.registry import register
from icgd.core.results import Claim, make_claim
from icgd.core.rng import derive_seed, make_generator
from icgd.experiments.base import ExperimentConfig, Outcome, RunContext
from icgd.experiments.causal import (
    fit_causal,
    gpt_loss,
    n_parameters,
    normalised_error,
    prefix_baseline,
)
from icgd.experiments.common import apply_preset
from icgd.models import GPT, GPTConfig, LoopedConfig, LoopedTransformer
from icgd.tasks import CurriculumConfig, FunctionClass, FunctionClassConfig, ScheduleConfig
from icgd.training import OptimizerConfig, TrainConfig
from icgd.training import ScheduleConfig as LRScheduleConfig

# CPU recipe (both models): d = 2, 5 points, Adam lr 1e-3 with a cosine decay, batch 128 fresh
# prompts per update, 2000 updates; the looped model with a loop curriculum b = 1 → 10 (+1 every
# 150 updates). Measured, seed 0 (error at k ≥ d, looped / GPT; one core, the other busy):
# - Since the GPT read-in/out keep nn.Linear's init (Garg et al.'s code; `icgd.models.gpt`), the
#   GPT leaves the initial plateau within a few hundred updates; with the old N(0, 0.02²) read-in
#   neither model did at d = 5 in 1500 updates, and the previous recipe here (lr 3e-4, batch 256,
#   600 updates) now leaves both on it (0.95 / 0.79: claims 1 and 3 "pass" vacuously).
# - This recipe, without the loop curriculum: 0.61 / 0.16 (274 s); the looped model learns far
#   more slowly than the GPT.
# - This recipe: 0.42 / 0.16 (291 s): looped / GPT 2.5 (claim ≤ 2 fails), flat past b (1.10),
#   models / baselines at k = 2d 0.52 (claim ≤ 0.5 fails narrowly).
# - 3000 updates, loop curriculum +1 every 200: 0.30 / 0.08: the GPT improves faster (ratio 3.7)
#   and the looped error is no longer flat past b (1.48).
# A CPU budget does not give the looped model the many updates Yang et al. train it for: the
# paper's claims need `preset=paper` (GPU).
CPU_TRAIN = TrainConfig(
    steps=2000,
    batch_size=128,
    optimizer=OptimizerConfig(kind="adam", lr=1e-3),
    schedule=LRScheduleConfig(kind="cosine"),
    clip_norm=None,
    resample_every=1,
    eval_every=250,
    eval_batch_size=1000,
    checkpoint_every=1000,
)
CPU_LOOP_CURRICULUM = ScheduleConfig(start=1, end=10, inc=1, interval=150)

# Yang et al. / Garg et al.: Adam lr 1e-4, batch 64, 500k steps (GPU).
PAPER_TRAIN = TrainConfig(
    steps=500_000,
    batch_size=64,
    optimizer=OptimizerConfig(kind="adam", lr=1e-4),
    schedule=LRScheduleConfig(kind="constant"),
    clip_norm=None,
    resample_every=1,
    eval_every=1000,
    eval_batch_size=1280,
    checkpoint_every=10_000,
)

PAPER: dict[str, Any] = {
    "d": 20,
    "n_points": 41,
    "n_embd": 256,
    "n_head": 8,
    "n_loops": 30,
    "grad_last": 15,
    "depth": 12,
    "train": PAPER_TRAIN.model_dump(),
    "curriculum": CurriculumConfig().model_dump(),
    # ours: b from 1 to 30, +1 every 500 steps (SPEC: "b follows a curriculum")
    "loop_curriculum": ScheduleConfig(start=1, end=30, inc=1, interval=500).model_dump(),
}


class Tolerances(Config):
    """Tolerances of the claims, fixed before the default run was looked at (reasons in `check`)."""

    error_factor: PositiveFloat = 2.0  # looped err_{k≥d} ≤ this × multi-layer's
    param_fraction: PositiveFloat = 0.5  # looped parameters ≤ this × multi-layer's
    loop_flatness: PositiveFloat = 0.1  # max_{t ∈ [b, 4b]} err(t)/err(b) ≤ 1 + this
    baseline_fraction: PositiveFloat = 0.5  # both models' err(2d) ≤ this × min(3-NN, averaging)


class LoopedTransformerConfig(ExperimentConfig):
    """Settings of `looped-transformer`; every one can be overridden with `--set key=value`.

    `d`, `n_points`: the regression task; `n_embd`, `n_head`: the width of both models;
    `n_loops` (b), `grad_last` (T): the looped model's training loops and loss window; `depth`:
    the GPT's layers; `train`: the optimizer budget of each model (the same for both);
    `test_loop_factor`: the looped model is tested for t = 1 … factor·b loops;
    `curriculum`, `loop_curriculum`: optional training curricula (module docstring).
    """

    preset: Literal["cpu", "paper"] = "cpu"
    d: Annotated[int, Field(gt=0, le=256)] = 2
    n_points: Annotated[int, Field(ge=2, le=1024)] = 5
    n_embd: Annotated[int, Field(gt=0, le=4096)] = 64
    n_head: Annotated[int, Field(gt=0, le=64)] = 2
    n_loops: Annotated[int, Field(gt=0, le=256)] = 10
    grad_last: Annotated[int, Field(gt=0, le=256)] = 5
    depth: Annotated[int, Field(gt=0, le=64)] = 4
    train: TrainConfig = CPU_TRAIN
    curriculum: CurriculumConfig | None = None
    loop_curriculum: ScheduleConfig | None = CPU_LOOP_CURRICULUM
    test_loop_factor: Annotated[int, Field(ge=1, le=16)] = 4
    test_batch_size: Annotated[int, Field(ge=16)] = 4000
    tolerances: Tolerances = Tolerances()

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        return apply_preset(cls, data, "paper", PAPER)

    @model_validator(mode="after")
    def _check(self) -> LoopedTransformerConfig:
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_embd: must be divisible by n_head={self.n_head}, got {self.n_embd}"
            )
        if self.grad_last > self.n_loops:
            raise ValueError(f"grad_last: must be <= n_loops={self.n_loops}, got {self.grad_last}")
        if self.n_points <= self.d:
            raise ValueError(
                f"n_points: must exceed d={self.d} (the claims score prefixes with k >= d "
                f"context points), got {self.n_points}"
            )
        if self.curriculum is not None:
            if self.curriculum.dims.end > self.d:
                raise ValueError(f"curriculum: dims.end must be <= d={self.d}")
            if self.curriculum.points.end > self.n_points:
                raise ValueError(f"curriculum: points.end must be <= n_points={self.n_points}")
        if self.loop_curriculum is not None and self.loop_curriculum.end != self.n_loops:
            raise ValueError(
                f"loop_curriculum: end must equal n_loops={self.n_loops} (the model is trained "
                f"and tested at b = n_loops), got {self.loop_curriculum.end}; set "
                "loop_curriculum.end, or loop_curriculum=null for none"
            )
        uses_step = self.curriculum is not None or self.loop_curriculum is not None
        if uses_step and self.train.resample_every != 1:
            raise ValueError("train.resample_every: must be 1 with a curriculum")
        return self

    def task(self, device, dtype) -> FunctionClass:
        config = FunctionClassConfig(kind="linear", d=self.d, n_points=self.n_points)
        return FunctionClass(config, device=device, dtype=dtype)

    def looped_config(self) -> LoopedConfig:
        return LoopedConfig(
            d_in=self.d,
            max_points=self.n_points,
            size=None,
            n_embd=self.n_embd,
            n_head=self.n_head,
            n_blocks=1,
            n_loops=self.n_loops,
            grad_last=self.grad_last,
        )

    def gpt_config(self) -> GPTConfig:
        return GPTConfig(
            d_in=self.d,
            max_points=self.n_points,
            size=None,
            n_embd=self.n_embd,
            n_head=self.n_head,
            n_layer=self.depth,
        )


# ------------------------------------------------------------------------------------ helpers


def _looped_loss(model: LoopedTransformer, batch: tuple) -> torch.Tensor:
    """Yang et al.'s loss: MSE over all prefixes, averaged over the last min(T, b) of b loops."""
    X, y, b = batch
    return model.loss_over_last_loops(X, y, n_loops=b, last=min(model.config.grad_last, b))


# --------------------------------------------------------------------------------- experiment


@register("looped-transformer")
class LoopedTransformerExperiment:
    paper = "Yang, Lee, Nowak, Papailiopoulos 2024"
    summary = "Yang et al. 2024: one looped block ≈ a multi-layer GPT; error flat past b loops"
    Config = LoopedTransformerConfig

    def run(self, config: LoopedTransformerConfig, ctx: RunContext) -> Outcome:
        device, dtype = torch.device(config.device), config.torch_dtype
        seed, d, n, b = config.seed, config.d, config.n_points, config.n_loops
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

        # --- test: every prefix, every loop --------------------------------------------------
        X, y, _ = draw(config.test_batch_size, "test")
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
        metrics |= {
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
        return Outcome(metrics=metrics, arrays=arrays)

    def check(self, config: LoopedTransformerConfig, metrics: dict) -> list[Claim]:
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
