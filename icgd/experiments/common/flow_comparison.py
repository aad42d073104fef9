"""Gradient flow of the population loss next to SGD and Adam on sampled prompts (issue 19 item 2).

Lives here, not in `icgd.analysis`: it trains (`icgd.training.train`) and uses `icgd.theory`,
and the layers (pyproject `[tool.importlinter]`) keep `analysis` and `training` independent, so
only an experiment-level module may use both.

One LSA model (any parametrisation, stacked or looped, float64) is initialised once. From that
init

- the gradient flow ``dθ/dt = −∇L(θ)`` of the population loss ``L`` (`icgd.theory.population`:
  exact for one structured layer, common random numbers otherwise) is integrated by
  `icgd.theory.flow.gradient_flow`;
- copies are trained by each optimizer on fresh prompts (minibatch loss ``mean_b (ŷ_b − y_q,b)²``,
  the sampled version of L, no ½), with θ recorded every ``record_every`` updates.

The clock is ``t = step × lr`` (plain SGD at learning rate η follows the flow at ``t = kη`` up to
O(η) bias and noise of order ``η √(k · tr Var ĝ)``; for Adam the same clock is only a convention:
Adam is not a discretisation of this flow). At each recorded step we report the parameter distance
``‖θ_opt(t) − θ_flow(t)‖₂`` and the population losses of both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from icgd.core.rng import derive_seed, make_generator
from icgd.experiments.common import prompt_mse, regression_sampler
from icgd.models import LinearSelfAttention, LSAConfig
from icgd.tasks import LinearRegression
from icgd.theory.flow import FlowResult, gradient_flow
from icgd.theory.population import GaussianRegression, heads, population_draws, population_loss
from icgd.training import OptimizerConfig, TrainConfig, train

_F64 = torch.float64


@dataclass(frozen=True)
class OptimizerTrack:
    """One optimizer against the flow at its recorded steps (K,): ``t = steps × lr``,
    ``distance`` ‖θ_opt − θ_flow‖₂, ``loss`` and ``flow_loss`` the population losses of each;
    ``theta`` (K, p) the optimizer's parameters (flattened in the model's parameter order)."""

    kind: str
    lr: float
    steps: Tensor
    t: Tensor
    theta: Tensor
    distance: Tensor
    loss: Tensor
    flow_loss: Tensor


@dataclass(frozen=True)
class FlowComparison:
    """The flow (recorded at every optimizer time) and one `OptimizerTrack` per optimizer."""

    flow: FlowResult
    tracks: dict[str, OptimizerTrack]


def population_objective(model_config: LSAConfig, task: LinearRegression, *, n_samples=4096):
    """``params dict -> L`` (0-dim float64): the population loss of the LSA model
    ``model_config`` on ``task``'s data law (`icgd.theory.population`, draws fixed by seed 0)."""
    cfg = task.config
    data = GaussianRegression(
        sigma=task.sigma.to(_F64), n=cfg.n, weight_cov=task.weight_covariance.to(_F64),
        noise_std=cfg.noise_std,
    )  # fmt: skip
    n_loops = model_config.n_layers if model_config.looped else None
    structured = model_config.parametrisation != "full"
    one_step = structured and model_config.n_layers == 1
    draws = None if one_step else population_draws(cfg.n, cfg.d, n_samples, seed=0)

    def loss(params: dict[str, Tensor]) -> Tensor:
        P, Q = heads(model_config.parametrisation, params)
        return population_loss(P, Q, data, n_loops=n_loops, draws=draws)[0]

    return loss


def _train_copy(init: dict[str, Tensor], config: LSAConfig, task, train_config, seed):
    """Train a float64 copy of the model with parameters ``init``; θ recorded at each eval."""
    model = LinearSelfAttention(config, dtype=_F64)
    with torch.no_grad():
        for name, value in init.items():
            getattr(model, name).copy_(value)
    steps, thetas = [], []

    def record(step: int, m: torch.nn.Module) -> dict[str, float]:
        steps.append(step)
        thetas.append(torch.cat([p.detach().reshape(-1).clone() for p in m.parameters()]))
        return {}

    sampler = regression_sampler(task)
    eval_batch = sampler(2, make_generator(derive_seed(seed, "flow", "eval")))
    gen = make_generator(derive_seed(seed, "flow", "train", train_config.optimizer.kind))
    train(model, sampler, prompt_mse, train_config, generator=gen, eval_batch=eval_batch,
          on_eval=record)  # fmt: skip
    return torch.tensor(steps), torch.stack(thetas)  # (K,), (K, p)


def compare_with_flow(
    model_config: LSAConfig,
    task: LinearRegression,
    optimizers: dict[str, OptimizerConfig],
    *,
    steps: int,
    batch_size: int = 1024,
    record_every: int = 10,
    seed: int = 0,
    rtol: float = 1e-8,
    atol: float = 1e-10,
) -> FlowComparison:
    """Train ``model_config`` from one init (seed ``seed``) with each optimizer for ``steps``
    updates of ``batch_size`` fresh prompts (constant lr, no clipping), and integrate the
    population gradient flow from that init to ``max(steps × lr)``; compare at ``t = step × lr``
    (module docstring). ``task`` must be float64. Returns a `FlowComparison`."""
    if task.dtype != _F64:
        raise ValueError(f"task must be float64 (the flow is), got {task.dtype}")
    init_model = LinearSelfAttention(
        model_config, generator=make_generator(derive_seed(seed, "flow", "init")), dtype=_F64
    )
    init = {k: v.detach().clone() for k, v in init_model.named_parameters()}
    runs = {}
    for name, opt in optimizers.items():
        tc = TrainConfig(steps=steps, batch_size=batch_size, optimizer=opt,
                         eval_every=record_every, checkpoint_every=steps)  # fmt: skip
        runs[name] = (opt, *_train_copy(init, model_config, task, tc, seed))
    times = {name: s.to(_F64) * opt.lr for name, (opt, s, _) in runs.items()}
    grid = np.unique(np.concatenate([t.numpy() for t in times.values()]))
    objective = population_objective(model_config, task)
    flow = gradient_flow(objective, init, float(grid[-1]), t_eval=grid, rtol=rtol, atol=atol)
    tracks = {}
    for name, (opt, s, theta) in runs.items():
        idx = torch.from_numpy(np.searchsorted(grid, times[name].numpy()))
        with torch.no_grad():
            losses = torch.stack([objective(_as_dict(th, init)) for th in theta])
        tracks[name] = OptimizerTrack(
            kind=opt.kind, lr=opt.lr, steps=s, t=times[name], theta=theta,
            distance=(theta - flow.theta_flat[idx]).norm(dim=-1), loss=losses,
            flow_loss=flow.loss[idx],
        )  # fmt: skip
    return FlowComparison(flow=flow, tracks=tracks)


def _as_dict(flat: Tensor, like: dict[str, Tensor]) -> dict[str, Tensor]:
    """``flat`` (p,) as ``{name: tensor shaped like like[name]}`` (parameter order)."""
    out, start = {}, 0
    for name, value in like.items():
        out[name] = flat[start : start + value.numel()].reshape(value.shape)
        start += value.numel()
    return out
