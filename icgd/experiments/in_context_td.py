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

import copy
import math
import time
from typing import Annotated, Any, Literal

import torch
from pydantic import Field, PositiveFloat, PositiveInt, model_validator
from torch import Tensor

from icgd.algorithms import batch_td0
from icgd.analysis.td_structure import fitted_td_step, td_weight_structure
from icgd.constructions import transformer_from_td0
from icgd.core.config import Config
from icgd.core.registry import register
from icgd.core.results import Claim, make_claim
from icgd.core.rng import derive_seed, make_generator
from icgd.experiments.base import ExperimentConfig, Outcome, RunContext
from icgd.experiments.common import fit_model
from icgd.models import TDTransformer, TDTransformerConfig
from icgd.tasks import (
    MarkovReward,
    MarkovRewardConfig,
    msve,
    sample_trajectory,
    sliding_prompts,
    value_prompts,
)
from icgd.training import OptimizerConfig, TrainConfig


class Tolerances(Config):
    """Thresholds of the claims, fixed before the default run was looked at (reasons in `check`)."""

    p_mass: Annotated[float, Field(gt=0, le=1)] = 0.5
    q_mass: Annotated[float, Field(gt=0, le=1)] = 0.5
    q_pair_cos: Annotated[float, Field(ge=0, le=2)] = 0.2
    relative_msve: PositiveFloat = 0.1
    fall_z: PositiveFloat = 4.0


class InContextTDConfig(ExperimentConfig):
    """Settings of `in-context-td`; every one can be overridden with `--set key=value`.

    The task: `d` features, `s` states, context length `n`, discount `gamma`, `mrp` (transition
    family) and `rewards` ("random" U(−1, 1) or "representable" r = (I − γP)Φw). The model:
    `n_layers` (loops when `looped`), `activation`, `init_std`. Training: `processes` Markov
    reward processes, each giving `minibatch` windows used for `minibatches_per_process` Adam
    steps (lr `lr`, coupled weight decay `weight_decay`), `processes_per_batch` processes per
    step (1: the reference's one process at a time); `eval_every` (steps) for the tracked weight
    measures, `snapshots` P/Q heat maps along training. Analysis: `eval_processes` per
    evaluation set; `model_context_lengths`: the trained model's MSVE-vs-context-length curve (on
    the training reward law); `context_lengths`, `curve_rewards`: the TD transformer's and
    explicit TD's curve (claim 4); `construction_alpha`, `construction_layers`: the TD
    transformer (15 layers and step 0.2: the reference code's `demo.py` defaults).
    """

    dtype: Literal["float32", "float64"] = "float32"
    d: Annotated[int, Field(ge=1, le=64)] = 4
    s: Annotated[int, Field(ge=3, le=1000)] = 10
    n: Annotated[int, Field(ge=1, le=1000)] = 30
    gamma: Annotated[float, Field(ge=0, lt=1)] = 0.9
    mrp: Literal["boyan", "loop", "random_walk"] = "boyan"
    rewards: Literal["random", "representable"] = "random"
    n_layers: Annotated[int, Field(ge=1, le=64)] = 3
    looped: bool = True
    activation: Literal["linear", "softmax", "relu"] = "linear"
    init_std: PositiveFloat = 0.03
    processes: Annotated[int, Field(ge=1, le=10_000_000)] = 4000
    minibatch: Annotated[int, Field(ge=1, le=100_000)] = 64
    minibatches_per_process: Annotated[int, Field(ge=1, le=1000)] = 5
    processes_per_batch: Annotated[int, Field(ge=1, le=100_000)] = 1
    lr: PositiveFloat = 1e-3
    weight_decay: Annotated[float, Field(ge=0)] = 1e-6
    eval_every: Annotated[int, Field(ge=1)] = 250
    snapshots: Annotated[int, Field(ge=2, le=12)] = 5
    eval_processes: Annotated[int, Field(ge=2, le=100_000)] = 512
    model_context_lengths: list[PositiveInt] = [5, 10, 20, 30, 40, 80]
    context_lengths: list[PositiveInt] = [1, 2, 5, 10, 20, 40, 80]
    curve_rewards: Literal["random", "representable"] = "representable"
    construction_alpha: PositiveFloat = 0.2
    construction_layers: Annotated[int, Field(ge=1, le=1000)] = 15
    tolerances: Tolerances = Tolerances()

    @model_validator(mode="after")
    def _check(self) -> InContextTDConfig:
        for field in ("context_lengths", "model_context_lengths"):
            lengths = getattr(self, field)
            if len(lengths) < 2 or sorted(set(lengths)) != list(lengths):
                raise ValueError(f"{field}: must be at least two increasing lengths, got {lengths}")
        if self.processes % self.processes_per_batch:
            raise ValueError(
                f"processes: must be a multiple of processes_per_batch="
                f"{self.processes_per_batch}, got {self.processes}"
            )
        return self

    def task_config(self) -> MarkovRewardConfig:
        return MarkovRewardConfig(
            kind=self.mrp, s=self.s, d=self.d, gamma=self.gamma, rewards=self.rewards
        )

    def train_config(self) -> TrainConfig:
        steps = self.processes // self.processes_per_batch * self.minibatches_per_process
        return TrainConfig(
            steps=steps,
            batch_size=self.minibatch,
            optimizer=OptimizerConfig(kind="adam", lr=self.lr, weight_decay=self.weight_decay),
            resample_every=self.minibatches_per_process,
            eval_every=self.eval_every,
            eval_batch_size=self.minibatch,
            checkpoint_every=max(steps // 4, 1),
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


@register("in-context-td")
class InContextTD:
    paper = "Wang, Blaser, Daneshmand, Zhang 2025"
    summary = (
        "Wang et al. 2025: multi-task TD training makes a linear transformer run TD in context"
    )
    Config = InContextTDConfig

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
        metrics |= self._values(config, model)
        return Outcome(metrics=metrics, arrays=arrays)

    @staticmethod
    def _values(config: InContextTDConfig, model: TDTransformer) -> dict[str, Any]:
        """The fitted step at n on the training distribution, and the MSVE-vs-context-length
        curves on processes drawn as in training, in float64 (module docstring)."""
        device, L = torch.device(config.device), config.n_layers
        model = copy.deepcopy(model).to(torch.float64)

        def draw(rewards: str, stream: str, T: int):
            task = config.task_config().model_copy(update={"rewards": rewards})
            gen = make_generator(derive_seed(config.seed, stream), device)
            batch = MarkovReward(task, device=device).sample(
                config.eval_processes, gen, dtype=torch.float64
            )
            return batch, sample_trajectory(batch, T, gen)  # states (B, T+1)

        def context(batch, states, n: int) -> tuple[Tensor, Tensor, Tensor]:
            B = batch.batch_size
            phi_s = batch.phi[torch.arange(B)[:, None], states[:, : n + 1]]  # (B, n+1, d)
            return phi_s[:, :-1], phi_s[:, 1:], batch.r.gather(1, states[:, :n])

        def values(net: TDTransformer, batch, states, n: int) -> Tensor:
            with torch.no_grad():
                Z = value_prompts(batch, states, n)  # (B, s, D, n+1): every state as query
                return net.value(Z.flatten(0, 1)).view(batch.batch_size, config.s)

        # --- the model against batch TD with a fitted step, on the training distribution -------
        batch, states = draw(config.rewards, "test", config.n)
        B = batch.batch_size
        v_model = values(model, batch, states, config.n)
        fit = fitted_td_step(
            v_model, *context(batch, states, config.n), batch.phi, batch.mu, config.gamma, steps=L
        )
        mean_td = (batch.mu * fit.values).sum(-1, keepdim=True)
        td_var = (batch.mu * (fit.values - mean_td) ** 2).sum(-1)  # (B,)
        out: dict[str, Any] = {
            "alpha_fitted": fit.alpha,
            "msve_model_vs_td": float(fit.msve.mean()),
            "msve_model_vs_td_se": float(fit.msve.std() / math.sqrt(B)),
            "td_value_variance": float(td_var.mean()),
            "relative_msve_model_vs_td": float(fit.msve.mean() / td_var.mean()),
            "fit_alphas": fit.grid.tolist(),
            "fit_msve": fit.grid_msve.tolist(),
        }

        # --- MSVE to the true values against context length --------------------------------
        alpha, layers = config.construction_alpha, config.construction_layers
        built = transformer_from_td0(
            config.d, layers, alpha=alpha, dtype=torch.float64, device=device
        )
        gap = 0.0

        def curves(rewards: str, stream: str, lengths: list[int], names: tuple[str, ...]):
            """Mean and SE over processes of the MSVE to the true values, for every n in
            `lengths` (nested prefixes of one trajectory per process), and the construction's
            per-process MSVE at every n (for the paired drop)."""
            nonlocal gap
            batch, states = draw(rewards, stream, lengths[-1])
            mean = {name: [] for name in names}
            se = {name: [] for name in names}
            per_process: dict[int, Tensor] = {}
            for n in lengths:
                phi, phi_next, r = context(batch, states, n)
                w = batch_td0(phi, phi_next, r, config.gamma, steps=layers, alpha=alpha).final
                v = {"td": torch.einsum("bsd,bd->bs", batch.phi, w)}  # (B, s)
                v["construction"] = values(built, batch, states, n)
                gap = max(gap, float((v["construction"] - v["td"]).abs().max()))
                if "model" in names:
                    v["model"] = values(model, batch, states, n)
                for name in names:
                    e = msve(v[name], batch.v, batch.mu)  # (B,)
                    mean[name].append(float(e.mean()))
                    se[name].append(float(e.std() / math.sqrt(B)))
                per_process[n] = msve(v["construction"], batch.v, batch.mu)
            return mean, se, per_process

        # (i) the trained model next to the TD transformer, on processes drawn as in training
        lengths = list(config.model_context_lengths)
        mean, se, _ = curves(config.rewards, "curves_model", lengths, ("model", "construction"))
        out["model_context_lengths"] = lengths
        for name in mean:
            out[f"msve_{name}_vs_n_train"] = mean[name]
            out[f"msve_{name}_vs_n_train_se"] = se[name]
        # (ii) the TD transformer and explicit TD on `curve_rewards` (the reference demo's law)
        lengths = list(config.context_lengths)
        mean, se, construction = curves(
            config.curve_rewards, "curves", lengths, ("construction", "td")
        )
        out["context_lengths"] = lengths
        for name in mean:
            out[f"msve_{name}_vs_n"] = mean[name]
            out[f"msve_{name}_vs_n_se"] = se[name]
        out["construction_vs_td_max_abs"] = gap
        drop = construction[lengths[0]] - construction[lengths[-1]]  # paired over processes
        out["construction_msve_drop"] = float(drop.mean())
        out["construction_msve_drop_z"] = float(drop.mean() / (drop.std() / math.sqrt(B)))
        out["construction_msve_ratio"] = mean["construction"][-1] / mean["construction"][0]
        return out

    def check(self, config: InContextTDConfig, metrics: dict) -> list[Claim]:
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
