"""`in-context-td`: a looped linear transformer trained by multi-task TD learns in-context TD.

Wang, Blaser, Daneshmand, Zhang (2025), "Transformers learn temporal difference methods for
in-context reinforcement learning" (SPEC §5). Prompt `Z ∈ R^{(2d+1)×(n+1)}` with context
transitions `[φ(s_i); γφ(s_{i+1}); r(s_i)]` and query `[φ_q; 0; 0]` (`icgd.core.td_prompts`);
layer `Z ← Z + (1/n) P Z M (Zᵀ Q Z)`, value `v̂ = −Z_L[2d+1, n+1]` (`icgd.models.TDTransformer`).

Training ("multi-task TD", as the paper's reference code does it): for each freshly drawn Markov
reward process (`icgd.tasks.MarkovReward`: Boyan chain by default, features `U(−1, 1)^{s×d}`),
one trajectory of `n + minibatch` steps gives `minibatch + 1` consecutive sliding-window prompts
Z_0 … Z_W (window t: transitions t … t+n−1, query φ(s_{t+n})); the loss is the mean squared
semi-gradient TD error `δ_t = r(s_{t+n}) + γ·stopgrad(v̂(Z_{t+1})) − v̂(Z_t)` over the W windows,
and Adam takes `minibatches_per_process` steps on that same batch (the reference's 5) before the
next process. All W+1 windows go through the model in one batched call (the reference code loops
over them).

Analysis, in float64 on `eval_processes` fresh processes:

- the weights' TD shape (`icgd.analysis.td_weight_structure`): P's mass on the value entry, Q's
  mass in the first d rows × 2d columns, the cosine between the blocks Q[:d, :d] and Q[:d, d:2d]
  (−1 for TD's [−Cᵀ, Cᵀ]), and the implied step; tracked along training;
- the step α* for which L steps of batch TD(0) best match the model's values of every state given
  a context of n transitions (`icgd.analysis.fitted_td_step`), and the MSVE between the two
  relative to the μ-variance of the TD values;
- the MSVE to the true values `v = (I − γP)⁻¹ r` against the context length n (nested prefixes of
  one trajectory per process) of the hand-built TD(0) transformer
  (`icgd.constructions.transformer_from_td0`, step `construction_alpha`, `construction_layers`
  loops: 0.2 and 15 as in the reference code's `demo.py`) and of explicit batch TD with the same
  step and iterations (`icgd.algorithms.batch_td0`; it equals the construction to rounding), on
  processes with `curve_rewards`: by default representable, r = (I − γP)Φw, as in `demo.py`, so
  that TD's fixed point tends to the true values and the error can fall towards 0. With random
  rewards the true values are not linear in the features (d < s): TD's error then sits at the
  error of its fixed point from n ≈ 5 on (measured: 4.74 → 4.67 from n = 5 to 80);
- the trained model's MSVE against n (`model_context_lengths`) next to the TD transformer's, on
  processes drawn as in training. The model has seen only n = `n`; away from it it is out of
  distribution: measured after 100 training processes, at n ≤ 2 it is unstable (MSVE 10⁶–10⁹),
  so its default lengths start at 5; trained on random rewards it is also unstable on the
  larger representable rewards (MSVE ≈ 10⁸ at n = 30, measured) — the reason the two curves are
  drawn on different reward laws.

Measured (default config, seed 0, float32 on a loaded 2-core machine; 20,000 Adam steps): P's
mass on the value entry 0.82, Q's mass in the TD block 0.99, the block cosine −0.994 (claims 1,
2 pass); implied step tr(C)/d = 2.76 but the best scalar-step batch TD (α* = 1.47) leaves 13.7%
of its value variance unexplained (claim 3 fails against 10%): besides the TD entries the model
writes φ into the γφ' rows (P[d:2d, :d] ≈ 0.4·I), a mechanism batch TD does not have; the TD(0)
transformer equals explicit TD to 3e-15 and its MSVE on representable rewards falls from 1.16
(n = 1) to 0.20 (n = 80), a paired drop of 14.7 standard errors (claim 4 passes). With 2000
processes: P mass 0.55, relative MSVE 0.12; with 6000: 0.83 and 0.24 (the model drifts further
from scalar-step TD as training goes on).

Sign convention: the construction has P[D, D] = 1, Q[:d, :d] = −Cᵀ, Q[:d, d:2d] = +Cᵀ; a trained
model may carry the opposite sign or another scale on P (the pair (cP, Q/c) computes the same
function), so the implied preconditioner is read from the product P[D, D]·Q and the cosine is
sign-free.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from icgd.analysis.td_structure import td_weight_structure
from icgd.core.results import Claim, Result, make_claim
from icgd.core.rng import derive_seed, make_generator
from icgd.experiments.api import MemoryEstimate, Outcome, RunContext
from icgd.experiments.common import fit_model
from icgd.experiments.in_context_td.config import InContextTDConfig
from icgd.experiments.in_context_td.known import known_answer
from icgd.experiments.in_context_td.values import value_analysis
from icgd.models import TDTransformer, TDTransformerConfig
from icgd.tasks import MarkovReward, sample_trajectory, sliding_prompts

# Tiny sizes for unit tests and the contract suite: seconds on one core.
SMOKE = (
    "d=2",
    "s=5",
    "n=6",
    "n_layers=2",
    "processes=12",
    "minibatch=8",
    "minibatches_per_process=2",
    "eval_every=6",
    "snapshots=3",
    "eval_processes=16",
    "context_lengths=[2,4,8]",
    "model_context_lengths=[3,6]",
    "construction_layers=4",
)


def td_loss(model: TDTransformer, batch: tuple[Tensor, Tensor, float]) -> Tensor:
    """Mean squared semi-gradient TD error over consecutive windows.

    batch: prompts (B, W+1, D, n+1) (window t+1 follows window t), rewards (B, W) (the reward of
    window t's query state), γ. `δ_t = r_t + γ·stopgrad(v̂(Z_{t+1})) − v̂(Z_t)`, one model call
    for all B·(W+1) windows.
    """
    prompts, rewards, gamma = batch
    B, W1 = prompts.shape[:2]
    v = model.value(prompts.flatten(0, 1)).view(B, W1)  # (B, W+1)
    delta = rewards + gamma * v[:, 1:].detach() - v[:, :-1]  # (B, W)
    return (delta**2).mean()


def td_sampler(config: InContextTDConfig, device: torch.device, dtype: torch.dtype):
    """The trainer's `(minibatch, generator) -> batch`: `processes_per_batch` fresh processes,
    one trajectory of n + minibatch steps each from the stationary law, all its windows."""
    mrp = MarkovReward(config.task_config(), device=device)

    def sample(minibatch: int, generator: torch.Generator) -> tuple[Tensor, Tensor, float]:
        batch = mrp.sample(config.processes_per_batch, generator, dtype=dtype)
        states = sample_trajectory(batch, config.n + minibatch, generator)
        windows = sliding_prompts(batch, states, config.n)
        return windows.prompts, windows.rewards, config.gamma

    return sample


class InContextTD:
    name = "in-context-td"
    paper = "Wang, Blaser, Daneshmand, Zhang 2025"
    summary = (
        "Wang et al. 2025: multi-task TD training makes a linear transformer run TD in context"
    )
    Config = InContextTDConfig
    presets = {"smoke": SMOKE}
    known_answer = staticmethod(known_answer)  # for icgd identify (`known.py`)

    def task(self, config: InContextTDConfig, sub: str = ""):
        """The prompts the model is trained on, for `icgd identify`: n transitions of a fresh
        process of the run's law and the next state as query (`TDPromptTask`)."""
        from icgd.analysis.identify.td import TDPromptTask  # here: keeps the CLI's import light

        process = MarkovReward(config.task_config(), device=torch.device(config.device))
        return TDPromptTask(process, config.n)

    def run(self, config: InContextTDConfig, ctx: RunContext) -> Outcome:
        device, dtype, d = torch.device(config.device), config.torch_dtype, config.d
        model = TDTransformer(
            TDTransformerConfig(
                d=d,
                n_layers=config.n_layers,
                looped=config.looped,
                activation=config.activation,
                init_std=config.init_std,
            ),
            generator=make_generator(derive_seed(config.seed, "init"), "cpu"),
            dtype=dtype,
            device=device,
        )
        sample = td_sampler(config, device, dtype)
        # The held-out TD loss is read on `eval_processes` processes at once: one process's TD
        # error is dominated by its own reward noise, too noisy to follow training with.
        held_out = td_sampler(
            config.model_copy(update={"processes_per_batch": config.eval_processes}), device, dtype
        )
        eval_batch = held_out(
            config.minibatch, make_generator(derive_seed(config.seed, "eval"), device)
        )
        train_config = config.train_config()
        snapshot_steps = {
            round(k * train_config.steps / (config.snapshots - 1)) for k in range(config.snapshots)
        }
        snapshots: dict[int, tuple[Tensor, Tensor]] = {}

        def track(step: int, model: TDTransformer) -> dict[str, float]:
            P, Q = (m[0, 0] for m in model.layer_matrices())  # layer 1, head 1: (D, D)
            if step in snapshot_steps or step == train_config.steps:
                snapshots[step] = (P.detach().cpu().clone(), Q.detach().cpu().clone())
            return td_weight_structure(P, Q, d)

        start = time.perf_counter()
        run = fit_model(
            model, sample, td_loss, train_config, seed=config.seed, label=None,
            eval_batch=eval_batch, ctx=ctx, device=device, on_eval=track,
        )  # fmt: skip
        train_seconds = time.perf_counter() - start
        if run.status == "diverged":
            return Outcome(
                metrics={"diverged_at": run.steps_done}, diverged=True, message=run.message
            )
        metrics: dict[str, Any] = {
            "train_seconds": train_seconds,
            "processes_per_second": config.processes / train_seconds,
            "final_td_loss": run.final_eval_loss,
            "curve_step": [r["step"] for r in run.history],
            "curve_td_loss": [r["loss"] for r in run.history],
        }
        for key in ("p_mass", "q_mass", "q_pair_cos", "alpha_implied"):
            metrics[f"curve_{key}"] = [r.get(key, math.nan) for r in run.history]
        arrays: dict[str, Tensor] = {}
        for step, (P, Q) in sorted(snapshots.items()):
            arrays[f"P_step{step}"], arrays[f"Q_step{step}"] = P, Q
        metrics["snapshot_steps"] = sorted(snapshots)
        P, Q = (m[0, 0] for m in model.layer_matrices())
        metrics |= td_weight_structure(P, Q, d)
        arrays["P"], arrays["Q"] = P.detach().cpu(), Q.detach().cpu()
        metrics |= value_analysis(config, model)
        return Outcome(metrics=metrics, arrays=arrays)

    def claims(self, config: InContextTDConfig, metrics: dict) -> list[Claim]:
        """The paper's claims for the run's setting; thresholds chosen before any default run:

        1. P concentrates on the value entry: `P[D, D]² / ‖P‖_F² ≥ 0.5` (more than half of P's
           squared mass on the one entry TD uses).
        2. Q's mass lies in the first d rows × first 2d columns: share ≥ 0.5; and those two d×d
           blocks form a [−C, C] pair: cosine ≤ −1 + 0.2.
        3. the model's values track batch TD with the fitted step: `mean MSVE(v̂, v_TD(α*)) /
           mean Var_μ(v_TD(α*)) ≤ 0.1` (the model misses at most a tenth of TD's value variance).
        4. the hand-built TD transformer's error to the true values falls with context length:
           the paired drop of its MSVE from the shortest to the longest context is positive by at
           least 4 standard errors (z ≥ 4).
        """
        tol = config.tolerances
        lengths = metrics.get("context_lengths") or [math.nan, math.nan]
        return [
            make_claim(
                "P_value_entry_mass",
                "learned P: share of ‖P‖_F² on the value entry P[2d+1, 2d+1]",
                metrics.get("p_mass", math.nan),
                tol.p_mass,
                0.0,
                "at_least",
            ),
            make_claim(
                "Q_td_block_mass",
                "learned Q: share of ‖Q‖_F² in the first d rows × first 2d columns",
                metrics.get("q_mass", math.nan),
                tol.q_mass,
                0.0,
                "at_least",
            ),
            make_claim(
                "Q_minus_C_C_pair",
                "learned Q: cosine between the blocks Q[:d, :d] and Q[:d, d:2d] (TD: −Cᵀ, Cᵀ)",
                metrics.get("q_pair_cos", math.nan),
                -1.0,
                tol.q_pair_cos,
                "at_most",
            ),
            make_claim(
                "values_track_batch_td",
                f"MSVE(model, batch TD with fitted α = {metrics.get('alpha_fitted', math.nan):.3g}"
                f", {config.n_layers} steps) / μ-variance of the TD values",
                metrics.get("relative_msve_model_vs_td", math.nan),
                tol.relative_msve,
                0.0,
                "at_most",
            ),
            make_claim(
                "construction_error_falls_with_n",
                f"TD transformer's MSVE to the true values, n = {lengths[0]} → {lengths[-1]}: "
                f"paired drop in standard errors (ratio "
                f"{metrics.get('construction_msve_ratio', math.nan):.3g})",
                metrics.get("construction_msve_drop_z", math.nan),
                tol.fall_z,
                0.0,
                "at_least",
            ),
        ]

    def figures(self, run_dir: Path, result: Result, out: Path) -> list[Path]:
        from icgd.experiments.in_context_td.figures import draw

        return draw(run_dir, result, out)

    def memory(self, config: InContextTDConfig) -> MemoryEstimate:
        """Peak bytes of the prompts and their layer activations.

        A window's prompt and features are ≈ 2·D·(n+1) numbers, D = 2d + 1; a layer on it keeps
        ≈ 3·D·(n+1) (Z, Z's update, the sum; the linear path forms only D × D products), plus
        3·(n+1)² (scores, σ(scores), the masked pattern) with a softmax or relu activation.
        Training: `processes_per_batch`·(minibatch + 1) windows with every layer's activations,
        and their gradients (×2); the held-out batch of `eval_processes`·(minibatch + 1) windows,
        kept for the whole run, evaluated without gradients (one layer's activations at a time);
        both in `dtype`. The value analysis (float64): `eval_processes`·s prompts, every state as
        the query, at the longest context N of `n`, `model_context_lengths`, `context_lengths`,
        one layer at a time. Measured peak on CPU (default sizes, and with a context of 300):
        within 10% of the total.
        """
        size = 8 if config.dtype == "float64" else 4
        D = 2 * config.d + 1

        def per_window(n: int, layers: int) -> int:
            layer = 3 * D * (n + 1) + (0 if config.activation == "linear" else 3 * (n + 1) ** 2)
            return 2 * D * (n + 1) + layers * layer

        windows = config.minibatch + 1
        N = max(config.n, config.model_context_lengths[-1], config.context_lengths[-1])
        train = config.processes_per_batch * windows * 2 * per_window(config.n, config.n_layers)
        return MemoryEstimate(
            parts={
                "training batch": train * size,
                "held-out batch": config.eval_processes * windows * per_window(config.n, 1) * size,
                "value analysis prompts": config.eval_processes * config.s * per_window(N, 1) * 8,
            },
            fields=(
                "d",
                "n",
                "minibatch",
                "processes_per_batch",
                "eval_processes",
                "s",
                "context_lengths",
            ),
        )
