"""The float64 value analysis of `in-context-td` (module docstring of `experiment.py`): the step
for which batch TD best matches the trained model's values, and the MSVE to the true values
against context length of the trained model, the hand-built TD(0) transformer and explicit
batch TD."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor

from icgd.algorithms import batch_td0
from icgd.analysis.td_structure import fitted_td_step
from icgd.constructions import transformer_from_td0
from icgd.core.rng import derive_seed, make_generator
from icgd.experiments.in_context_td.config import InContextTDConfig
from icgd.models import TDTransformer
from icgd.tasks import MarkovReward, msve, sample_trajectory, value_prompts


def value_analysis(config: InContextTDConfig, model: TDTransformer) -> dict[str, Any]:
    """The fitted step at n on the training distribution, and the MSVE-vs-context-length
    curves on processes drawn as in training, in float64 (module docstring)."""
    model = copy.deepcopy(model).to(torch.float64)
    out = fitted_step(config, model)
    out |= context_curves(config, model)
    return out


def _draw(config: InContextTDConfig, rewards: str, stream: str, T: int):
    """`eval_processes` processes with reward law `rewards` and one trajectory of T steps each,
    from stream `stream` of the run seed: (batch, states (B, T+1))."""
    device = torch.device(config.device)
    task = config.task_config().model_copy(update={"rewards": rewards})
    gen = make_generator(derive_seed(config.seed, stream), device)
    batch = MarkovReward(task, device=device).sample(
        config.eval_processes, gen, dtype=torch.float64
    )
    return batch, sample_trajectory(batch, T, gen)  # states (B, T+1)


def _context(batch, states, n: int) -> tuple[Tensor, Tensor, Tensor]:
    B = batch.batch_size
    phi_s = batch.phi[torch.arange(B)[:, None], states[:, : n + 1]]  # (B, n+1, d)
    return phi_s[:, :-1], phi_s[:, 1:], batch.r.gather(1, states[:, :n])


def _values(config: InContextTDConfig, net: TDTransformer, batch, states, n: int) -> Tensor:
    with torch.no_grad():
        Z = value_prompts(batch, states, n)  # (B, s, D, n+1): every state as query
        return net.value(Z.flatten(0, 1)).view(batch.batch_size, config.s)


def fitted_step(config: InContextTDConfig, model: TDTransformer) -> dict[str, Any]:
    """The model (float64) against batch TD with a fitted step, on the training distribution."""
    batch, states = _draw(config, config.rewards, "test", config.n)
    B = batch.batch_size
    v_model = _values(config, model, batch, states, config.n)
    fit = fitted_td_step(
        v_model,
        *_context(batch, states, config.n),
        batch.phi,
        batch.mu,
        config.gamma,
        steps=config.n_layers,
    )
    mean_td = (batch.mu * fit.values).sum(-1, keepdim=True)
    td_var = (batch.mu * (fit.values - mean_td) ** 2).sum(-1)  # (B,)
    return {
        "alpha_fitted": fit.alpha,
        "msve_model_vs_td": float(fit.msve.mean()),
        "msve_model_vs_td_se": float(fit.msve.std() / math.sqrt(B)),
        "td_value_variance": float(td_var.mean()),
        "relative_msve_model_vs_td": float(fit.msve.mean() / td_var.mean()),
        "fit_alphas": fit.grid.tolist(),
        "fit_msve": fit.grid_msve.tolist(),
    }


def _curves(
    config: InContextTDConfig,
    model: TDTransformer,
    built: TDTransformer,
    rewards: str,
    stream: str,
    lengths: list[int],
    names: tuple[str, ...],
):
    """Mean and SE over processes of the MSVE to the true values, for every n in `lengths`
    (nested prefixes of one trajectory per process), the construction's per-process MSVE at
    every n (for the paired drop), and the largest |construction − explicit TD| met."""
    alpha, layers = config.construction_alpha, config.construction_layers
    gap = 0.0
    batch, states = _draw(config, rewards, stream, lengths[-1])
    B = batch.batch_size
    mean = {name: [] for name in names}
    se = {name: [] for name in names}
    per_process: dict[int, Tensor] = {}
    for n in lengths:
        phi, phi_next, r = _context(batch, states, n)
        w = batch_td0(phi, phi_next, r, config.gamma, steps=layers, alpha=alpha).final
        v = {"td": torch.einsum("bsd,bd->bs", batch.phi, w)}  # (B, s)
        v["construction"] = _values(config, built, batch, states, n)
        gap = max(gap, float((v["construction"] - v["td"]).abs().max()))
        if "model" in names:
            v["model"] = _values(config, model, batch, states, n)
        for name in names:
            e = msve(v[name], batch.v, batch.mu)  # (B,)
            mean[name].append(float(e.mean()))
            se[name].append(float(e.std() / math.sqrt(B)))
        per_process[n] = msve(v["construction"], batch.v, batch.mu)
    return mean, se, per_process, gap


def context_curves(config: InContextTDConfig, model: TDTransformer) -> dict[str, Any]:
    """MSVE to the true values against context length: (i) the trained model (float64) next to
    the TD transformer, on processes drawn as in training; (ii) the TD transformer and explicit
    TD on `curve_rewards` (the reference demo's law), with claim 4's paired drop."""
    device = torch.device(config.device)
    alpha, layers = config.construction_alpha, config.construction_layers
    built = transformer_from_td0(config.d, layers, alpha=alpha, dtype=torch.float64, device=device)
    out: dict[str, Any] = {}
    # (i) the trained model next to the TD transformer, on processes drawn as in training
    lengths = list(config.model_context_lengths)
    mean, se, _, gap_model = _curves(
        config, model, built, config.rewards, "curves_model", lengths, ("model", "construction")
    )
    out["model_context_lengths"] = lengths
    for name in mean:
        out[f"msve_{name}_vs_n_train"] = mean[name]
        out[f"msve_{name}_vs_n_train_se"] = se[name]
    # (ii) the TD transformer and explicit TD on `curve_rewards` (the reference demo's law)
    lengths = list(config.context_lengths)
    mean, se, construction, gap_td = _curves(
        config, model, built, config.curve_rewards, "curves", lengths, ("construction", "td")
    )
    out["context_lengths"] = lengths
    for name in mean:
        out[f"msve_{name}_vs_n"] = mean[name]
        out[f"msve_{name}_vs_n_se"] = se[name]
    out["construction_vs_td_max_abs"] = max(gap_model, gap_td)
    drop = construction[lengths[0]] - construction[lengths[-1]]  # paired over processes
    B = drop.shape[0]
    out["construction_msve_drop"] = float(drop.mean())
    out["construction_msve_drop_z"] = float(drop.mean() / (drop.std() / math.sqrt(B)))
    out["construction_msve_ratio"] = mean["construction"][-1] / mean["construction"][0]
    return out
