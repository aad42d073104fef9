"""Seed ensembles: K `train` calls trained together, stacked over a seed axis, when they can be.

`train_stacked(calls)` takes K `TrainCall`s (one per seed: each with its own model, sampler,
generator, eval batch, run folder and callbacks) and trains them as the K > 1 case of the one
training loop (`icgd.training.loop.train_seeds` with the `StackedSeeds` strategy): parameters
stacked, losses under `vmap`, everything written per seed in the single-run format, divergence
per seed. This module decides *whether* the calls can share one stack.

They can when the models are structurally identical (class, config, parameter and buffer names,
shapes, dtypes, devices), the training configs and resume flags are equal, the loss functions are
one function (the same object, or closures of the same code capturing equal plain values, not
per-seed tensors), all or none have a run folder, resumed seeds sit at one checkpoint step, and a
probe `vmap` of the loss and its gradient runs on the stacked eval batches (it fails on
data-dependent control flow or `.item()`). Otherwise the calls run one after the other through
plain `train`, and the outcome says so (`EnsembleOutcome.batched = False`, with the reason).

`signature(call)` groups calls that may stack: `icgd.training.rendezvous` uses it to train the
calls of K seed threads by groups.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from icgd.training.batches import same_value
from icgd.training.checkpoint import read_checkpoint_metadata
from icgd.training.loop import TrainCall, TrainResult, train_seeds
from icgd.training.strategies import probe_stacking

__all__ = ["EnsembleOutcome", "TrainCall", "signature", "train_stacked"]


@dataclass(frozen=True)
class EnsembleOutcome:
    """The K results of `train_stacked`, in call order; `batched` False when they ran one after
    the other, `reason` saying why."""

    results: list[TrainResult]
    batched: bool
    reason: str = ""


def train_stacked(calls: list[TrainCall]) -> EnsembleOutcome:
    """Train the K calls' models together (stacked and vmapped), or one after the other when
    they cannot be stacked; see the module docstring. Raises what `train` raises."""
    if not calls:
        return EnsembleOutcome([], batched=False, reason="no calls")
    if len(calls) == 1:
        return EnsembleOutcome(train_seeds(calls), batched=False, reason="a single call")
    reason = why_not_stackable(calls)
    if reason:
        return EnsembleOutcome([c.run_alone() for c in calls], batched=False, reason=reason)
    return EnsembleOutcome(train_seeds(calls), batched=True)


def why_not_stackable(calls: list[TrainCall]) -> str:
    """'' when the calls can be trained as one stack, else why not (module docstring)."""
    if len({signature(c)[:3] for c in calls}) > 1:
        return "the models, training configs or resume flags differ"
    if not _same_function([c.loss_fn for c in calls]):
        return "the loss functions differ (different code or captured values)"
    if any(c.run_dir is None for c in calls) and any(c.run_dir is not None for c in calls):
        return "some calls have a run folder and some do not"
    if calls[0].resume:
        if any(c.run_dir is None for c in calls):
            return "resuming needs a run folder"
        steps = set()
        for c in calls:
            try:
                steps.add(int(read_checkpoint_metadata(Path(c.run_dir)).get("step", -1)))
            except Exception:
                return "a checkpoint to resume from is unreadable"
        if len(steps) > 1:
            return f"the seeds' checkpoints are at different steps {sorted(steps)}"
    models, eval_batches = [c.model for c in calls], [c.eval_batch for c in calls]
    return probe_stacking(models, calls[0].loss_fn, eval_batches)


def _same_function(fns: list[Callable]) -> bool:
    """Whether one function can stand for all: the same object, or closures of the same code
    whose captured values are equal plain values (a closure capturing a per-seed tensor is not)."""
    first = fns[0]
    if all(f is first for f in fns):
        return True
    code = getattr(first, "__code__", None)
    if code is None:
        return False
    for f in fns[1:]:
        if getattr(f, "__code__", None) is not code:
            return False
        if not same_value(f.__defaults__, first.__defaults__):
            return False
        cells_a, cells_b = first.__closure__ or (), f.__closure__ or ()
        if len(cells_a) != len(cells_b):
            return False
        for ca, cb in zip(cells_a, cells_b, strict=True):
            try:
                va, vb = ca.cell_contents, cb.cell_contents
            except ValueError:  # an empty cell
                return False
            if not (same_value(va, vb) or (callable(va) and _same_function([va, vb]))):
                return False
    return True


def _structure(model: nn.Module) -> tuple:
    """What must agree for models to share one functional template."""
    config = getattr(model, "config", None)
    config = config.model_dump_json() if hasattr(config, "model_dump_json") else None
    params = tuple(
        (n, tuple(p.shape), p.dtype, str(p.device), p.requires_grad)
        for n, p in model.named_parameters()
    )
    buffers = tuple((n, tuple(b.shape), b.dtype, str(b.device)) for n, b in model.named_buffers())
    return (type(model), config, params, buffers)


def signature(call: TrainCall) -> tuple[Any, ...]:
    """Calls with equal signatures may be stacked (the remaining checks are in
    `why_not_stackable`)."""
    return (
        _structure(call.model),
        call.config.model_dump_json(),
        bool(call.resume),
        getattr(call.loss_fn, "__code__", id(call.loss_fn)),
    )
