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

from pathlib import Path

import torch

from icgd.algorithms import best_step_size, fit_gd_plus_plus
from icgd.core.results import Claim, Result, make_claim
from icgd.experiments.api import MemoryEstimate, Outcome, RunContext
from icgd.experiments.common import fit_lsa
from icgd.experiments.gd_vs_transformer.config import GDvsTransformerConfig
from icgd.experiments.gd_vs_transformer.measurements import (
    deep_metrics,
    draw,
    gd_plus_plus_fn,
    interpolation_metrics,
    one_layer_metrics,
    ood_metrics,
    task_at,
)
from icgd.models import LSAConfig

# Tiny sizes for unit tests and the contract suite: seconds on one core.
SMOKE = (
    "d=3",
    "n=6",
    "depth=2",
    "train.steps=20",
    "train.batch_size=128",
    "train.eval_batch_size=128",
    "train.eval_every=10",
    "train.checkpoint_every=10",
    "train_deep.steps=20",
    "train_deep.batch_size=128",
    "train_deep.eval_batch_size=128",
    "train_deep.eval_every=10",
    "train_deep.checkpoint_every=10",
    "test_batch_size=512",
    "fit_batch_size=512",
    "comparison_batch_size=64",
    "ood_scales=[0.5,1.0,2.0]",
    "interpolation_points=3",
)

# `best_step_size` evaluates its whole default grid of step sizes at once: (G, B, ·) iterates.
_LINE_SEARCH_GRID = 121


class GDvsTransformer:
    name = "gd-vs-transformer"
    paper = "von Oswald et al. 2023"
    summary = "von Oswald et al. 2023: trained linear attention is GD (one layer) and GD++ (deeper)"
    Config = GDvsTransformerConfig
    presets = {"smoke": SMOKE}

    def run(self, config: GDvsTransformerConfig, ctx: RunContext) -> Outcome:
        device = torch.device(config.device)
        seed = config.seed
        task = task_at(config, 1.0)
        held_out = draw(config, task, config.train.eval_batch_size, "eval")
        eval_batch = (held_out.prompt(), held_out.y_q)
        test = draw(config, task, config.test_batch_size, "test")
        fit = draw(config, task, config.fit_batch_size, "fit")  # the algorithms' hyper-parameters
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
        compare_batch = draw(config, task, config.comparison_batch_size, "compare")
        metrics = one_layer_metrics(config, task, one, eta, test, compare_batch)

        # --- 2. interpolation between the trained weights and the construction -----------------
        metrics |= interpolation_metrics(config, one, eta, test)

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
        gdpp = gd_plus_plus_fn(etas_pp.to(device), gammas_pp.to(device))
        metrics |= {
            "eta_gd_steps": eta_steps,
            "gdpp_etas": etas_pp.tolist(),
            "gdpp_gammas": gammas_pp.tolist(),
        }
        metrics |= deep_metrics(config, deep, eta_steps, gdpp, test, compare_batch)

        # --- 4. out of distribution: x ~ U(−α, α)^d --------------------------------------------
        metrics |= ood_metrics(config, one, deep, eta, eta_steps, gdpp)

        P1, Q1 = (m.detach()[0, 0] for m in one.layer_matrices())
        P_deep, Q_deep = (m.detach()[:, 0] for m in deep.layer_matrices())  # (L, d+1, d+1)
        arrays = {
            "one_layer_P": P1.double().cpu(),
            "one_layer_Q": Q1.double().cpu(),
            "deep_P": P_deep.double().cpu(),
            "deep_Q": Q_deep.double().cpu(),
        }
        return Outcome(metrics=metrics, arrays=arrays)

    def claims(self, config: GDvsTransformerConfig, metrics: dict) -> list[Claim]:
        """The paper's claims, with tolerances chosen before any run (reasons in `Tolerances`)."""
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

    def figures(self, run_dir: Path, result: Result, out: Path) -> list[Path]:
        from icgd.experiments.gd_vs_transformer.figures import draw

        return draw(run_dir, result, out)

    def memory(self, config: GDvsTransformerConfig) -> MemoryEstimate:
        """Peak bytes, from the sizes (s = 4 bytes, 8 for float64; a prompt is (d+1)(n+1)·s):

        - training batches: each step's prompts with the activations kept for the backward pass,
          `batch_size · prompt · (4 layers + 4)`, for the one-layer and the deep model;
        - held-out prompts: `train.eval_batch_size · prompt · 4` (both models evaluate on them);
        - fit prompts: `fit_batch_size · (d+1)(n+1) · (s + 8)` (the batch and its float64 copy);
        - line search: `best_step_size` runs GD for its 121 grid steps at once in float64 on the
          fit prompts, iterates, residuals and gradients `121 · fit_batch_size · (2n + 4d) · 8`
          (the peak of the run at the default sizes: ≈ 3.8 GB);
        - test prompts: the test batch, its prompts under a forward pass and the float64 GD
          iterates, `test_batch_size · (3·prompt + (d+1)(n+1)·8 + 2(depth+1)·d·8)`, once for the
          test set and once for the out-of-distribution batch being evaluated;
        - comparison: `comparison_batch_size · prompt · 8` (query sensitivities by autograd).
        """
        s = 8 if config.dtype == "float64" else 4
        d, n, L = config.d, config.n, config.depth
        tokens = (d + 1) * (n + 1)
        prompt = tokens * s
        test = config.test_batch_size * (3 * prompt + tokens * 8 + 2 * (L + 1) * d * 8)
        return MemoryEstimate(
            parts={
                "training batches": config.train.batch_size * prompt * 8
                + config.train_deep.batch_size * prompt * (4 * L + 4),
                "held-out prompts": config.train.eval_batch_size * prompt * 4,
                "fit prompts": config.fit_batch_size * tokens * (s + 8),
                "line search": _LINE_SEARCH_GRID * config.fit_batch_size * (2 * n + 4 * d) * 8,
                "test and out-of-distribution prompts": 2 * test,
                "comparison": config.comparison_batch_size * prompt * 8,
            },
            fields=(
                "d",
                "n",
                "depth",
                "train.batch_size",
                "train_deep.batch_size",
                "train.eval_batch_size",
                "fit_batch_size",
                "test_batch_size",
                "comparison_batch_size",
            ),
        )
