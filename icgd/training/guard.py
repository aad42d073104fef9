"""The sync-free NaN/inf guard of the training loop, for one run or K stacked seeds.

Every update is checked: the loss, every gradient (before clipping) and, after the update, every
weight. After each optimizer step the loop hands the guard `checked` = [loss, gradient norms,
weight norms] (a tensor is finite iff its norm is; a norm that overflows counts as non-finite).
On the device, without a host sync, the guard keeps

    good        every update so far was finite              ()  or (K,) for K stacked seeds
    bad_at      0-based index of the first bad update       ()  or (K,)
    bad_checked `checked` of that update                    (C,) or (K, C)
    saved       the last good weights                       like the parameters

and sets every parameter to `where(good, p, saved)` (then `saved ← p`): from the first bad update
on, the weights (of that seed) stay frozen at the last good step, i.e. the bad update is undone.

Why on the device: reading a flag on the host drains a GPU's queue, so the loop reads `good` only
where it syncs anyway — at train-log steps (every `max(1, steps // 200)` updates), eval steps,
checkpoint steps and the end — and then reports the first bad update and its quantity exactly as
an immediate check would (`first_bad`, `lr_of`, `what_diverged`). A checkpoint is written only
after `good` was read as true, so none ever holds weights of (or after) a bad step. Between the bad
step and its detection the loop runs on frozen weights (the optimizer and scheduler keep stepping,
`progress` keeps being called), all of it discarded: nothing after the bad step is logged or saved.
On CPU a host read costs nothing (no queue to drain), so there `checks_every_step` is true and the
loop stops at the bad step itself.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["DivergenceGuard", "checks_every_step", "what_diverged"]


def checks_every_step(device: torch.device) -> bool:
    """Whether the host reads the divergence flags after every update (module docstring): on CPU,
    where reading them costs nothing; elsewhere only where the loop syncs anyway. Also the rule
    of loops outside `icgd.training` that keep a device-side flag (decision-lists' fits)."""
    return device.type == "cpu"


def what_diverged(checked: Tensor, names: list[str], lr: float) -> str:
    """Name the first non-finite quantity of an update that failed the check: the loss, a
    gradient (before clipping), or a weight after the update. `checked` = [loss, gradient norms,
    weight norms] with one gradient and one weight norm per name of `names`."""
    loss = checked[0].item()
    if not math.isfinite(loss):
        return f"the training loss is {loss}"
    i = torch.isfinite(checked[1:]).tolist().index(False)
    if i < len(names):
        return f"the gradient of {names[i]!r} is non-finite"
    return f"the update made {names[i - len(names)]!r} non-finite (lr {lr:g})"


class DivergenceGuard:
    """Device-side state of the updates since the host last read `good` (module docstring), for
    one run (`seeds=None`: scalar flags) or `seeds` = K runs stacked along the parameters' first
    axis (flags of shape (K,))."""

    def __init__(self, params: list[Tensor], next_update: int, seeds: int | None = None) -> None:
        device = params[0].device
        shape = () if seeds is None else (seeds,)
        self.params = params
        self.saved = [p.detach().clone() for p in params]
        self.good = torch.ones(shape, dtype=torch.bool, device=device)
        self.bad_at = torch.full(shape, -1, dtype=torch.long, device=device)
        self.bad_checked: Tensor | None = None
        self.t = torch.full((), next_update, dtype=torch.long, device=device)
        self.lrs: list[float] = []  # the lr of each update since the host last read `good`

    @torch.no_grad()
    def update(self, checked: Tensor, lr: float) -> None:
        """Record one optimizer step (taken with `lr`): `checked` (C,) or (K, C) its checked
        norms; undo the update where it, or an earlier one, was not finite."""
        ok = torch.isfinite(checked).all(dim=-1)
        first_bad = self.good & ~ok
        self.bad_at = torch.where(first_bad, self.t, self.bad_at)
        if self.bad_checked is None:
            self.bad_checked = torch.zeros_like(checked)
        self.bad_checked = torch.where(first_bad[..., None], checked, self.bad_checked)
        self.good &= ok
        for kept, p in zip(self.saved, self.params, strict=True):  # frozen from a bad update on
            keep = self.good.reshape(self.good.shape + (1,) * (p.ndim - self.good.ndim))
            p.copy_(torch.where(keep, p, kept))
            kept.copy_(p)
        self.t += 1
        self.lrs.append(lr)

    def flags(self) -> list[bool]:
        """The host read (a sync): `good` of every seed, one entry for a single run."""
        return self.good.reshape(-1).tolist()

    def first_bad(self, k: int) -> tuple[int, Tensor]:
        """Seed k's first bad update, once `flags()[k]` was read as false: its 0-based index t
        (t updates were good) and its `checked` vector."""
        assert self.bad_checked is not None
        t = int(self.bad_at.reshape(-1)[k])
        return t, self.bad_checked.reshape(self.good.numel(), -1)[k]

    @torch.no_grad()
    def stop(self, k: int) -> None:
        """Freeze seed k at its current weights (its later updates are all undone)."""
        if self.good.ndim == 0:
            self.good.fill_(False)
            return
        self.good[k] = False
        for kept, p in zip(self.saved, self.params, strict=True):
            kept[k] = p[k]

    def lr_of(self, t: int, step: int) -> float:
        """The lr of update t (0-based), read at `step` updates done."""
        return self.lrs[len(self.lrs) - (step - t)]

    def verified(self) -> None:
        """The host has read `good` (as true, for the seeds still running)."""
        self.lrs.clear()
