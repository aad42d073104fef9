"""`which-algorithm`: which learning algorithm does a trained transformer run, by depth?

Akyürek, Schuurmans, Andreas, Ma, Zhou (2023), "What learning algorithm is in-context learning?
Investigations with linear models" (SPEC §1.4). Their finding: trained in-context learners move
from one-step-GD-like (one layer) to ridge-like to least-squares-like as depth grows, and for noisy
labels the deep models match ridge at the Bayes-optimal λ = σ²/τ².

Setting: d = 8, x ~ N(0, I), w ~ N(0, τ² I) with τ = 1, y = wᵀx + σε with σ/τ in `noise_levels`,
every context length k = 1 … n_max (default 2d). One model is trained per (depth, σ) — an LSA by
default, or another family (`model.kind`, "Model families" below); on the same held-out prompts, at
every k, the model is compared with

- one-step GD from 0 on the summed squared loss, `ŷ_k = η x_qᵀ Σ_{i≤k} y_i x_i`, one η for all k,
  line-searched exactly on separate tuning prompts (the loss is quadratic in η:
  `η* = Σ_{b,k} g_{bk} y_{q,b} / Σ_{b,k} g_{bk}²`, `g_{bk} = x_qᵀ Σ_{i≤k} y_i x_i`). One η, not
  one per k, because a model has one set of weights for every k; the summed (not averaged) loss
  because of the normalisation below;
- ridge `ŷ_k = x_qᵀ (X_kᵀX_k + λI)⁻¹ X_kᵀ y_k` for every λ of a log grid (λ = 2^j, j = −10 … 4,
  plus every Bayes λ not on it);
- the Bayes posterior mean, ridge with λ = σ²/τ² (σ = 0: the min-norm least-squares limit);
- least squares, min-norm when k < d; 3-nearest-neighbours.
All baselines are batched over prompts and over k (`icgd.algorithms.prefix`) and run in float64.

Metrics (`icgd.analysis.algorithm_distance`): SPD to every algorithm, per k and averaged over k;
ILWD to the linear ones — the model's implicit weights fitted by least squares on `ilwd_probes`
probe queries per prompt, the baselines' weights read exactly; the grid λ whose ridge predictions
are closest (mean SPD) to the model, next to the Bayes λ; test loss per k.

Choices (ours), and why:

- **Prefixes are zero-padded to n_max.** A k-point prompt is the first k points, n_max − k zero
  tokens, then the query. A zero token is inert in linear attention — it adds nothing to
  `Z M Zᵀ`, and a layer maps it to `0 + (1/n) P C Q 0 = 0` — so this is the LSA of SPEC §1.1 on
  the k points with its 1/n fixed at 1/n_max. Akyürek et al.'s causal models see every prefix with
  one set of weights too. The alternative, a k-token prompt with 1/k, makes a layer's step on
  the summed loss scale like 1/k: a fixed step that helps at k = 2d overshoots at k = 1 (η‖x‖² > 2)
  and explodes over several layers; training on it diverged at depth 4–8 (measured, Adam and SGD).
  With a fixed 1/n_max, L GD-like layers are L steps of one fixed size on the summed loss, whose
  implicit regularisation (≈ ridge, λ ~ 1/(η L)) is the same at every k, like the Bayes ridge.
- **Trained on all prefixes at once.** Every training prompt draws its own k uniformly from
  1 … n_max (from the training stream), so one batch mixes all lengths and the loss is the
  uniform average over k of Akyürek et al.'s all-prefix objective.
- **Parametrisation `relaxed` by default** (`P = [[B, 0], [0, 1]]`, `Q = −[[A, 0], [0, 0]]`:
  GD++-like moves of the covariates, a label row linear in the labels). The `full`
  parametrisation (`model.parametrisation=full`) also has paths cubic in the labels (e.g.
  `P_yy C_yy Q_yy y`), which feed back on themselves layer after layer. Measured at depth 8,
  σ = 0.25, seed 0: in
  float32 every recipe tried hit a non-finite loss within 9–450 steps (Adam lr 2e-3…1e-2, SGD
  lr 4e-3…1e-2), and Adam at 1e-3 stayed at the zero predictor; in float64 with weight decay
  0.01 it trained at σ = 0.25 but at σ = 0 its held-out loss went 2.6 → 3e12 after step 600, and
  with clipping at 0.1 two of 8192 held-out prompts (both with large ‖w*‖) got predictions
  beyond 1e3, so every mean (SPD, ILWD, loss) measured the blow-up, not the algorithm.
  A second search (20 recipes at depth 8, σ = 0: SGD/Adam/AdamW, lr 3e-4…3e-2, clipping
  0.01…0.5, init 1e-4…0.05, weight decay 0…3) found none that both trains and stays finite: each
  hit a non-finite loss between steps 15 and 616, or sat at the zero predictor (weight decay ≥ 2).
  The reason, measured on a checkpoint with held-out loss 3.9: on typical prompts it is fine, but
  with the labels scaled by 1.5 (resp. 2) 0.2% (2.8%) of prompts overflow — P_yy·Q_yy ≈ 0.3 in
  some layers multiplies a label by ≈ 1 + 0.3·C_yy/n, which grows with the labels and compounds
  over 8 layers; a prompt with a large ‖w*‖ then breaks training. `relaxed` has no label-to-label
  path and trained stably at every depth and σ with the recipe below.
- **Recipe** (every depth): SGD with momentum 0.9, lr 0.01 with a cosine decay over 1000 steps,
  per-matrix gradient clipping at 0.5, init N(0, 0.01²), 1024 fresh prompts per step. Adam moves
  all (d+1)² entries of every matrix by ~lr per step and built dense matrices whose depth-8
  products exploded within 20–100 steps (measured); SGD's steps follow the gradient. Longer is
  not better here: over a 3000-step cosine (lr stays high 3× longer) the 8-layer σ = 0 model
  became unstable after ~1000 steps (float32: non-finite loss at step ~1300; float64: held-out
  loss 2.6 → 3e61), as it pushes toward least squares, whose inverse of a near-singular
  X_kᵀX_k (k ≈ d) no fixed-depth iteration reproduces stably.

Model families (`model`, an `icgd.models.ModelSpec`; `icgd.models.registry`). "Depth" is:

- `lsa` (default): LSA layers, everything above; the numbers are those of the LSA-only version.
- `softmax`: stacked `full` softmax attention layers (`StackedSoftmaxAttention`: free OV matrices,
  so every layer can move every token; `model.softmax_kind=he` stacks label-writing layers) with
  the `context` mask. Prefixes are padded as for LSA, but a zero token is not inert under softmax
  (its score 0 gets weight exp(0)), so each prompt carries its context length k and the padding is
  hidden as a key in every layer: the padded prefix is exactly the k-point prompt (tested at
  1e-10). Query x_q for every k, as for LSA.
- `gpt`: GPT blocks (n_layer; width and heads from `model.size`, default "tiny": 64, 2 heads).
- `looped`: loops b of one GPT block with input injection; trained with Yang et al.'s loss over the
  last T = ⌈b/2⌉ loops (`model.grad_last`), evaluated after b loops.
  For `gpt` and `looped` (causal) one forward over the n_max + 1 points `x_1 … x_n, x_q` predicts
  after every prefix at once, at the next point: after k points at x_{k+1} (x_q for k = n_max),
  target y_{k+1}. The baselines, the GD line search, every SPD and test loss use the same per-k
  query and target (convention (b) of `icgd.algorithms.prefix`); ILWD's probes are appended as
  the x token after k points (`CausalPrefixes.predict_probes`: B'·m·n sequences in one batch).
  The training loss is the mean over positions k = 1 … n_max (no zero-context position).

Each family trains with its own recipe (`FAMILY_TRAIN`, in `config.py`); any `train`
field set explicitly wins.
softmax: Adam lr 3e-3, cosine over 1000 steps, batch 1024, no clipping; gpt and looped: Garg-style
Adam lr 3e-4, cosine over 600 steps, batch 256 (`looped-transformer`'s CPU recipe). No tuning was
done; what one short run each measured (depths 1 and 4, σ = 0.5, seed 0, 2 shared CPU cores):
softmax, 129 s for both models (machine load ≈ 6 on 2 cores): test loss (mean over k) 6.69 at
L = 1 and 5.03 at L = 4 (zero predictor 8.25, one-step GD 4.91, Bayes ridge 2.53); both closest
to one-step GD (SPD 1.99 and 0.77 vs 4.20 and 2.53 to Bayes ridge), closest ridge λ 16 and 8, so
claims (c), (d: GD) and (e) fail. gpt: the 1-block model sat on the plateau for all 600 steps
(held-out loss 8.42 ≈ the zero predictor's); the 4-block model, still on it at step 400 of 600
(batch loss 8.26), was stopped after 6 min under that load (cost ∝ blocks × 2(n_max+1) tokens).
looped: not measured separately; with b = 1 it is the 1-block GPT (same init, loss and numbers,
seen in the tiny test runs). Expect the non-LSA claims to fail on a CPU budget: these families
need a GPU-sized budget (and likely a curriculum) to leave the plateau at d = 8.

Presets choose the sweep only: `quick` (depths 1 and 8, σ ∈ {0, 0.5}) and `full` (the
default; depths 1, 2, 4, 8, σ ∈ {0, 0.25, 0.5}); `depths` / `noise_levels` override them. Wall
time on the 2-core CPU machine with OMP_NUM_THREADS=1 while other jobs held the other core:
quick 90 s, full 250 s (seed 0). With torch's default 2 threads and the other core busy, the tiny
per-step matrix products thrash (the same quick run took 14 min): use 1 thread.

A model whose training diverges keeps its last finite weights; its metrics are NaN (so the claims
that read it fail) and the run's message names it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from icgd.analysis import ilwd, implicit_weights, spd
from icgd.core.errors import InputError
from icgd.core.results import Claim, Result
from icgd.core.rng import derive_seed, make_generator
from icgd.experiments.api import MemoryEstimate, Outcome, RunContext
from icgd.experiments.common import fit_model
from icgd.experiments.which_algorithm.claims import paper_claims
from icgd.experiments.which_algorithm.config import (
    ALGORITHMS,
    LINEAR_ALGORITHMS,
    SMOKE,
    WhichAlgorithmConfig,
    regression_task,
    tag,
)
from icgd.experiments.which_algorithm.known import known_answer
from icgd.experiments.which_algorithm.memory import memory_estimate
from icgd.experiments.which_algorithm.prefixes import (
    baseline_predictions,
    baseline_weights,
    bayes_lambda,
    line_search_gd,
    prefix_protocol,
)
from icgd.models import build_model
from icgd.tasks import LinearRegression

# ------------------------------------------------------------------------------------ experiment


class WhichAlgorithm:
    name = "which-algorithm"
    paper = "Akyürek et al. 2023"
    summary = "Akyürek et al. 2023: depth moves trained LSA from one-step GD toward ridge/OLS"
    Config = WhichAlgorithmConfig
    presets = {"smoke": SMOKE}
    known_answer = staticmethod(known_answer)  # for icgd identify (`known.py`)

    def task(self, config: WhichAlgorithmConfig, sub: str = "") -> LinearRegression:
        """The task of the model in `models/L{depth}-{σ tag}`: isotropic regression at that σ."""
        noises = {
            f"models/L{depth}-{tag(noise)}": noise
            for depth in config.resolved_depths
            for noise in config.resolved_noise
        }
        if sub not in noises:
            raise InputError("model", f"which-algorithm's models are {', '.join(noises)}")
        return regression_task(config, noises[sub])

    def run(self, config: WhichAlgorithmConfig, ctx: RunContext) -> Outcome:
        device = torch.device(config.device)
        d, n = config.d, config.context
        grid = torch.tensor(config.grid, dtype=torch.float64, device=device)

        def draw(task: LinearRegression, size: int, stream: str):
            return task.sample(size, make_generator(derive_seed(config.seed, stream), device))

        metrics: dict[str, Any] = {
            "n_max": n,
            "depths": list(config.resolved_depths),
            "noise_levels": list(config.resolved_noise),
            "lambda_grid": list(config.grid),
        }
        arrays: dict[str, list] = {}
        diverged: list[str] = []
        for noise in config.resolved_noise:
            task = regression_task(config, noise)
            # The same streams at every σ: inputs, w* and ε are shared (the sampler draws ε even
            # at σ = 0), so the noise levels are compared on common random numbers.
            test, tune, probe_set = (
                draw(task, config.test_batch_size, "test"),
                draw(task, config.tune_batch_size, "tune"),
                draw(task, config.ilwd_batch_size, "ilwd"),
            )
            X, y, x_q, y_q = (t.double() for t in (test.X, test.y, test.x_q, test.y_q))
            # The query and target of every prefix, as the family sees it (`prefixes`): x_q and
            # y_q (B, 1) for every k, or the next point x_{k+1}, y_{k+1} (B, n) for causal ones.
            view = prefix_protocol(config.model, 1)
            target = view.targets(y, y_q)  # (B, 1) or (B, n)
            tX, ty, tx_q, ty_q = (t.double() for t in (tune.X, tune.y, tune.x_q, tune.y_q))
            eta = line_search_gd(tX, ty, view.queries(tX, tx_q), view.targets(ty, ty_q))
            base, ridge = baseline_predictions(
                X, y, view.queries(X, x_q), noise, eta, grid, config.knn_neighbors
            )
            base_loss = {a: (p - target).square().mean(0) for a, p in base.items()}  # (n,)
            ridge_err = (ridge - target[None]).square()  # (G, B, n)
            scalars = self._ridge_sanity(config, noise, ridge_err, eta, base_loss)

            # ILWD: the model's implicit weights from m probe queries per prompt (B', n, d).
            Xi, yi = probe_set.X.double(), probe_set.y.double()
            probes = torch.randn(
                config.ilwd_batch_size, config.probes, d,
                generator=make_generator(derive_seed(config.seed, "probes"), device),
                dtype=torch.float64, device=device,
            )  # fmt: skip
            w_base, w_ridge = baseline_weights(Xi, yi, noise, eta, grid)

            per_noise: dict[str, list] = {}
            for depth in config.resolved_depths:
                label = f"L{depth}-{tag(noise)}"
                model, outcome = self._fit(config, task, depth, label, ctx)
                if outcome.status != "completed":
                    diverged.append(label)
                result = self._compare(
                    config, model, depth, (X, y, x_q, target), base, ridge, (Xi, yi, probes),
                    w_base, w_ridge, grid,
                )  # fmt: skip
                if outcome.status != "completed":  # NaN: the claims that read it fail
                    result = {k: torch.full_like(v, math.nan) for k, v in result.items()}
                for key, value in result.items():
                    per_noise.setdefault(key, []).append(value)
            self._collect(metrics, arrays, noise, per_noise, scalars, base_loss, ridge_err)

        stacked = {k: torch.stack(v).cpu() for k, v in arrays.items()}
        stacked |= {
            "depths": torch.tensor(config.resolved_depths, dtype=torch.float64),
            "noise_levels": torch.tensor(config.resolved_noise, dtype=torch.float64),
            "lambda_grid": grid.cpu(),
        }
        metrics["models_diverged"] = len(diverged)
        message = f"training diverged: {', '.join(diverged)} (metrics NaN)" if diverged else ""
        return Outcome(metrics=metrics, arrays=stacked, message=message)

    # --------------------------------------------------------------------------------- pieces

    def _fit(self, config: WhichAlgorithmConfig, task: LinearRegression, depth: int, label, ctx):
        """Build `config.model`'s family at `depth` (init stream `init/<label>`) and train it on
        every prefix at once (`prefix_protocol`) in `models/<label>/` (resumable)."""
        prefixes = prefix_protocol(config.model, depth)
        sample = prefixes.sampler(task)
        held_out = sample(
            config.train.eval_batch_size,
            make_generator(derive_seed(config.seed, "eval"), task.device),
        )
        init = make_generator(derive_seed(config.seed, "init", label), "cpu")
        model = build_model(
            config.model,
            d=config.d,
            n_max=config.context,
            depth=depth,
            generator=init,
            dtype=task.dtype,
            device=task.device,
        )
        outcome = fit_model(
            model,
            sample,
            prefixes.loss,
            config.train,
            seed=config.seed,
            label=label,
            eval_batch=held_out,
            ctx=ctx,
            sub=f"models/{label}",
            device=task.device,
        )
        return model, outcome

    def _compare(self, config, model, depth, test, base, ridge, probe_data, w_base, w_ridge, grid):
        """SPD/ILWD of one model to every baseline, per k: a dict of float64 tensors.

        `test` = (X, y, x_q, target): the prompts and each prefix's target (B, 1) or (B, n);
        the model is asked at the same query as the baselines (`prefix_protocol`)."""
        X, y, x_q, target = test
        prefixes = prefix_protocol(config.model, depth)
        mdt = next(model.parameters()).dtype  # the model runs in its own dtype
        pred = prefixes.predict(model, X.to(mdt), y.to(mdt), x_q.to(mdt), config.eval_chunk)
        out = {"loss_k": (pred - target).square().mean(0)}  # (n,)
        for a in ALGORITHMS:
            out[f"spd_k_{a}"] = spd(pred, base[a])  # (n,)
        spd_ridge = spd(pred.unsqueeze(0), ridge, dim=1)  # (G, n)
        out["spd_ridge"] = spd_ridge.mean(-1)  # (G,)

        # ILWD: probes (B', m, d) as queries of every prefix → predictions (B', m, n).
        Xi, yi, probes = probe_data
        Bp, m, d = probes.shape
        n = Xi.shape[1]
        p = prefixes.predict_probes(
            model, Xi.to(mdt), yi.to(mdt), probes.to(mdt), config.eval_chunk
        )  # (B', m, n)
        w_model = implicit_weights(probes.unsqueeze(1).expand(Bp, n, m, d), p.transpose(1, 2))
        for a in LINEAR_ALGORITHMS:
            out[f"ilwd_k_{a}"] = ilwd(w_model, w_base[a])  # (n,)
        out["ilwd_ridge"] = ilwd(w_model.unsqueeze(1), w_ridge).mean(-1)  # (G,)
        return out

    def _ridge_sanity(self, config, noise: float, ridge_err: Tensor, eta: float, base_loss):
        """Scalars of one σ (lists over σ in the metrics): ridge's test error over the grid
        (claim a), the GD step, the baselines' test losses (mean over k)."""
        grid = config.grid
        per_prompt = ridge_err.mean(-1)  # (G, B): each prompt's error averaged over k
        loss = per_prompt.mean(-1)  # (G,)
        best = int(torch.argmin(loss))
        out: dict[str, float] = {
            "bayes_lambda": bayes_lambda(noise),
            "gd_step": eta,
            "ridge_best_lambda": grid[best],
        }
        if noise > 0:
            t = tag(noise)
            at = grid.index(bayes_lambda(noise))  # on the grid by construction
            out[f"ridge_best_offset_{t}"] = best - at  # grid steps, signed
            # Paired margin of the Bayes λ over its better neighbour on the same prompts, with
            # its standard error: says whether the sample resolves claim (a).
            neighbours = [i for i in (at - 1, at + 1) if 0 <= i < len(grid)]
            if neighbours:
                diffs = torch.stack([per_prompt[i] - per_prompt[at] for i in neighbours])  # (≤2, B)
                j = int(torch.argmin(diffs.mean(-1)))
                out[f"ridge_bayes_margin_{t}"] = float(diffs[j].mean())
                out[f"ridge_bayes_margin_se_{t}"] = float(diffs[j].std() / diffs.shape[-1] ** 0.5)
        return out | {f"loss_{a}": float(base_loss[a].mean()) for a in ALGORITHMS}

    def _collect(self, metrics, arrays, noise, per_noise, scalars, base_loss, ridge_err):
        """File one σ's results: per-depth lists in `metrics`, per-k tensors in `arrays`."""
        t = tag(noise)
        grid = torch.tensor(metrics["lambda_grid"], dtype=torch.float64)
        stack = {k: torch.stack(v).cpu() for k, v in per_noise.items()}  # (D, …)
        metrics[f"loss_model_{t}"] = stack["loss_k"].mean(-1).tolist()
        for a in ALGORITHMS:
            metrics[f"spd_{a}_{t}"] = stack[f"spd_k_{a}"].mean(-1).tolist()
        for a in LINEAR_ALGORITHMS:
            metrics[f"ilwd_{a}_{t}"] = stack[f"ilwd_k_{a}"].mean(-1).tolist()
        for name, key in (("", "spd_ridge"), ("_ilwd", "ilwd_ridge")):
            values = stack[key]  # (D, G)
            finite = torch.isfinite(values).all(-1)
            closest = grid[torch.nan_to_num(values, nan=math.inf).argmin(-1)]
            metrics[f"closest_ridge_lambda{name}_{t}"] = torch.where(
                finite, closest, math.nan
            ).tolist()
        spd_gd, spd_bayes = stack["spd_k_gd"].mean(-1), stack["spd_k_bayes"].mean(-1)
        for key, value in (
            ("spd_gd_monotone", bool((spd_gd.diff() >= 0).all())),
            ("spd_bayes_monotone", bool((spd_bayes.diff() <= 0).all())),
        ):
            metrics.setdefault(key, []).append(float(value))
        for key, value in scalars.items():
            if key.endswith(f"_{t}"):  # σ > 0 only: a scalar of its own
                metrics[key] = value
            else:  # every σ: a list over the noise levels
                metrics.setdefault(key, []).append(value)

        for key in ("loss_k", *(f"spd_k_{a}" for a in ALGORITHMS), "spd_ridge", "ilwd_ridge"):
            arrays.setdefault("loss_model_k" if key == "loss_k" else key, []).append(stack[key])
        for a in LINEAR_ALGORITHMS:
            arrays.setdefault(f"ilwd_k_{a}", []).append(stack[f"ilwd_k_{a}"])
        for a in ALGORITHMS:
            arrays.setdefault(f"loss_k_{a}", []).append(base_loss[a].cpu())
        arrays.setdefault("loss_ridge", []).append(ridge_err.mean((1, 2)).cpu())  # (G,)

    # --------------------------------------------------------------------------------- claims

    def claims(self, config: WhichAlgorithmConfig, metrics: dict) -> list[Claim]:
        """Akyürek et al.'s claims (a)–(e) for every σ (`claims.py` states each and its
        tolerance)."""
        return paper_claims(config, metrics)

    def figures(self, run_dir: Path, result: Result, out: Path) -> list[Path]:
        from icgd.experiments.which_algorithm.figures import draw

        return draw(run_dir, result, out)

    def memory(self, config: WhichAlgorithmConfig) -> MemoryEstimate:
        """Peak bytes of the run: the held-out prompts, the float64 baselines (ridge on the λ
        grid for every prefix), one training step and the evaluation of the largest model
        (`memory.memory_estimate` states the formula)."""
        return memory_estimate(config)
