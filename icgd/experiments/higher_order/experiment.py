"""`higher-order`: a trained GPT's layers track iterative Newton, not GD (Fu et al. 2024, CPU size).

Fu, Chen, Jia, Sharan (2024), "Transformers learn higher-order optimization methods for
in-context learning: a study with linear models" (SPEC §2.2 and §6). A GPT-style causal model
(`icgd.models.GPT`) is trained from scratch on noiseless isotropic linear regression with Garg et
al.'s loss (the mean squared error over all prefixes) and, optionally, Garg's curriculum. Then:

1. **Error per prefix.** On `test_batch_size` held-out prompts, the normalised error
   `err(k) = E[(ŷ_k − y_k)²]/d` of the model and of least squares at every number k of
   in-context points; the probes below look at the last position (k = n_points − 1).
2. **Layer probes** (`icgd.analysis.identify.probe_layers`): the query token's representation
   after each layer ℓ = 0 … L is read out by a ridge probe of y_q (fitted on `probe_prompts`
   prompts, scored on as many held out), and the read-out's errors are compared by SimE (the
   cosine between error vectors over prompts) with those of k = 0 … K iterations of iterative
   Newton (`newton_steps`; α = 1/‖Ŝ‖₂² per prompt) and of GD (`gd_steps`; step `eta`, shared
   by the prompts and small enough that none diverges). Each
   layer is matched to the fewest iterations that reach its best SimE (`matched_steps`; the
   library's plain argmax is stored too). Iterates are rescaled like the probe before SimE
   (the library's calibration; Fu et al. compare raw predictions of a trained read-out).
3. **Identification** of the final output (`identify`): every candidate of
   `identify_algorithms` fitted to the model's predictions and ranked by held-out SPD;
   metrics `identify.<algorithm>.<score>` as in the `identify` experiment.

Claims (`claims`; Fu et al.'s Figure 3 and abstract): over the layers whose probe reads y_q
with R² ≥ 0.5, the matched Newton iterations grow linearly with depth (slope ≥ 0.5 iteration
a layer, linear-fit R² ≥ 0.8), while the GD steps needed per Newton iteration keep growing
(slope of log₂((k_GD+1)/(k_N+1)) ≥ 0.25 a layer); and, first, the model has learned the task
(query error within 0.1 of least squares').

Presets. `preset="cpu"` (default): d = 3, 7 points (6 context points before the probed query:
d/n = 1/2 as in the paper), a GPT of width 64, 6 layers, 4 heads, Adam lr 1e-3 with a cosine
decay, batch 128, 3000 updates, a curriculum from 2 to 3 dimensions and 4 to 7 points; Newton
k ≤ 20, GD k ≤ 1024 at η = 1/(2(1 + √(d/n))²) (`HigherOrderConfig.eta`). Why so small: at d = 4
with 15 context points this budget left the model far from least squares (docs).
`preset="paper"`: Fu et al.'s setting (Garg et al.'s trained model: d = 20, 41 points, width
256, 12 layers, 8 heads, Adam lr 1e-4, batch 64, 500k steps, Garg's curriculum; Newton k ≤ 23,
GD k ≤ 4096): GPU-sized, not run by the tests.
Measured: see docs/higher-order.md.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from icgd.algorithms import prefix_ols
from icgd.analysis.identify import identify, probe_layers
from icgd.core.results import Claim, Result, make_claim
from icgd.core.rng import derive_seed, make_generator
from icgd.experiments.api import MemoryEstimate, Outcome, RunContext
from icgd.experiments.common import fit_model
from icgd.experiments.common.causal import (
    block_activation_bytes,
    curriculum_sampler,
    gpt_loss,
    gpt_parameter_count,
    n_parameters,
    normalised_error,
    prefix_baseline,
    prefix_baseline_bytes,
)
from icgd.experiments.higher_order.analysis import layer_fits, matched_steps
from icgd.experiments.higher_order.config import HigherOrderConfig
from icgd.models import GPT
from icgd.tasks import FunctionClass
from icgd.training import read_checkpoint_metadata

# Tiny sizes for unit tests and the contract suite: seconds on one core.
SMOKE = (
    "d=2",
    "n_points=6",
    "n_embd=16",
    "n_layer=3",
    "n_head=2",
    "train.steps=4",
    "train.batch_size=8",
    "train.eval_batch_size=16",
    "train.eval_every=2",
    "train.checkpoint_every=2",
    "curriculum={dims: {start: 1, end: 2, interval: 2}, points: {start: 3, end: 6, interval: 2}}",
    "newton_steps=4",
    "gd_steps=16",
    "probe_prompts=128",
    "identify_prompts=128",
    "identify_bootstrap=2",
    "identify_algorithms=[gd, iterative-newton, ols]",
    "test_batch_size=32",
)


def _plain(value):
    """A metric as result.json holds it: NaN and ±inf (e.g. a fit over too few layers) become
    None, inside lists too, so the returned metrics equal the saved ones."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _number(metrics: dict, key: str) -> float:
    """A scalar metric, NaN when missing or None."""
    value = metrics.get(key)
    return math.nan if value is None else float(value)


# Metric prefix → the algorithm's name in `icgd.analysis.identify` (and its K in the config).
ALGORITHMS = {"newton": "iterative-newton", "gd": "gd"}


class HigherOrder:
    name = "higher-order"
    paper = "Fu, Chen, Jia, Sharan 2024"
    summary = "Fu et al. 2024: a GPT's layers track iterative Newton, GD needs ever more steps"
    Config = HigherOrderConfig
    presets = {"smoke": SMOKE}

    def task(self, config: HigherOrderConfig, sub: str = "") -> FunctionClass:
        """The task of the run's one model (trained in the run folder itself)."""
        return config.task(torch.device(config.device), config.torch_dtype)

    def run(self, config: HigherOrderConfig, ctx: RunContext) -> Outcome:
        device, dtype, seed = torch.device(config.device), config.torch_dtype, config.seed
        task = self.task(config)
        model = GPT(
            config.gpt_config(),
            generator=make_generator(derive_seed(seed, "init"), "cpu"),
            dtype=dtype,
        ).to(device)
        trained = self._train(model, task, config, ctx)
        if trained.status == "diverged":
            return Outcome(
                metrics={"diverged_at": trained.steps_done}, diverged=True, message=trained.message
            )
        metrics: dict = {"params": n_parameters(model), "gd.eta": config.eta}
        metrics |= self._errors(model, task, config)
        # One thread: the probes and fits are many small batched linear-algebra calls, which a
        # second thread slows down badly on a busy machine (the `identify` experiment's note).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            probe_metrics, arrays = self._probes(model, task, config)
            found = identify(
                model,
                task,
                algorithms=list(config.identify_algorithms),
                n_prompts=config.identify_prompts,
                seed=seed,
                n_bootstrap=config.identify_bootstrap,
            )
        finally:
            torch.set_num_threads(threads)
        metrics |= probe_metrics
        metrics |= {f"identify.{k}": v for k, v in found.metrics().items()}
        metrics["identify.best_r2"] = found.best.r2
        arrays |= {f"identify.{k}": v.detach().cpu() for k, v in found.arrays().items()}
        message = f"identify: best {found.best.name}"
        return Outcome(
            metrics={k: _plain(v) for k, v in metrics.items()}, arrays=arrays, message=message
        )

    @staticmethod
    def _train(model: GPT, task: FunctionClass, config: HigherOrderConfig, ctx: RunContext):
        """Train into the run folder itself (so `icgd identify RUN` finds the model), resuming
        the curriculum at the checkpoint's step; eval records hold the normalised error."""
        seed, d = config.seed, config.d
        held = task.sample(
            config.train.eval_batch_size, make_generator(derive_seed(seed, "eval"), task.device)
        )
        resume = ctx.resume and (ctx.run_dir / "checkpoint.safetensors").exists()
        start = int(read_checkpoint_metadata(ctx.run_dir).get("step", 0)) if resume else 0

        def on_eval(step: int, m: torch.nn.Module) -> dict[str, float]:
            with torch.no_grad():
                return {"normalised_error": float((m(held.X, held.y) - held.y).square().mean()) / d}

        return fit_model(
            model,
            curriculum_sampler(task, start, config.curriculum),
            gpt_loss,
            config.train,
            seed=seed,
            label=None,
            eval_batch=(held.X, held.y, None),
            ctx=ctx,
            device=task.device,
            on_eval=on_eval,
        )

    @staticmethod
    def _errors(model: GPT, task: FunctionClass, config: HigherOrderConfig) -> dict:
        """err(k) of the model and of least squares for k = 0 … n−1 in-context points, and
        both at the probed query (the last position)."""
        stream = make_generator(derive_seed(config.seed, "test"), task.device)
        batch = task.sample(config.test_batch_size, stream)
        with torch.no_grad():
            model.eval()
            pred = model(batch.X, batch.y)  # (B, n)
            model.train()
        X, y = batch.X.double(), batch.y.double()
        least = prefix_baseline(prefix_ols, X, y, X)  # (B, n)
        out = {}
        for name, p in (("model", pred), ("least_squares", least)):
            err = normalised_error(p, y, config.d)  # (n,)
            out[f"{name}.err"] = err.tolist()
            out[f"{name}.err_query"] = float(err[-1])
        return out

    @staticmethod
    def _probes(model: GPT, task, config: HigherOrderConfig) -> tuple[dict, dict[str, Tensor]]:
        """Probe every layer against Newton (k ≤ newton_steps) and GD (k ≤ gd_steps): two calls
        with the same prompts (same seed), since one K for both would store hundreds of
        converged d × d Newton inverses per prompt."""
        metrics: dict = {}
        arrays: dict[str, Tensor] = {}
        steps = {"newton": config.newton_steps, "gd": config.gd_steps}
        for key, name in ALGORITHMS.items():
            probes = probe_layers(
                model,
                task,
                algorithms=(name,),
                max_steps=steps[key],
                parameters={"gd": {"eta": config.eta}} if key == "gd" else None,
                n_prompts=config.probe_prompts,
                seed=config.seed,
            )
            sime = probes.sime[name]  # (L+1, K+1)
            metrics["probe_r2"] = probes.target_r2.tolist()
            metrics[f"{key}.best_steps"] = [float(k) for k in probes.best_steps[name]]
            metrics[f"{key}.matched_steps"] = [
                float(k) for k in matched_steps(sime, config.tie_tol)
            ]
            metrics[f"{key}.decoded_steps"] = [float(k) for k in probes.decoded_steps[name]]
            metrics[f"{key}.sime_best"] = torch.nan_to_num(sime, nan=-1.0).amax(1).tolist()
            output = probes.output_sime[name][None]  # (1, K+1)
            metrics[f"{key}.output_steps"] = float(matched_steps(output, config.tie_tol)[0])
            metrics[f"{key}.output_sime"] = float(torch.nan_to_num(output, nan=-1.0).max())
            arrays |= {f"probe.{k}": v.detach().cpu() for k, v in probes.arrays().items()}
        metrics |= layer_fits(
            metrics["probe_r2"],
            metrics["newton.matched_steps"],
            metrics["gd.matched_steps"],
            config.tolerances.probe_r2,
            gd_cap=config.gd_steps,
        )
        return metrics, arrays

    def claims(self, config: HigherOrderConfig, metrics: dict) -> list[Claim]:
        """Fu et al.'s claims at the configured size; thresholds fixed from the paper's
        statements before any default run (`Tolerances`). The fits are recomputed from the
        stored per-layer maps, over the layers ℓ ≥ 1 whose y_q probe has held-out R² ≥ 0.5
        (at least half of y_q read out: about what one GD step explains; a read-out that
        explains less is not a predictor whose iteration count means much):

        - `model_near_least_squares`: the model learned the task: normalised query error −
          least squares' ≤ 0.1 (a tenth of the zero predictor's; as `function-classes`). Fu et
          al. probe Garg et al.'s model, which is at ≈ 0 there.
        - `newton_steps_grow`: slope of the matched Newton iterations against ℓ ≥ 0.5 ("each
          middle layer roughly computing 3 iterations" at 12 layers, d = 20: any real growth;
          0.5 is one more iteration every two layers, which a flat map with one step of
          rounding cannot reach).
        - `newton_steps_linear`: R² of that line ≥ 0.8 ("closely match different iterations of
          Newton's method linearly").
        - `gd_steps_outgrow_newton`: slope of log₂((k_GD + 1)/(k_N + 1)) against ℓ ≥ 0.25 a
          layer ("exponentially more GD steps are needed to match an additional layer": the
          GD/Newton ratio at least doubles every four layers; a GD map that only grows linearly
          like Newton's keeps the ratio flat).

        Fewer than three fitted layers, or a NaN, fails; all are one-sided.
        """
        tol = config.tolerances
        fits = layer_fits(
            metrics.get("probe_r2"),
            metrics.get("newton.matched_steps"),
            metrics.get("gd.matched_steps"),
            tol.probe_r2,
        )
        gap = _number(metrics, "model.err_query") - _number(metrics, "least_squares.err_query")
        layers = f"over layers with probe R² ≥ {tol.probe_r2:g}"
        return [
            make_claim(
                "model_near_least_squares",
                "normalised error at the probed query: model − least squares",
                gap,
                0.0,
                tol.least_squares_gap,
                "at_most",
            ),
            make_claim(
                "newton_steps_grow",
                f"slope of matched Newton iterations against layer index ({layers})",
                fits["newton.slope"],
                tol.newton_slope,
                0.0,
                "at_least",
            ),
            make_claim(
                "newton_steps_linear",
                f"R² of the linear fit of matched Newton iterations against layer ({layers})",
                fits["newton.fit_r2"],
                tol.newton_fit_r2,
                0.0,
                "at_least",
            ),
            make_claim(
                "gd_steps_outgrow_newton",
                f"slope of log2((GD steps + 1)/(Newton iterations + 1)) per layer ({layers})",
                fits["ratio.log2_slope"],
                tol.ratio_slope,
                0.0,
                "at_least",
            ),
        ]

    def figures(self, run_dir: Path, result: Result, out: Path) -> list[Path]:
        from icgd.experiments.higher_order.figures import draw

        return draw(run_dir, result, out)

    def memory(self, config: HigherOrderConfig) -> MemoryEstimate:
        """Peak bytes, `s` bytes a number (4, or 8 in float64), T = 2·n_points tokens, width C,
        heads h, L layers, P = probe_prompts, Q = identify_prompts:

        - model and optimiser: 4 × parameters × s;
        - training batch: L + 1 blocks' activations kept for backward
          (`block_activation_bytes`) plus the prompts;
        - test batch: one block's forward on `test_batch_size` prompts plus the float64 prefix
          least squares (`prefix_baseline_bytes`);
        - probes: the residual streams of every layer cached on a chunk of c = min(P, 4096)
          prompts (the model view's chunk), (L+1) × c × T × C × s, and one block's forward on
          them; in float64, every layer's query token
          on 2P prompts, the iterates of both algorithms on 2P prompts (GD's weights
          (K_GD + 1) × d, Newton's inverses (K_N + 1) × d²) and the probe targets;
        - identify (float64): as the `identify` experiment, 2Q prompts and the candidates'
          grids (≈ 64 values a prompt).
        """
        size = 8 if config.dtype == "float64" else 4
        C, h, L = config.n_embd, config.n_head, config.n_layer
        n, d, T = config.n_points, config.d, 2 * config.n_points
        P, Q, test = config.probe_prompts, config.identify_prompts, config.test_batch_size
        chunk = min(P, 4096)  # prompts a model call (`probe_layers`' default chunk)
        batch = config.train.batch_size
        prompt = (2 * n * (d + 1) + d) * size
        k_gd, k_n = config.gd_steps + 1, config.newton_steps + 1
        return MemoryEstimate(
            parts={
                "model and optimiser": 4 * gpt_parameter_count(d, n, C, L) * size,
                "training batch": (L + 1)
                * block_activation_bytes(batch, T, C, h, size, backward=True)
                + batch * prompt,
                "test batch": block_activation_bytes(test, T, C, h, size, backward=False)
                + test * prompt
                + prefix_baseline_bytes(test, n, d),
                "probes": (L + 1) * chunk * T * C * size
                + block_activation_bytes(chunk, T, C, h, size, backward=False)
                + (L + 1) * 2 * P * C * 8
                + 2 * P * (k_gd * d + k_n * d * d + 2 * (k_gd + k_n)) * 8,
                "identify": 2 * Q * (n + 1) * (d + 1) * 8 + 2 * Q * 64 * 8 * 4,
            },
            fields=(
                "d",
                "n_points",
                "n_embd",
                "n_layer",
                "train.batch_size",
                "test_batch_size",
                "probe_prompts",
                "gd_steps",
                "newton_steps",
                "identify_prompts",
            ),
        )
