"""`gd-vs-transformer`: trained linear self-attention does GD (von Oswald et al. 2023).

von Oswald, Niklasson, Randazzo, Sacramento, Mordvintsev, Zhmoginov, Vladymyrov (2023),
"Transformers learn in-context by gradient descent", §2–§4 (SPEC §1.3). Their setting: d = n = 10,
`x ~ U(−1, 1)^d`, `w ~ N(0, I)`, no label noise.

1. A one-layer LSA with all of P and Q free is trained, then compared with one GD step from 0
   whose step η is line-searched on the training distribution (`best_step_size`): prediction
   difference, and the cosine / difference of the query sensitivities `∂ŷ/∂x_q`
   (`icgd.analysis.comparison`).
2. Interpolation: the trained weights and the hand construction (`lsa_from_gd_step`, step η) are
   averaged, `θ(t) = (1 − t) θ_trained + t θ_GD`, and the loss is measured along the path. The
   construction is first moved along the model's rescaling symmetry `(P, Q) → (cP, Q/c)` (which
   leaves the function unchanged) to the `c` whose `Q/c` is closest to the trained Q in Frobenius
   norm (ours: the paper does not say how it aligned the two); without that the path would cross
   models that differ only by a factor, and the loss along it would measure the gauge, not the
   algorithm.
3. A `depth`-layer LSA (full P and Q) is trained and compared with `depth` GD steps with one
   line-searched step, and with `depth` steps of GD++ (`gd_plus_plus_steps`: each layer moves the
   covariates by `x ← (I − γ_l Ŝ) x` and the residual labels by one GD step) whose per-step
   `(η_l, γ_l)` are fitted on the training distribution (`fit_gd_plus_plus`). The paper's finding:
   the trained model beats plain GD and matches GD++.
4. Out of distribution: the inputs of the test prompts are drawn from `U(−α, α)^d` for α in
   `ood_scales` (training used α = 1); the trained models and their algorithms (η, (η_l, γ_l) kept
   from α = 1) are evaluated on the same prompts. A model that *is* GD degrades exactly as GD.

Measured (default run, seed 0): every claim passes, and out of distribution the two-layer model
does *not* degrade like GD++: at α = 1.25 its loss is 36.9 against GD++'s 7.0 and 2-step GD's
4.5, at α = 2 3.6·10⁶ against 3.2·10⁴ (`ood_max_rel_deep`): inside the training range it matches
GD++ (cosine 0.99), outside it its extra polynomial terms dominate. The one-layer model tracks GD
to 1% over the whole sweep.

Every loss is a mean over the same test prompts for all predictors (paired), so differences are
not sampling noise. At n = d the empirical covariance is often nearly singular and the losses of
multi-step predictors are heavy-tailed; standard errors are reported next to the means.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat

from icgd.algorithms import best_step_size, fit_gd_plus_plus, gd_plus_plus_steps, gradient_descent
from icgd.analysis import compare, gd_prediction_fn, lsa_prediction_fn
from icgd.constructions import lsa_from_gd_step
from icgd.core.config import Config
from icgd.core.registry import register
from icgd.core.results import Claim, make_claim
from icgd.core.rng import derive_seed, make_generator
from icgd.experiments.base import ExperimentConfig, Outcome, RunContext
from icgd.experiments.common import fit_lsa, regression_task_config
from icgd.models import LinearSelfAttention, LSAConfig
from icgd.tasks import LinearRegression, LinearRegressionConfig
from icgd.training import OptimizerConfig, ScheduleConfig, TrainConfig

# One layer: Adam lr 0.1, cosine decay over 2000 steps of 2048 fresh prompts, init N(0, 0.01²)
# (the one-step-gd recipe, shorter: d = n = 10 converges faster). Measured, seed 0: model cosine
# to line-searched GD 0.9999, loss within 0.03% of GD's; ≈ 15 s on 2 cores.
ONE_LAYER_TRAIN = TrainConfig(
    steps=2000,
    batch_size=2048,
    optimizer=OptimizerConfig(kind="adam", lr=0.1),
    schedule=ScheduleConfig(kind="cosine"),
    clip_norm=None,
    resample_every=1,
    eval_every=50,
    eval_batch_size=8192,
    checkpoint_every=500,
)

# Several layers: Adam lr 0.01, cosine decay over 2000 steps of 1024 fresh prompts, init
# N(0, 0.01²). Measured at d = n = 10, seed 0 (test losses: GD / GD++ / trained, same prompts):
# - depth 2 (this recipe, the default run): 1.246 / 0.830 / 0.742; model cosine to GD++ 0.991,
#   to GD 0.947. Layer 1 learns P ≈ I, Q ≈ [[−I, 0], [0, 0]] (a covariate step and a GD step at
#   once), layer 2 a pure GD step: the GD++ pattern of `lsa_from_gd_plus_plus_steps`.
# - depth 3, lr 0.01, init 1e-3, clip 0.01: 1.056 / 0.427 / 0.600, still falling at step 2000;
#   lr 0.003: 1.43 (worse than GD; the loss rose after step 300); lr 0.02, batch 2048: diverged
#   on a fraction of prompts. GD++'s fitted steps grow fast with depth (η ≈ 5, 2.7 at L = 2;
#   ≈ 22, 6, 8 at L = 3) because n = d makes Ŝ nearly singular, and the weights the model needs
#   grow with them: deeper models need longer, gentler training than a 3-minute default allows.
DEEP_TRAIN = TrainConfig(
    steps=2000,
    batch_size=1024,
    optimizer=OptimizerConfig(kind="adam", lr=0.01),
    schedule=ScheduleConfig(kind="cosine"),
    clip_norm=None,
    resample_every=1,
    eval_every=50,
    eval_batch_size=8192,
    checkpoint_every=500,
)

OOD_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)


class Tolerances(Config):
    """Tolerances of the claims, fixed before any run was looked at (reasons in `check`)."""

    cosine: NonNegativeFloat = 0.01  # model cosine ≥ 1 − this
    loss_rel: NonNegativeFloat = 0.05  # one layer: |loss − loss_GD| ≤ this·loss_GD
    interpolation_rel: NonNegativeFloat = 0.05  # max loss on the path ≤ (1 + this)·endpoints'
    deep_cosine: NonNegativeFloat = 0.05  # deep model cosine to GD++ ≥ 1 − this
    deep_loss_rel: NonNegativeFloat = 0.2  # |loss_deep − loss_GD++| ≤ this·loss_GD++
    ood_rel: NonNegativeFloat = 0.1  # max_α |loss_model(α)/loss_GD(α) − 1| ≤ this


class GDvsTransformerConfig(ExperimentConfig):
    """Settings of `gd-vs-transformer`; every one can be overridden with `--set key=value`.

    `input_distribution="uniform"` draws `x ~ U(−1, 1)^d` (the paper); "gaussian" `x ~ N(0, I)`.
    `depth` is the number of layers of the multi-layer model (≥ 2). `ood_scales` are the input
    ranges α of the out-of-distribution sweep (`x ~ U(−α, α)^d`, or `α·N(0, I)`).
    """

    d: Annotated[int, Field(gt=0, le=256)] = 10
    n: Annotated[int, Field(gt=0, le=10_000)] = 10
    noise_std: NonNegativeFloat = 0.0
    input_distribution: Literal["uniform", "gaussian"] = "uniform"
    depth: Annotated[int, Field(ge=2, le=16)] = 2
    init_std: NonNegativeFloat = 0.01
    train: TrainConfig = ONE_LAYER_TRAIN
    train_deep: TrainConfig = DEEP_TRAIN
    ood_scales: tuple[PositiveFloat, ...] = Field(default=OOD_SCALES, min_length=1)
    interpolation_points: Annotated[int, Field(ge=2, le=101)] = 11
    test_batch_size: Annotated[int, Field(ge=16)] = 65536
    fit_batch_size: Annotated[int, Field(ge=16)] = 65536
    comparison_batch_size: Annotated[int, Field(ge=16)] = 8192
    tolerances: Tolerances = Tolerances()

    def task_config(self, input_scale: float = 1.0) -> LinearRegressionConfig:
        return regression_task_config(
            d=self.d,
            n=self.n,
            weight_prior="identity",
            noise_std=self.noise_std,
            input_distribution=self.input_distribution,
            input_scale=input_scale,
        )


# ------------------------------------------------------------------------------------ helpers


def _mean_se(errors: torch.Tensor) -> tuple[float, float]:
    """Mean of the per-prompt squared errors (B,) and its standard error."""
    e = errors.double()
    return float(e.mean()), float(e.std() / math.sqrt(e.numel()))


def _squared_errors(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (prediction.double() - target.double()).square()


def _gd_step_aligned(model: LinearSelfAttention, eta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The one-step GD construction `(c P_GD, Q_GD / c)`, P and Q (1, 1, d+1, d+1) like the model's.

    `c` minimises `‖Q_GD / c − Q_trained‖_F`: `1/c = ⟨Q_GD, Q_trained⟩ / ‖Q_GD‖²` (any c ≠ 0 gives
    the same function; this one puts the construction next to the trained weights).
    """
    construction = lsa_from_gd_step(model.config.d, eta, dtype=model.P.dtype)
    P_gd, Q_gd = (m.detach().to(model.P.device) for m in construction.layer_matrices())
    P_t, Q_t = (m.detach() for m in model.layer_matrices())
    inverse_c = float((Q_gd * Q_t).sum() / Q_gd.square().sum())
    if not math.isfinite(inverse_c) or abs(inverse_c) < 1e-12:  # orthogonal: no alignment
        inverse_c = 1.0
    return P_gd / inverse_c, Q_gd * inverse_c


def _with_weights(model: LinearSelfAttention, P: torch.Tensor, Q: torch.Tensor):
    """A new one-head `full` model with the config of `model` and the given P, Q (L, 1, ·, ·)."""
    clone = LinearSelfAttention(model.config.model_copy(update={"init_std": 0.0}), dtype=P.dtype)
    clone = clone.to(P.device)
    with torch.no_grad():
        clone.P.copy_(P)
        clone.Q.copy_(Q)
    return clone


def _off_pattern_ratio(P: torch.Tensor, Q: torch.Tensor) -> list[float]:
    """Per layer, `‖off-pattern entries of (P_l, Q_l)‖_F / ‖(P_l, Q_l)‖_F` for the GD++ pattern.

    A GD++ layer (`lsa_from_gd_plus_plus_steps`, up to the rescaling symmetry) has only the
    diagonal of the x-blocks `P[:d, :d]`, `Q[:d, :d]` and the label entry `P[d, d]`; 0 means the
    layer has exactly that structure (with any diagonal values). P, Q: (L, d+1, d+1) → L floats.
    """
    d = P.shape[-1] - 1
    eye = torch.eye(d + 1, dtype=torch.bool, device=P.device)
    mask_P, mask_Q = eye.clone(), eye.clone()
    mask_Q[d, d] = False
    off = (P * ~mask_P).square().sum((-2, -1)) + (Q * ~mask_Q).square().sum((-2, -1))
    total = P.square().sum((-2, -1)) + Q.square().sum((-2, -1))
    return (off / total).sqrt().tolist()


def _comparison(prefix: str, fn_a, fn_b, batch) -> dict[str, float]:
    """`compare` (prediction difference, RMSE, model cosine, model difference) as named metrics."""
    return {f"{prefix}_{k}": v for k, v in compare(fn_a, fn_b, batch.X, batch.y, batch.x_q).items()}


def _gd_plus_plus_fn(etas: torch.Tensor, gammas: torch.Tensor):
    """`fn(X, y, x_q) = ` GD++ with the fitted per-step (η_l, γ_l), in the batch's dtype."""

    def fn(X, y, x_q):
        return gd_plus_plus_steps(X, y, x_q, etas.to(X.dtype), gammas.to(X.dtype))[-1]

    return fn


# --------------------------------------------------------------------------------- experiment


@register("gd-vs-transformer")
class GDvsTransformer:
    paper = "von Oswald et al. 2023"
    summary = "von Oswald et al. 2023: trained linear attention is GD (one layer) and GD++ (deeper)"
    Config = GDvsTransformerConfig

    def run(self, config: GDvsTransformerConfig, ctx: RunContext) -> Outcome:
        device, dtype = torch.device(config.device), config.torch_dtype
        seed = config.seed

        def task_at(scale: float) -> LinearRegression:
            return LinearRegression(config.task_config(scale), device=device, dtype=dtype)

        def draw(task: LinearRegression, size: int, *stream):
            return task.sample(size, make_generator(derive_seed(seed, *stream), device))

        task = task_at(1.0)
        held_out = draw(task, config.train.eval_batch_size, "eval")
        eval_batch = (held_out.prompt(), held_out.y_q)
        test = draw(task, config.test_batch_size, "test")
        fit = draw(task, config.fit_batch_size, "fit")  # the algorithms' hyper-parameters
        X64, y64, xq64, yq64 = (t.double() for t in (fit.X, fit.y, fit.x_q, fit.y_q))

        # --- 1. one layer vs one line-searched GD step ----------------------------------------
        one_config = LSAConfig(
            d=config.d, n_layers=1, parametrisation="full", init_std=config.init_std
        )
        one, outcome = fit_lsa(
            one_config,
            config.train,
            task,
            seed=seed,
            label="one_layer",
            eval_batch=eval_batch,
            ctx=ctx,
            sub="one_layer",
        )
        if outcome.status == "diverged":
            return Outcome(
                metrics={"diverged_at": outcome.steps_done},
                diverged=True,
                message=f"one-layer model: {outcome.message}",
            )
        eta = best_step_size(X64, y64, xq64, yq64, 1)

        def predictions(model: LinearSelfAttention, batch) -> torch.Tensor:
            with torch.no_grad():
                return model.predict(batch.prompt())

        def gd(batch, step: float, steps: int) -> torch.Tensor:
            X, y, x_q = (t.double() for t in (batch.X, batch.y, batch.x_q))
            return gradient_descent(X, y, step, steps).predict(x_q)[-1]

        err_one = _squared_errors(predictions(one, test), test.y_q)
        err_gd = _squared_errors(gd(test, eta, 1), test.y_q)
        compare_batch = draw(task, config.comparison_batch_size, "compare")
        P1, Q1 = (m.detach()[0, 0] for m in one.layer_matrices())
        d = config.d
        metrics: dict = {
            "eta_gd": eta,
            # the trained model's own step: −P[d,d]·tr(Q[:d,:d])/d (its GD block, SPEC §1.3)
            "eta_one_layer": float(-P1[d, d] * torch.trace(Q1[:d, :d]) / d),
            "loss_zero": task.population_loss_of_zero(),
        }
        metrics["loss_one_layer"], metrics["loss_one_layer_se"] = _mean_se(err_one)
        metrics["loss_gd"], metrics["loss_gd_se"] = _mean_se(err_gd)
        metrics["loss_one_layer_minus_gd_se"] = _mean_se(err_one - err_gd)[1]
        metrics |= _comparison(
            "one_layer_vs_gd", lsa_prediction_fn(one), gd_prediction_fn(eta, 1), compare_batch
        )

        # --- 2. interpolation between the trained weights and the construction -----------------
        P_gd, Q_gd = _gd_step_aligned(one, eta)
        P_t, Q_t = (m.detach() for m in (one.P, one.Q))
        ts = torch.linspace(0, 1, config.interpolation_points, dtype=torch.float64)
        path = []
        for t in ts.tolist():  # a loop over a handful of models, not over data
            model_t = _with_weights(one, (1 - t) * P_t + t * P_gd, (1 - t) * Q_t + t * Q_gd)
            path.append(_mean_se(_squared_errors(predictions(model_t, test), test.y_q))[0])
        metrics["interpolation_t"] = ts.tolist()
        metrics["interpolation_loss"] = path
        metrics["interpolation_max_ratio"] = max(path) / max(path[0], path[-1])

        # --- 3. a deep model vs GD and GD++ -----------------------------------------------------
        L = config.depth
        deep_config = one_config.model_copy(update={"n_layers": L})
        deep, outcome = fit_lsa(
            deep_config,
            config.train_deep,
            task,
            seed=seed,
            label="deep",
            eval_batch=eval_batch,
            ctx=ctx,
            sub="deep",
        )
        if outcome.status == "diverged":
            return Outcome(
                metrics=metrics | {"diverged_at": outcome.steps_done},
                diverged=True,
                message=f"{L}-layer model: {outcome.message}",
            )
        eta_steps = best_step_size(X64, y64, xq64, yq64, L)
        etas_pp, gammas_pp = fit_gd_plus_plus(X64, y64, xq64, yq64, L)
        gdpp = _gd_plus_plus_fn(etas_pp.to(device), gammas_pp.to(device))

        def gd_pp(batch) -> torch.Tensor:
            return gdpp(*(t.double() for t in (batch.X, batch.y, batch.x_q)))

        err_deep = _squared_errors(predictions(deep, test), test.y_q)
        err_steps = _squared_errors(gd(test, eta_steps, L), test.y_q)
        err_pp = _squared_errors(gd_pp(test), test.y_q)
        metrics |= {
            "eta_gd_steps": eta_steps,
            "gdpp_etas": etas_pp.tolist(),
            "gdpp_gammas": gammas_pp.tolist(),
        }
        metrics["loss_deep"], metrics["loss_deep_se"] = _mean_se(err_deep)
        metrics["loss_gd_steps"], metrics["loss_gd_steps_se"] = _mean_se(err_steps)
        metrics["loss_gdpp"], metrics["loss_gdpp_se"] = _mean_se(err_pp)
        metrics["loss_deep_minus_gdpp_se"] = _mean_se(err_deep - err_pp)[1]
        metrics["loss_deep_minus_gd_steps_se"] = _mean_se(err_deep - err_steps)[1]
        metrics |= _comparison(
            "deep_vs_gd", lsa_prediction_fn(deep), gd_prediction_fn(eta_steps, L), compare_batch
        )
        metrics |= _comparison("deep_vs_gdpp", lsa_prediction_fn(deep), gdpp, compare_batch)

        P_deep, Q_deep = (m.detach()[:, 0] for m in deep.layer_matrices())  # (L, d+1, d+1)
        metrics["deep_off_pattern_ratio"] = _off_pattern_ratio(P_deep, Q_deep)

        # --- 4. out of distribution: x ~ U(−α, α)^d --------------------------------------------
        ood = {k: [] for k in ("one_layer", "gd", "deep", "gd_steps", "gdpp")}
        for i, scale in enumerate(config.ood_scales):
            batch = draw(task_at(scale), config.test_batch_size, "ood", i)
            for name, pred in (
                ("one_layer", predictions(one, batch)),
                ("gd", gd(batch, eta, 1)),
                ("deep", predictions(deep, batch)),
                ("gd_steps", gd(batch, eta_steps, L)),
                ("gdpp", gd_pp(batch)),
            ):
                ood[name].append(_mean_se(_squared_errors(pred, batch.y_q))[0])
        metrics["ood_scales"] = list(config.ood_scales)
        metrics |= {f"ood_loss_{k}": v for k, v in ood.items()}
        metrics["ood_max_rel_one_layer"] = max(
            abs(a / b - 1) for a, b in zip(ood["one_layer"], ood["gd"], strict=True)
        )
        metrics["ood_max_rel_deep"] = max(
            abs(a / b - 1) for a, b in zip(ood["deep"], ood["gdpp"], strict=True)
        )

        arrays = {
            "one_layer_P": P1.double().cpu(),
            "one_layer_Q": Q1.double().cpu(),
            "deep_P": P_deep.double().cpu(),
            "deep_Q": Q_deep.double().cpu(),
        }
        return Outcome(metrics=metrics, arrays=arrays)

    def check(self, config: GDvsTransformerConfig, metrics: dict) -> list[Claim]:
        """The paper's claims, with tolerances chosen before any run:

        - one layer ≈ GD: model cosine ≥ 0.99. A one-layer LSA that is a GD step with Γ = cI has
          cosine exactly 1 whatever c; 0.99 allows Γ an angle of ~8° off the identity direction.
        - one layer's loss within 5% of the line-searched step's ("within a few %", as the issue
          and the paper state it); the optimum of one layer *is* that step for w ~ N(0, I) and
          isotropic inputs (Ahn et al. Thm 1), so a trained model should sit on it.
        - interpolation: the largest loss on the path at most 5% above the worse endpoint. Two
          models at the same minimum, in the same basin, give a flat path; a barrier means the
          trained model found a different solution.
        - deep beats GD: loss ≤ that of `depth` GD steps with the best constant step (no margin:
          GD is inside the model class, so any trained model that is no better has not learnt).
        - deep tracks GD++: model cosine ≥ 0.95 and loss within 20% of the fitted GD++'s. Looser
          than one layer (ours): GD++ has 2L scalars, the model 2L(d+1)² parameters, and the
          paper reports agreement, not identity; the loss claim is two-sided because "tracks"
          means neither much worse nor something else that is much better.
        - OOD: max over α of |loss_model(α) / loss_GD(α) − 1| ≤ 0.1 for the one-layer model:
          twice the in-distribution tolerance, because a step-size error δ shifts the loss by
          ~α²δ relative at α > 1, where the step is no longer at its optimum.
        """
        tol = config.tolerances
        L = config.depth
        return [
            make_claim(
                "one_layer_is_gd",
                "one layer vs line-searched GD: model cosine of ∂ŷ/∂x_q",
                metrics["one_layer_vs_gd_model_cosine"],
                1.0,
                tol.cosine,
                "at_least",
            ),
            make_claim(
                "one_layer_loss",
                "one layer's test loss vs the line-searched GD step's",
                metrics["loss_one_layer"],
                metrics["loss_gd"],
                tol.loss_rel,
                "rel",
            ),
            make_claim(
                "interpolation_keeps_loss",
                "max loss interpolating trained → constructed / worse endpoint",
                metrics["interpolation_max_ratio"],
                1.0,
                tol.interpolation_rel,
                "at_most",
            ),
            make_claim(
                "deep_beats_gd",
                f"{L}-layer model's loss / {L}-step GD's (line-searched)",
                metrics["loss_deep"] / metrics["loss_gd_steps"],
                1.0,
                0.0,
                "at_most",
            ),
            make_claim(
                "deep_tracks_gdpp_cosine",
                f"{L}-layer model vs {L}-step GD++: model cosine",
                metrics["deep_vs_gdpp_model_cosine"],
                1.0,
                tol.deep_cosine,
                "at_least",
            ),
            make_claim(
                "deep_tracks_gdpp_loss",
                f"{L}-layer model's loss vs {L}-step GD++'s",
                metrics["loss_deep"],
                metrics["loss_gdpp"],
                tol.deep_loss_rel,
                "rel",
            ),
            make_claim(
                "ood_degrades_like_gd",
                f"max over α ∈ [{min(config.ood_scales):g}, {max(config.ood_scales):g}] of "
                "|loss_1-layer(α)/loss_GD(α) − 1|",
                metrics["ood_max_rel_one_layer"],
                0.0,
                tol.ood_rel,
                "at_most",
            ),
        ]
