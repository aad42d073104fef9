"""The training loop: batched, deterministic, resumable, stopped by the first NaN/inf; one loop
for one model and for K seeds trained at once.

`train` knows nothing of transformers or tasks: it takes an `nn.Module`, a sampler
`(batch_size, generator) -> batch` and a loss `(model, batch) -> scalar`, so every model family and
task of the package trains through the same loop.

Seeds. The loop trains K ≥ 1 calls (`TrainCall`: a model, its sampler, generator, eval batch, run
folder, callbacks) over a seed axis: `train(model, ...)` is K = 1, `train_seeds` with K > 1 calls
(one model structure, training config and loss, as `icgd.training.ensemble.train_stacked` checks)
trains them stacked. All it writes is per seed, in the single-run format — `metrics.jsonl`, eval
with `on_eval`, `progress`, TensorBoard events, checkpoints (a seed's folder resumes and loads with
plain `train`) — and divergence is per seed: a diverged seed is frozen with a single run's message
while the others go on. What differs between one model and a stack (how parameters are held, how
the losses are computed, backpropagated and clipped, how a seed's weights and optimizer state are
read out; `compile`) is a strategy: `SingleModel` or `StackedSeeds` (`icgd.training.strategies`).

Determinism. All training randomness comes from each seed's `generator`, consumed only by its
`sample_batch`. A checkpoint stores everything the remaining updates depend on — weights, optimizer
and scheduler state, the generator state, and the batch in use — so an interrupted run resumed from
its checkpoint produces the same weights and the same `metrics.jsonl`, bit for bit, as a run that
was never interrupted (same device and dtype).

Why the batch in use is part of the checkpoint: with `resample_every = k > 1` one batch serves k
consecutive updates; a checkpoint in the middle of such a window must let the resumed run finish
the window on the *same* batch, or the whole data stream shifts. Rather than pickling an arbitrary
batch object, we store the generator state from just before the batch was drawn and draw it again
on resume: `sample_batch` is deterministic given the generator, so this re-derives the batch
exactly, whatever its type, in a few kilobytes.

Divergence. Every update's loss, gradients and resulting weights are checked on the device, with
no host sync per step (`icgd.training.guard`): the first non-finite value undoes the update and
freezes the seed; the host reads the flags every step on CPU, elsewhere at log, eval and
checkpoint steps, and ends the seed with `status="diverged"` and a message naming the step and the
quantity. No checkpoint ever holds weights of a bad step.

Interruption. A stop request (SIGINT, SIGTERM or SIGHUP through `icgd.training.interrupt`) is
read after each update: the loop writes a checkpoint at that step (after the divergence flags were
read as good) and raises `StopRequested`, so the resumed run loses no update. Any exception
propagates unchanged; the caller records `interrupted` or `error`. How the files are written:
`icgd.training.records`.

Live views. `train(..., tensorboard=folder)` also writes TensorBoard events into `folder`
(`icgd.training.tensorboard`, optional package `tensorboard`): every record written to
`metrics.jsonl` as scalars (already on the host: no extra sync), and heat maps of the weights at
step 0 and at every checkpoint step (where the host reads the flags anyway).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from icgd.core.errors import InputError
from icgd.training.batches import BatchDrawer
from icgd.training.checkpoint import STATE_FILE, save_checkpoint
from icgd.training.config import TrainConfig
from icgd.training.guard import checks_every_step, what_diverged
from icgd.training.interrupt import StopRequested, pending, training
from icgd.training.optim import make_optimizer, make_scheduler
from icgd.training.records import (
    RESERVED_KEYS,
    SeedLogs,
    TrainResult,
    clean,
    load_checkpoints,
    sigint_deferred,
    training_state,
)
from icgd.training.strategies import SingleModel, StackedSeeds, trained_names

__all__ = ["TrainCall", "TrainResult", "train", "train_seeds"]


@dataclass
class TrainCall:
    """The arguments of one `train(...)` call but `compile`: one seed of `train_seeds`."""

    model: nn.Module
    sample_batch: Callable[[int, torch.Generator], Any]
    loss_fn: Callable[[nn.Module, Any], Tensor]
    config: TrainConfig
    generator: torch.Generator
    eval_batch: Any
    run_dir: str | Path | None = None
    resume: bool = False
    on_eval: Callable[[int, nn.Module], dict[str, float]] | None = None
    progress: Callable[[int, int, dict], None] | None = None
    tensorboard: str | Path | None = None

    def run_alone(self) -> TrainResult:
        """This call as a single run (`train`, K = 1)."""
        return train_seeds([self])[0]


def train(
    model: nn.Module,
    sample_batch: Callable[[int, torch.Generator], Any],
    loss_fn: Callable[[nn.Module, Any], Tensor],
    config: TrainConfig,
    *,
    generator: torch.Generator,
    eval_batch: Any,
    run_dir: str | Path | None = None,
    resume: bool = False,
    on_eval: Callable[[int, nn.Module], dict[str, float]] | None = None,
    progress: Callable[[int, int, dict], None] | None = None,
    compile: bool = False,
    tensorboard: str | Path | None = None,
) -> TrainResult:
    """Train `model` in place for `config.steps` updates; see the module docstring for guarantees.

    Args:
        model: any module; its parameters with `requires_grad` are optimized.
        sample_batch: `(batch_size, generator) -> batch`, drawing all its randomness from the
            generator (required for determinism and resumption). Called every
            `config.resample_every` updates.
        loss_fn: `(model, batch) -> scalar tensor`, batched (no per-sample Python loop).
        config: the loop's `TrainConfig`.
        generator: the training stream; its state is saved in each checkpoint.
        eval_batch: a fixed held-out batch; `loss_fn(model, eval_batch)` under `torch.no_grad`
            at step 0, every `eval_every` updates and at the end.
        run_dir: folder for `checkpoint.safetensors`, `training_state.pt`, `metrics.jsonl`;
            `None` writes nothing.
        resume: continue from `run_dir`'s checkpoint (weights are loaded into `model`; the
            training config must match except `steps`, `eval_*` and `checkpoint_every`).
        on_eval: `(step, model) -> {name: number}` merged into each eval record. Called with
            grad enabled, so it may differentiate (e.g. sensitivities w.r.t. the query).
        progress: `(step, total, latest record)` after every update, e.g. for a progress bar.
            (Off CPU it may be called for a few updates past a non-finite one, before the loop
            detects it; see `icgd.training.guard`.)
        compile: run the training steps' `loss_fn(model, batch)` through
            `torch.compile(loss_fn, dynamic=False)`; eval stays eager
            (`icgd.training.strategies`).
        tensorboard: a folder for TensorBoard event files (`icgd.training.tensorboard`): the
            records as scalars (`train/loss`, `train/lr`, `train/grad_norm`, `eval/loss`,
            `eval/<on_eval metric>`) and weight heat maps at step 0 and every checkpoint step
            (`checkpoint_every` and the end, also without `run_dir`). `None`: none. Needs the
            optional `tensorboard` package (`InputError` naming it when missing).

    Records (`metrics.jsonl`, one JSON object a line): `{"step", "kind": "train", "loss", "lr",
    "grad_norm"}` every max(1, steps // 200) updates, where `loss` is the batch loss the update
    was computed from, `lr` the rate it used and `grad_norm` the global pre-clip gradient norm;
    `{"step", "kind": "eval", "loss", "lr", ...on_eval}` with `lr` the rate of the next update.
    `step` counts updates done.

    Returns a `TrainResult`; raises `InputError` for a bad or mismatched checkpoint on resume.
    """
    kw = {"run_dir": run_dir, "resume": resume, "on_eval": on_eval, "progress": progress}
    kw |= {"tensorboard": tensorboard}
    call = TrainCall(model, sample_batch, loss_fn, config, generator, eval_batch, **kw)
    return train_seeds([call], compile=compile)[0]


def train_seeds(calls: list[TrainCall], *, compile: bool = False) -> list[TrainResult]:
    """Train K = len(calls) seeds through the one loop (module docstring): one call as `train`
    does (`SingleModel`), more stacked (`StackedSeeds`; they must stack, as
    `icgd.training.ensemble.train_stacked` checks). One `TrainResult` per call, in order."""
    return _Loop(calls, compile).run()


class _Loop:
    """One run of the loop over K seeds: the state its steps share."""

    def __init__(self, calls: list[TrainCall], compile: bool) -> None:
        first = calls[0]
        self.calls, self.K, self.config, self.resume = calls, len(calls), first.config, first.resume
        self.run_dirs = [Path(c.run_dir) if c.run_dir is not None else None for c in calls]
        if any(c.config != self.config or c.resume != self.resume for c in calls):
            raise ValueError("the seeds of one loop share their training config and resume flag")
        if self.resume and None in self.run_dirs:
            raise InputError("resume", "resuming needs a run folder (run_dir)")
        if compile and self.K > 1:
            raise ValueError("compile: a stack of seeds trains eagerly under vmap")
        trained_names(first.model)  # a model without trainable parameters: ValueError now
        self.step, self.log_every = 0, max(1, self.config.steps // 200)
        self.records: list[list[dict]] = [[] for _ in calls]
        self.batch_states: list[Tensor | None] = [None] * self.K  # generator states before draws
        self.batches: list[Any] = [None] * self.K
        self.checkpoint_step: list[int | None] = [None] * self.K
        self.results: list[TrainResult | None] = [None] * self.K  # set when a seed stops
        models, states = [c.model for c in calls], []
        if self.resume:  # the weights go into the models before a stack copies them
            self.step, states = load_checkpoints(self.run_dirs, models, self.config)
            self.checkpoint_step = [self.step] * self.K
        self.strategy: SingleModel | StackedSeeds = (
            SingleModel(first.model, first.loss_fn, compile)
            if self.K == 1
            else StackedSeeds(models, first.loss_fn)
        )
        self.optimizer = make_optimizer(self.strategy.params, self.config.optimizer)
        self.scheduler = make_scheduler(self.optimizer, self.config.schedule, self.config.steps)
        if self.resume:
            self._restore(states)
        self.guard = self.strategy.guard(next_update=self.step)
        self.every_step = checks_every_step(self.strategy.params[0].device)

    def _restore(self, states: list[dict]) -> None:
        """Optimizer, scheduler, records, generators and the batch in use from the states."""
        total, every_k, k = self.config.steps, self.config.resample_every, 0
        try:
            self.strategy.load_optimizer_states(self.optimizer, [s["optimizer"] for s in states])
            self.scheduler.load_state_dict(states[0]["scheduler"])
            for k, (c, s) in enumerate(zip(self.calls, states, strict=True)):
                self.records[k] = [dict(r) for r in s["records"]]
                self.batch_states[k] = s["batch_generator_state"]
                if self.step < total and self.step % every_k != 0:
                    # Mid-window: re-draw the batch in use from the state it was drawn with.
                    c.generator.set_state(self.batch_states[k])
                    self.batches[k] = c.sample_batch(self.config.batch_size, c.generator)
                c.generator.set_state(s["generator_state"])
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            text = " ".join(str(exc).split())[:200]
            file = self.run_dirs[k] / STATE_FILE  # type: ignore[operator]
            raise InputError(str(file), f"cannot restore training state ({text})") from None
        if self.batches[0] is not None:
            self.strategy.use(self.batches)

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def evaluate(self, k: int, at: int) -> dict:
        """Seed k's eval record at step `at` (not written)."""
        c = self.calls[k]
        model = self.strategy.model(k)
        with torch.no_grad():
            value = c.loss_fn(model, c.eval_batch)
        record: dict[str, Any] = {"step": at, "kind": "eval", "loss": clean(value), "lr": self.lr()}
        if c.on_eval is not None:
            extra = c.on_eval(at, model)
            clash = RESERVED_KEYS & set(extra)
            if clash:
                raise ValueError(f"on_eval may not return the reserved keys {sorted(clash)}")
            record.update({key: clean(v) for key, v in extra.items()})
        return record

    def diverge(self, k: int, done: int, what: str) -> None:
        """End seed k as diverged after `done` good updates (its weights), frozen from now on."""
        self.optimizer.zero_grad(set_to_none=True)
        c = self.calls[k]
        with torch.no_grad():
            final = float(c.loss_fn(self.strategy.model(k), c.eval_batch))
        on_disk = self.checkpoint_step[k]
        message = (
            f"diverged at step {done + 1}: {what}; the update was not kept; the model holds "
            f"the weights of step {done} (last checkpoint on disk: "
            f"{'none' if on_disk is None else f'step {on_disk}'})"
        )
        history = [r for r in self.records[k] if r["kind"] == "eval"]
        self.results[k] = TrainResult("diverged", done, history, final, message)
        self.guard.stop(k)

    def _read(self, active: list[int]) -> list[int]:
        """The host sync: stop the seeds whose updates since the last read went non-finite (as
        of their first bad update); the seeds still running."""
        good = self.guard.flags()
        for k in active:
            if not good[k]:
                t, checked = self.guard.first_bad(k)  # t updates of seed k were good
                lr = self.guard.lr_of(t, self.step)
                self.diverge(k, t, what_diverged(checked, self.strategy.names, lr))
        self.guard.verified()
        return [k for k in active if good[k]]

    def _update(self, draw: BatchDrawer) -> tuple[Tensor, Tensor, float]:
        """One optimizer step of every seed: `(losses, pre-clip gradient norms, lr)`."""
        s, config = self.strategy, self.config
        if self.step % config.resample_every == 0:
            # stopped seeds draw too: the same shapes to stack
            self.batch_states, self.batches = draw()
            s.use(self.batches)
        self.optimizer.zero_grad(set_to_none=True)
        loss = s.losses()
        grad_norms = s.backward(loss)  # before clipping; no sync
        if config.clip_norm:
            s.clip_(grad_norms, config.clip_norm)
        lr = self.lr()
        self.optimizer.step()
        self.guard.update(s.checked(loss, grad_norms), lr)
        self.scheduler.step()
        self.step += 1
        return loss, grad_norms, lr

    def _step(self, active: list[int], draw: BatchDrawer) -> list[int]:
        """One update and what follows it at this step; the seeds still running."""
        loss, grad_norms, lr = self._update(draw)
        step, total, config = self.step, self.config.steps, self.config
        logs = step % self.log_every == 0
        evals = step % config.eval_every == 0 or step == total
        at_checkpoint = step % config.checkpoint_every == 0 or step == total
        stop = pending()  # a signal: checkpoint this step, then stop
        saves = (at_checkpoint or stop is not None) and any(d is not None for d in self.run_dirs)
        draws = at_checkpoint and any(b is not None for b in self.logs.boards)  # weight heat maps
        if self.every_step or logs or evals or saves or draws:
            active = self._read(active)  # never later than a log, eval or checkpoint
        for k in active if logs else ():
            grad_norm = self.strategy.seed_grad_norm(grad_norms, k)
            loss_k = clean(self.strategy.seed_loss(loss, k))
            record = {"step": step, "kind": "train", "loss": loss_k, "lr": lr}
            self.latest[k] = record | {"grad_norm": clean(grad_norm)}
            self.logs.write(k, self.latest[k])
        for k in list(active) if evals else ():
            record = self.evaluate(k, step)
            if record["loss"] is None:  # the weights of `step` are kept
                self.diverge(k, step, "the eval loss is non-finite")
                active.remove(k)
                continue
            self.latest[k] = record
            self.logs.write(k, record)
        if not active:
            return active
        for k in active if draws else ():  # before the checkpoint: a resume purges what follows
            if self.logs.boards[k] is not None:
                self.logs.boards[k].weights(step, self.strategy.model(k))
        if saves:
            self._save(active)
        if stop is not None:
            raise StopRequested(stop)
        for k in active:
            if self.calls[k].progress is not None:
                self.calls[k].progress(step, total, self.latest[k])
        return active

    def _save(self, active: list[int]) -> None:
        """Checkpoint the running seeds that have a run folder, SIGINT held meanwhile."""
        with sigint_deferred():
            for k in [k for k in active if self.run_dirs[k] is not None]:
                optimizer = self.strategy.optimizer_state(self.optimizer, k)
                c, records = self.calls[k], self.records[k]
                state = training_state(
                    self.config,
                    optimizer,
                    self.scheduler,
                    c.generator,
                    self.batch_states[k],
                    records,
                )
                save_checkpoint(self.run_dirs[k], self.strategy.model(k), self.step, state)
                self.checkpoint_step[k] = self.step

    def _start(self) -> list[int]:
        """Step 0 of a fresh run: each seed's initial eval and heat maps; the seeds that run."""
        self.latest: list[dict] = [r[-1] if r else {} for r in self.records]
        if self.step == 0:
            for k in range(self.K):
                self.latest[k] = self.evaluate(k, 0)
                self.logs.write(k, self.latest[k])
                if self.latest[k]["loss"] is None:
                    self.diverge(k, 0, "the eval loss of the initial weights is non-finite")
                elif self.logs.boards[k] is not None:
                    self.logs.boards[k].weights(0, self.strategy.model(k))
        return [k for k in range(self.K) if self.results[k] is None]

    def run(self) -> list[TrainResult]:
        with contextlib.ExitStack() as stack:
            draw = stack.enter_context(BatchDrawer(self.calls, self.config.batch_size))
            resume_step = self.step if self.resume else None
            boards = [c.tensorboard for c in self.calls]
            self.logs = SeedLogs(stack, self.run_dirs, self.records, boards, resume_step)
            stack.enter_context(self.strategy.running())
            stack.enter_context(training())
            active = self._start()
            while self.step < self.config.steps and active:
                active = self._step(active, draw)
        for k in range(self.K):
            if self.results[k] is None:
                history = [r for r in self.records[k] if r["kind"] == "eval"]
                ended = history and history[-1]["step"] == self.step
                final = history[-1]["loss"] if ended else self.evaluate(k, self.step)["loss"]
                final = math.nan if final is None else final
                self.results[k] = TrainResult("completed", self.step, history, final)
        self.strategy.finish()
        return [r for r in self.results if r is not None]
