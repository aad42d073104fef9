"""`softmax-heads`: multi-head softmax attention learns debiased one-step GD with zero-sum heads.

He, Pan, Chen, Yang (2025), "In-context linear regression demystified: training dynamics and
mechanistic interpretability of multi-head softmax attention" (SPEC §2.1).

One layer of H-head softmax attention of He et al.'s form (`icgd.models.SoftmaxAttention`,
kind `he`): head h has a key-query matrix `KQ_h` (d+1, d+1) and an OV vector `o_h` (d+1,) writing
the label slot, `ŷ = Σ_h o_hᵀ Σ_ℓ z_ℓ softmax_ℓ(z_ℓᵀ KQ_h z_q)`. Trained from random init on
isotropic linear regression (x ~ N(0, I), w ~ N(0, I), σ = 0.1), He et al. find

- KQ_h's x-block → ω_h I ("diagonal and homogeneous"), its y-row and y-column → 0;
- o_h → its last entry μ_h only, and Σ_h μ_h ≈ 0 ("zero-sum"), in ± pairs;
- mechanism (derived here): with `s_ℓ = x_ℓᵀ x_q`, a head with `KQ = ω[[I, 0], [0, 0]]`,
  `o = μ e_{d+1}` predicts `μ Σ_ℓ y_ℓ softmax_ℓ(ω s) = μ ȳ + (μω/n) Σ_ℓ y_ℓ (s_ℓ − s̄) + O(ω²)`,
  so the pair (μ, ω), (−μ, −ω) cancels the even terms (ȳ, ω²) and gives
  `ŷ = (2μω/n) Σ_ℓ y_ℓ (x_ℓ − x̄)ᵀ x_q + O(ω³)`: one step of *debiased* (mean-centred) GD;
- softmax normalises over the context, so the error keeps falling at longer test contexts.

What is measured. Per head Dist(KQ_h[:d,:d], I) and ω_h = tr/d; the y-row/column mass ratio;
the OV x-share per head ‖o_h[:d]‖/‖o_h‖ (reported) and of the head-sum ‖Σ_h o_h[:d]‖/‖o[:, d]‖
(claimed: that is the x-readout the layer actually uses at first order, `Σ_h o_h[:d]ᵀ x̄`); the
zero-sum ratio; R² of the model's predictions fitted by one least-squares scalar times the debiased
vs the plain one-step GD predictor (float64, fresh prompts); the test MSE at context lengths
n_test ∈ {n/2, n, 2n, 4n} on nested prompts (the same w, x_q and first points at every length).

Linear attention comparison. A one-layer `full` LSA (`icgd.models.LinearSelfAttention`) is trained
on the same task with the same recipe. Its layer divides by the *prompt's* n
(`Z + (1/n) P Z M Zᵀ Q Z`), so at any n_test it applies the trained step Γ to the empirical gradient
`(1/n_test) Xᵀy` — a consistent estimator whose error also falls with n_test (for Σ = I:
`err(a, n) = σ² + d(1 − 2a + a²(1 + (d+1)/n)) + a²σ²d/n` at the step a ≈ n_train/(n_train+d+1)).
That normalisation is a design choice of ours, not what SPEC §2.1's "linear attention with a
fixed scale" means, so a second variant is evaluated from the *same* trained weights: the scale
fixed at the training length, i.e. the prediction multiplied by n_test/n_train (an unnormalised
sum scaled by 1/n_train; exact for one layer, since the query's label slot starts at 0). Its
effective step grows ∝ n_test and its error rises at 2n (the formula above gives ≈ 3.2 vs ≈ 1.2).
The length claim on linear attention uses the fixed-scale variant, because that is the claim's
subject; the prompt-normalised LSA's errors are reported next to the softmax model's.

Recipe (measured with a scratch script, one seed each, d = 5, n = 20, H = 4, 2000 steps, a fresh
batch of 1024 prompts each step, lr 0.01 with a cosine decay to 0; ‖·‖ over the 4 heads):

| optimizer, init            | max Dist(KQ_x, I) | per-head ‖o_h[:d]‖/‖o_h‖ | held-out MSE |
|----------------------------|-------------------|---------------------------|--------------|
| Adam, init 0.02            | 0.12–0.22         | 0.20–0.42                 | 1.243        |
| AdamW wd 0.1, init 0.02    | 0.19–0.26         | 0.09–0.18                 | 1.244        |
| AdamW wd 0.3, init 0.02    | 0.14–0.23         | 0.05–0.08                 | 1.248        |
| AdamW wd 1.0, init 0.02    | 0.03–0.05         | 0.035–0.047               | 1.264        |
| Adam, init 0.002           | 0.03–0.39         | 0.01–0.27                 | 1.248        |

Without weight decay the heads come out in ± pairs with ω ≈ ±0.28 and Σ_h μ_h ≈ 0, but the
off-diagonal KQ entries stay near their init size (0.02·√20 ≈ 0.09 of norm, against ‖ω I‖ ≈ 0.63)
and the o x-entries at 0.1–0.19 each, cancelling across heads (Σ_h o_h[:d] ≈ 0): both are
near-flat directions of the loss (a head pair's x-readout `(o_1 + o_2)[:d]ᵀ x̄` and its O(ω) terms
are even in y and carry almost no gradient once the pair's sum is 0), so nothing pulls them to 0.
A 10× smaller init did not help: it landed in a different, unpaired solution (μ ≈ −0.54, 1.37,
−0.55, −0.29; still zero-sum). Decoupled weight decay 1.0 (AdamW) is the restoring force those
directions lack: it leaves the pair structure (ω ≈ ±0.36, μ ≈ ±0.56) and shrinks the flat parts
to a few %, at a cost of 1.6% held-out MSE (the regulariser's bias). It is the default, so the
per-head share is claimed too; with `train.optimizer.weight_decay=0` expect `kq_homogeneous`
to be marginal and `ov_last_entry_per_head` to fail. The LSA keeps plain Adam (`lsa_train`): its
optimum is a single GD step, and weight decay would only bias that step.

Outcome of the full recipe (after the tolerances were fixed). Seeds 1, 2 and 3 pass every claim
(seed 1: the ± pair solution, ω ≈ ±0.36, μ ≈ ±0.56). Seed 0 (the default) lands in a 3 + 1 solution:
three heads with ω ≈ −0.41, μ ≈ −0.36 and one with ω = 0.49, μ = 0.78 — diagonal and homogeneous
(Dist ≤ 0.035), but |Σ_h μ_h|/Σ_h |μ_h| = 0.16: the weight decay charges the lone head for the
μ ≈ 1.08 that balance would need, so `ov_zero_sum` fails (and one of the three heads keeps an
x-share of 0.13). With weight decay 0 the same seed reaches the same 3 + 1 basin *balanced*
(μ = −0.51, −0.48, −0.40, +1.37, zero-sum ratio 0.006) but fails `kq_homogeneous` (0.36) and the
per-head share (0.35). The first-order step `Σ_h μ_h ω_h` is what matters to the predictor, and
R²(debiased) ≈ 0.97–0.99 with a gain of ≈ 0.01 over plain GD in all three runs.
"""

from __future__ import annotations

import copy
from typing import Annotated

import torch
from pydantic import Field, NonNegativeFloat, PositiveInt, model_validator

from icgd.analysis import distance_to_identity
from icgd.core.config import Config
from icgd.core.prompts import build_prompt
from icgd.core.registry import register
from icgd.core.results import Claim, make_claim
from icgd.core.rng import derive_seed, make_generator
from icgd.experiments.base import ExperimentConfig, Outcome, RunContext
from icgd.experiments.common import (
    fit_model,
    prompt_mse,
    regression_sampler,
    regression_task_config,
)
from icgd.models import LinearSelfAttention, LSAConfig, SoftmaxAttention
from icgd.models.softmax_attention import SoftmaxAttentionConfig
from icgd.tasks import LinearRegression, LinearRegressionConfig
from icgd.theory import one_layer_loss, optimal_one_layer_preconditioner
from icgd.training import OptimizerConfig, ScheduleConfig, TrainConfig, TrainResult

DEFAULT_TRAIN = TrainConfig(
    steps=2000,
    batch_size=1024,
    optimizer=OptimizerConfig(kind="adamw", lr=0.01, weight_decay=1.0),
    schedule=ScheduleConfig(kind="cosine"),
    clip_norm=None,
    resample_every=1,
    eval_every=100,
    eval_batch_size=4096,
    checkpoint_every=500,
)
DEFAULT_LSA_TRAIN = DEFAULT_TRAIN.model_copy(
    update={"optimizer": OptimizerConfig(kind="adam", lr=0.01)}
)

EVAL_CHUNK = 1024  # prompts per forward pass at test time: bounds the (B, H, n+1, n+1) scores


class Tolerances(Config):
    """Tolerances of the claims, fixed before the default run was looked at (reasons in `check`)."""

    kq_dist: NonNegativeFloat = 0.2  # max_h Dist(KQ_h[:d,:d], I) ≤ this
    y_mass: NonNegativeFloat = 0.2  # max_h ‖(KQ_h[d,:], KQ_h[:d,d])‖/‖KQ_h‖ ≤ this
    ov_sum_x: NonNegativeFloat = 0.1  # ‖Σ_h o_h[:d]‖ / ‖o[:, d]‖ ≤ this
    ov_x: NonNegativeFloat = 0.1  # max_h ‖o_h[:d]‖ / ‖o_h‖ ≤ this
    zero_sum: NonNegativeFloat = 0.1  # |Σ_h o_h[d]| / Σ_h |o_h[d]| ≤ this
    r2_debiased: NonNegativeFloat = 0.8  # R²(debiased GD) ≥ this


class SoftmaxHeadsConfig(ExperimentConfig):
    """Settings of `softmax-heads`; every one can be overridden with `--set key=value`.

    `test_lengths` None means (n//2, n, 2n, 4n); given, it must contain n and 2n (the length
    claims compare those two). `train`/`init_std`: the softmax model's recipe;
    `lsa_train`/`lsa_init_std`: the LSA's (the module docstring says why they differ).
    """

    d: Annotated[int, Field(gt=0, le=256)] = 5
    n: Annotated[int, Field(ge=2, le=10_000)] = 20
    n_heads: Annotated[int, Field(ge=2, le=64)] = 4
    noise_std: NonNegativeFloat = 0.1
    init_std: NonNegativeFloat = 0.02
    lsa_init_std: NonNegativeFloat = 0.02
    train: TrainConfig = DEFAULT_TRAIN
    lsa_train: TrainConfig = DEFAULT_LSA_TRAIN
    test_batch_size: Annotated[int, Field(ge=16)] = 16384
    test_lengths: tuple[PositiveInt, ...] | None = None
    tolerances: Tolerances = Tolerances()

    @model_validator(mode="after")
    def _lengths_are_valid(self) -> SoftmaxHeadsConfig:
        if self.test_lengths is not None:
            missing = {self.n, 2 * self.n} - set(self.test_lengths)
            if missing:
                raise ValueError(
                    f"test_lengths: must contain n = {self.n} and 2n = {2 * self.n} "
                    f"(the length claims compare them), got {list(self.test_lengths)}"
                )
        self.task_config()
        return self

    @property
    def lengths(self) -> tuple[int, ...]:
        if self.test_lengths is not None:
            return tuple(sorted(set(self.test_lengths)))
        return tuple(sorted({max(1, self.n // 2), self.n, 2 * self.n, 4 * self.n}))

    def task_config(self, n: int | None = None) -> LinearRegressionConfig:
        return regression_task_config(d=self.d, n=n or self.n, noise_std=self.noise_std)


# ------------------------------------------------------------------------------ mechanism helpers


def one_step_predictors(X: torch.Tensor, y: torch.Tensor, x_q: torch.Tensor) -> dict:
    """The plain and debiased one-step GD predictors, each (B,).

    X: (B, n, d), y: (B, n), x_q: (B, d). plain: `x_qᵀ (1/n) Σ_ℓ y_ℓ x_ℓ`;
    debiased: `x_qᵀ (1/n) Σ_ℓ y_ℓ (x_ℓ − x̄)` with x̄ the context mean.
    """
    n = X.shape[1]
    g_plain = torch.bmm(y.unsqueeze(1), X).squeeze(1) / n  # (B, d) = (1/n) Xᵀ y
    g_deb = g_plain - y.mean(1, keepdim=True) * X.mean(1)  # (B, d): minus ȳ x̄
    return {
        "plain": (g_plain * x_q).sum(-1),
        "debiased": (g_deb * x_q).sum(-1),
    }


def scalar_fit_r2(y: torch.Tensor, g: torch.Tensor) -> tuple[float, float]:
    """Least-squares fit `y ≈ c g` by one scalar: returns `(c, R²)`, both (B,) → float.

    `c = ⟨y, g⟩/⟨g, g⟩`, `R² = 1 − ‖y − c g‖² / ‖y − ȳ‖²` (centred total sum of squares).
    """
    y, g = y.double(), g.double()
    c = (y * g).sum() / (g * g).sum()
    residual = (y - c * g).square().sum()
    total = (y - y.mean()).square().sum()
    return float(c), float(1 - residual / total)


def head_metrics(KQ: torch.Tensor, o: torch.Tensor) -> dict[str, list[float] | float]:
    """Structure of He-form weights: KQ (H, d+1, d+1), o (H, d+1) → the metrics of the claims."""
    KQ, o = KQ.double(), o.double()
    d = KQ.shape[-1] - 1
    x_block = KQ[:, :d, :d]  # (H, d, d)
    omega = x_block.diagonal(dim1=1, dim2=2).mean(1)  # (H,) = tr / d
    y_parts = torch.cat([KQ[:, d, :], KQ[:, :d, d]], dim=1)  # (H, 2d+1): y-row and y-column
    y_mass = y_parts.norm(dim=1) / KQ.flatten(1).norm(dim=1)  # (H,)
    x_share = o[:, :d].norm(dim=1) / o.norm(dim=1)  # (H,)
    mu = o[:, d]  # (H,)
    dist = distance_to_identity(x_block)  # (H,)
    return {
        "kq_dist": dist.tolist(),
        "kq_dist_max": float(dist.max()),
        "omega": omega.tolist(),
        "y_mass": y_mass.tolist(),
        "y_mass_max": float(y_mass.max()),
        "ov_x_share": x_share.tolist(),
        "ov_x_share_max": float(x_share.max()),
        "ov_sum_x_share": float(o[:, :d].sum(0).norm() / mu.norm()),
        "mu": mu.tolist(),
        "zero_sum_ratio": float(mu.sum().abs() / mu.abs().sum()),
        # First-order step of the layer: Σ_h μ_h ω_h multiplies (1/n) Σ y_ℓ (x_ℓ − x̄)ᵀ x_q.
        "step_first_order": float((mu * omega).sum()),
    }


# ----------------------------------------------------------------------------------- training


def _fit(
    model: torch.nn.Module,
    train_config: TrainConfig,
    task: LinearRegression,
    *,
    seed: int,
    label: str,
    eval_batch: tuple[torch.Tensor, torch.Tensor],
    ctx: RunContext,
) -> TrainResult:
    """Train `model` into `ctx.run_dir / label` on the stream `derive_seed(seed, "train", label)`,
    resuming from a checkpoint found there (`fit_lsa` for any model with `predict`)."""
    return fit_model(
        model,
        regression_sampler(task),
        prompt_mse,
        train_config,
        seed=seed,
        label=label,
        eval_batch=eval_batch,
        ctx=ctx,
        sub=label,
        device=task.device,
    )


@torch.no_grad()
def _predict(model: torch.nn.Module, Z: torch.Tensor) -> torch.Tensor:
    """`model.predict` in chunks of EVAL_CHUNK prompts: Z (B, d+1, n+1) → (B,)."""
    return torch.cat([model.predict(part) for part in Z.split(EVAL_CHUNK)])


@register("softmax-heads")
class SoftmaxHeads:
    paper = "He, Pan, Chen, Yang 2025"
    summary = "He et al. 2025: multi-head softmax attention learns debiased GD with zero-sum heads"
    Config = SoftmaxHeadsConfig

    def run(self, config: SoftmaxHeadsConfig, ctx: RunContext) -> Outcome:
        device, dtype = torch.device(config.device), config.torch_dtype
        task = LinearRegression(config.task_config(), device=device, dtype=dtype)
        held_out = task.sample(
            config.train.eval_batch_size, make_generator(derive_seed(config.seed, "eval"), device)
        )
        eval_batch = (held_out.prompt(), held_out.y_q)

        init = make_generator(derive_seed(config.seed, "init", "softmax"), "cpu")
        soft = SoftmaxAttention(
            SoftmaxAttentionConfig(
                d=config.d, n_heads=config.n_heads, kind="he", init_std=config.init_std
            ),
            generator=init,
            dtype=dtype,
            device=device,
        )
        init = make_generator(derive_seed(config.seed, "init", "lsa"), "cpu")
        lsa = LinearSelfAttention(
            LSAConfig(d=config.d, n_layers=1, parametrisation="full", init_std=config.lsa_init_std),
            generator=init,
            dtype=dtype,
        ).to(device)
        outcomes = {}
        for label, model, recipe in (
            ("softmax", soft, config.train),
            ("lsa", lsa, config.lsa_train),
        ):
            outcome = _fit(
                model,
                recipe,
                task,
                seed=config.seed,
                label=label,
                eval_batch=eval_batch,
                ctx=ctx,
            )
            if outcome.status == "diverged":
                return Outcome(
                    metrics={f"{label}_diverged_at": outcome.steps_done},
                    diverged=True,
                    message=f"{label}: {outcome.message}",
                )
            outcomes[label] = outcome

        # Test prompts in float64, nested over the context length: the prompt of length L uses the
        # first L points of the longest one, so the errors at different lengths are paired.
        lengths = config.lengths
        long_task = LinearRegression(
            config.task_config(n=max(lengths)), device=device, dtype=torch.float64
        )
        test = long_task.sample(
            config.test_batch_size, make_generator(derive_seed(config.seed, "test"), device)
        )
        soft64 = copy.deepcopy(soft).double()
        lsa64 = copy.deepcopy(lsa).double()
        err_soft, err_lsa, err_fixed = [], [], []
        for L in lengths:
            Z = build_prompt(test.X[:, :L], test.y[:, :L], test.x_q)  # (B, d+1, L+1)
            y_soft = _predict(soft64, Z)
            y_lsa = _predict(lsa64, Z)
            err_soft.append(float((y_soft - test.y_q).square().mean()))
            err_lsa.append(float((y_lsa - test.y_q).square().mean()))
            err_fixed.append(float((y_lsa * (L / config.n) - test.y_q).square().mean()))
            if L == config.n:
                predictors = one_step_predictors(test.X[:, :L], test.y[:, :L], test.x_q)
                c_deb, r2_deb = scalar_fit_r2(y_soft, predictors["debiased"])
                c_plain, r2_plain = scalar_fit_r2(y_soft, predictors["plain"])
        i_n, i_2n = lengths.index(config.n), lengths.index(2 * config.n)

        KQ, o = soft.KQ.detach().double().cpu(), soft.o.detach().double().cpu()
        P, Q = (m.detach()[0, 0].double().cpu() for m in lsa.layer_matrices())
        d = config.d
        gamma = -P[d, d] * Q[:d, :d].T  # (d, d): the LSA's GD block
        sigma = torch.eye(d, dtype=torch.float64)
        gamma_star = optimal_one_layer_preconditioner(sigma, config.n, noise_std=config.noise_std)
        metrics = {
            **head_metrics(KQ, o),
            "loss_softmax": outcomes["softmax"].final_eval_loss,
            "loss_lsa": outcomes["lsa"].final_eval_loss,
            "loss_lsa_theory": one_layer_loss(
                gamma_star, sigma, config.n, noise_std=config.noise_std
            ),
            "loss_zero": task.population_loss_of_zero(),
            "lsa_step": float(torch.trace(gamma) / d),
            "lsa_step_theory": float(torch.trace(gamma_star) / d),
            "r2_debiased": r2_deb,
            "r2_plain": r2_plain,
            "r2_gain": r2_deb - r2_plain,
            "fit_scale_debiased": c_deb,  # compare with step_first_order
            "fit_scale_plain": c_plain,
            "test_lengths": list(lengths),
            "test_mse_softmax": err_soft,
            "test_mse_lsa": err_lsa,
            "test_mse_lsa_fixed_scale": err_fixed,
            "softmax_ratio_2n": err_soft[i_2n] / err_soft[i_n],
            "lsa_ratio_2n": err_lsa[i_2n] / err_lsa[i_n],
            "lsa_fixed_ratio_2n": err_fixed[i_2n] / err_fixed[i_n],
        }
        arrays = {"KQ": KQ, "o": o, "P": P, "Q": Q}
        return Outcome(metrics=metrics, arrays=arrays)

    def check(self, config: SoftmaxHeadsConfig, metrics: dict) -> list[Claim]:
        """The claims, with tolerances chosen before the default run was looked at:

        - max_h Dist(KQ_h[:d,:d], I) ≤ 0.2: Dist² is the share of ‖KQ_h[:d,:d]‖² off the identity
          direction, so 0.2 leaves ≥ 96% of it on ω_h I; SGD noise of a 1024-prompt batch keeps
          off-diagonal entries of a few % of ω (lead's scratch run: off-diagonal norms 0.05–0.09 vs
          ‖ω I‖ ≈ 0.63), so a much tighter bound would test the optimiser's noise floor. (The
          recipe probes then showed Dist up to 0.22 without weight decay: see the module docstring.)
        - y-row/column mass ≤ 0.2 of ‖KQ_h‖, per head: the same 4%-of-the-squared-norm allowance.
        - effective x-readout ‖Σ_h o_h[:d]‖ ≤ 0.1·‖o[:, d]‖: 10% of the label readout, the
          5% allowance of a non-GD path in `looped-gd`/`one-step-gd` doubled, since the x-entries
          sit in near-flat directions set by the optimiser's noise, not at an exact zero of the
          optimum (the head-sum cancelled to ≈ 0.01 in every recipe probe, with or without decay).
        - per head ‖o_h[:d]‖ ≤ 0.1·‖o_h‖: the same 10%; it holds only because of the weight decay
          of the default recipe (module docstring) and is expected to fail without it.
        - zero-sum |Σ_h μ_h| ≤ 0.1·Σ_h |μ_h|: a 10% imbalance would leave a ȳ-readout of that size.
        - R²: debiased > plain (paired on the same prompts, tolerance 0) and R²(debiased) ≥ 0.8:
          the trained |ω| ≈ 0.28–0.36 gives `ω² Var(x_ℓᵀ x_q) ≈ 0.4–0.65`, so the first-order
          expansion leaves an O(ω³) remainder of a few tens of % of the signal; 0.8: the debiased
          step explains most of the variance without pretending the expansion is exact.
        - length: softmax MSE at 2n ≤ MSE at n (ratio ≤ 1, no tolerance: a paired comparison,
          and the expected drop is ~40%); fixed-scale linear attention MSE at 2n > MSE at n
          (ratio ≥ 1, no tolerance; theory predicts ≈ 2.8).
        """
        tol = config.tolerances
        return [
            make_claim(
                "kq_homogeneous",
                "KQ x-blocks → ω_h I: max_h Dist(KQ_h[:d,:d], I)",
                metrics["kq_dist_max"],
                0.0,
                tol.kq_dist,
                "at_most",
            ),
            make_claim(
                "kq_y_small",
                "KQ y-row/column mass: max_h ‖(KQ_h[d,:], KQ_h[:d,d])‖/‖KQ_h‖",
                metrics["y_mass_max"],
                0.0,
                tol.y_mass,
                "at_most",
            ),
            make_claim(
                "ov_last_entry",
                "effective x-readout small: ‖Σ_h o_h[:d]‖ / ‖(o_h[d])_h‖",
                metrics["ov_sum_x_share"],
                0.0,
                tol.ov_sum_x,
                "at_most",
            ),
            make_claim(
                "ov_last_entry_per_head",
                "each head reads the label only: max_h ‖o_h[:d]‖ / ‖o_h‖",
                metrics["ov_x_share_max"],
                0.0,
                tol.ov_x,
                "at_most",
            ),
            make_claim(
                "ov_zero_sum",
                "OV last entries sum to 0: |Σ_h o_h[d]| / Σ_h |o_h[d]|",
                metrics["zero_sum_ratio"],
                0.0,
                tol.zero_sum,
                "at_most",
            ),
            make_claim(
                "debiased_beats_plain",
                "R²(debiased GD) − R²(plain GD) of the predictions, one fitted scalar each",
                metrics["r2_gain"],
                0.0,
                0.0,
                "at_least",
            ),
            make_claim(
                "debiased_explains",
                "R² of the predictions by c·(debiased one-step GD)",
                metrics["r2_debiased"],
                tol.r2_debiased,
                0.0,
                "at_least",
            ),
            make_claim(
                "softmax_length_generalises",
                "softmax test MSE at 2n / at n (no rise)",
                metrics["softmax_ratio_2n"],
                1.0,
                0.0,
                "at_most",
            ),
            make_claim(
                "fixed_scale_linear_does_not",
                "fixed-scale linear attention test MSE at 2n / at n (rises)",
                metrics["lsa_fixed_ratio_2n"],
                1.0,
                0.0,
                "at_least",
            ),
        ]
