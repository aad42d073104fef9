"""The sync-free NaN/inf guard of the training loops (`train` and the stacked seed loop).

After each optimizer step the loop hands the guard `checked` = [loss, gradient norms, weight
norms] (a tensor is finite iff its norm is). On the device, without a host sync, the guard keeps

    good        every update so far was finite              ()  or (K,) for K stacked seeds
    bad_at      0-based index of the first bad update       ()  or (K,)
    bad_checked `checked` of that update                    (C,) or (K, C)
    saved       the last good weights                       like the parameters

and sets every parameter to `where(good, p, saved)` (then `saved ← p`): from the first bad update
on, the weights (of that seed) stay frozen at the last good step. The loop reads `good` on the host
only where it syncs anyway; `lr_of(t, step)` then gives the learning rate of the bad update t from
the learning rates recorded since the last read (`verified()` clears them). See the module
docstring of `icgd.training.loop` for why and when the host reads.
"""

from __future__ import annotations

import torch
from torch import Tensor


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

    @torch.no_grad()
    def stop(self, k: int) -> None:
        """Freeze stacked seed k at its current weights (its later updates are all undone)."""
        self.good[k] = False
        for kept, p in zip(self.saved, self.params, strict=True):
            kept[k] = p[k]

    def lr_of(self, t: int, step: int) -> float:
        """The lr of update t (0-based), read at `step` updates done."""
        return self.lrs[len(self.lrs) - (step - t)]

    def verified(self) -> None:
        """The host has read `good` (as true, for the seeds still running)."""
        self.lrs.clear()
