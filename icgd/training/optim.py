"""Optimizers, learning-rate schedules and per-matrix gradient clipping.

Thin wrappers over `torch.optim`: the point is that a typed config picks the variant, and that the
schedule is a pure function of the update index so a resumed run follows the same lr sequence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor
from torch.optim.lr_scheduler import LambdaLR

from icgd.training.config import OptimizerConfig, ScheduleConfig


def make_optimizer(
    params: Iterable[Tensor] | Iterable[dict], cfg: OptimizerConfig
) -> torch.optim.Optimizer:
    """The optimizer `cfg.kind` over `params` (tensors or torch param-group dicts)."""
    params = list(params)
    if cfg.kind == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    if cfg.kind == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    if cfg.kind == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    raise AssertionError(f"unhandled optimizer kind {cfg.kind!r}")  # the config forbids it


def lr_factor(cfg: ScheduleConfig, total_steps: int) -> Callable[[int], float]:
    """The schedule as a function t ↦ factor on the base lr at update t (0-based).

    step_halving: 0.5^⌊t/every⌋.  cosine: m + (1 − m)(1 + cos(π min(t, T)/T))/2, m = min_lr_ratio,
    T = total_steps.  constant: 1.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if cfg.kind == "constant":
        return lambda t: 1.0
    if cfg.kind == "step_halving":
        every = cfg.every
        return lambda t: 0.5 ** (t // every)
    if cfg.kind == "cosine":
        floor, horizon = cfg.min_lr_ratio, total_steps

        def cosine(t: int) -> float:
            progress = min(t, horizon) / horizon
            return floor + (1.0 - floor) * (1.0 + math.cos(math.pi * progress)) / 2.0

        return cosine
    raise AssertionError(f"unhandled schedule kind {cfg.kind!r}")  # the config forbids it


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, total_steps: int
) -> LambdaLR:
    """A `LambdaLR` applying `lr_factor(cfg, total_steps)`; call `.step()` once after each update.

    The factor is a plain function (not a callable object), so the scheduler's `state_dict` holds
    only numbers (`last_epoch`, `base_lrs`, ...) and loads with `torch.load(weights_only=True)`.
    """
    return LambdaLR(optimizer, lr_lambda=lr_factor(cfg, total_steps))


@torch.no_grad()
def clip_per_matrix_(params: Iterable[Tensor], max_norm: float) -> Tensor:
    """Clip each parameter's gradient separately, in place: g ← g · min(1, c/‖g‖_F).

    Unlike `torch.nn.utils.clip_grad_norm_` (one global norm), every matrix is capped on its own,
    so a large gradient in one matrix does not shrink the step of the others (the recipe of Ahn
    et al.). The direction of each gradient is unchanged; a zero gradient stays zero.

    Returns the pre-clip Frobenius norms, shape `(n,)`, one per parameter that has a gradient, in
    order (a tensor on the gradients' device, so no host sync is forced).
    """
    if max_norm <= 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(0)
    norms = [torch.linalg.vector_norm(g) for g in grads]
    for g, norm in zip(grads, norms, strict=True):
        # c / 0 = inf → clamped to 1: a zero gradient is left alone without an epsilon.
        g.mul_((max_norm / norm).clamp(max=1.0).to(g.dtype))
    return torch.stack([n.to(norms[0].dtype) for n in norms])
