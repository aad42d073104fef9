"""The training loop: batched, deterministic, resumable, and stopped by the first NaN/inf.

`train` knows nothing of transformers or tasks: it takes an `nn.Module`, a sampler
`(batch_size, generator) -> batch` and a loss `(model, batch) -> scalar`, so every model family and
task of the package trains through the same forty lines.

Determinism. All training randomness comes from the one `generator` passed in, consumed only by
`sample_batch`. A checkpoint stores everything the remaining updates depend on — weights, optimizer
and scheduler state, the generator state, and the batch in use — so an interrupted run resumed from
its checkpoint produces the same weights and the same `metrics.jsonl`, bit for bit, as a run that
was never interrupted (same device and dtype).

Why the batch in use is part of the checkpoint: with `resample_every = k > 1` one batch serves k
consecutive updates. A checkpoint taken in the middle of such a window must let the resumed run
finish the window on the *same* batch; drawing a new one would shift the whole data stream. Rather
than pickling an arbitrary batch object, we store the generator state from just before the batch
was drawn and draw it again on resume: `sample_batch` is deterministic given the generator, so this
re-derives the batch exactly, whatever its type, in a few kilobytes.

Divergence. Every step checks the loss, every gradient and, after the update, every weight: on the
first non-finite value the update is undone (the model in memory is put back to the weights before
it), the checkpoint on disk is left as it was, and `train` returns `status="diverged"` with a
message naming the step and the quantity. The check reads one norm per tensor (a tensor is finite
iff its norm is; a norm that overflows counts as non-finite).

The check runs on the device (`icgd.training.guard`), without a host sync per step. The
loop keeps a device boolean `good` (every update so far was finite), a copy of the last good
weights, the 0-based index of the first bad update and that update's vector of checked norms.
After each optimizer step: `ok = isfinite([loss, grad norms, weight norms]).all()`,
`good &= ok`, and every parameter becomes `where(good, p, saved)` (then `saved ← p`): from the
first bad update on, the weights stay frozen at the last good step. The host reads `good` only
where the loop syncs anyway — at train-log steps (every `max(1, steps // 200)` updates), eval
steps, checkpoint steps and the end — and then returns `diverged` naming the first bad step and
quantity exactly as an immediate check would. A checkpoint is written only after `good` was read
as true, so no checkpoint ever holds weights of (or after) a bad step. Between the bad step and
its detection the loop keeps running on frozen weights: the optimizer and scheduler keep stepping
(Adam's moments may take the non-finite gradients) and `progress` keeps being called, but all of
that is discarded — the run ends as `diverged` at the detection point and nothing after the bad
step is logged or saved. On CPU a host read costs nothing (there is no queue to drain), so there
`good` is read after every update and the run stops at the bad step itself.

Compilation. `train(..., compile=True)` runs the training steps' loss `loss_fn(model, batch)`
through `torch.compile(loss_fn, dynamic=False)` (forward and backward are compiled; the optimizer
step, the checks and eval stay eager). A new batch shape or a new Python value in the batch (a
loop count b that a curriculum changes) triggers a recompilation, so the recompile limit is raised
to 64 while the loop runs.

Interruption. A stop request (SIGINT, SIGTERM or SIGHUP through `icgd.training.interrupt`) is
read after each update: the loop writes a checkpoint at that step (after the divergence flag was
read as good) and raises `StopRequested`, so the resumed run loses no update. Checkpoint files are
written atomically (temporary file, then rename) with SIGINT deferred until both are written, so
a plain Ctrl-C (no handler installed) never leaves a half-written or mismatched pair. Any
exception propagates unchanged; the caller records `interrupted` or `error`.
`metrics.jsonl` is appended line by line; on resume it is rewritten from the records stored in the
checkpoint, dropping lines written after it, so it equals the file of an uninterrupted run.

Live views. `train(..., tensorboard=folder)` also writes TensorBoard events into `folder`
(`icgd.training.tensorboard`, optional package `tensorboard`): every record written to
`metrics.jsonl` as scalars (the values already on the host, so no extra sync), and heat maps of
the weights at step 0 and at every checkpoint step (a step where the host reads `good` anyway).
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from icgd.core.errors import InputError
from icgd.core.io import atomic_write_text
from icgd.training import interrupt
from icgd.training.checkpoint import (
    CHECKPOINT_FILE,
    METRICS_FILE,
    STATE_FILE,
    load_checkpoint,
    load_training_state,
    save_checkpoint,
)
from icgd.training.config import TrainConfig
from icgd.training.guard import DivergenceGuard
from icgd.training.optim import clip_per_matrix_, make_optimizer, make_scheduler

STATE_FORMAT = 1
# Config fields that may change between a run and its resumption: they change what is logged or
# saved, not the trajectory of the weights (for `steps`, only under a cosine schedule does it).
_RESUME_MAY_CHANGE = {"steps", "eval_every", "eval_batch_size", "checkpoint_every"}
_RESERVED_KEYS = {"step", "kind", "loss", "lr"}


@dataclass(frozen=True)
class TrainResult:
    """What `train` did.

    `history` holds the eval records (the `kind == "eval"` lines of `metrics.jsonl`), starting
    with step 0 of a fresh run. `final_eval_loss` is the held-out loss of the model as returned
    (after a divergence: of the restored last finite weights). `message` says, for a diverged run,
    at which step which quantity was non-finite.
    """

    status: Literal["completed", "diverged"]
    steps_done: int
    history: list[dict] = field(default_factory=list)
    final_eval_loss: float = math.nan
    message: str = ""


def _clean(value: Any) -> Any:
    """A JSON-safe number: Python float, non-finite as None (JSON has no NaN)."""
    value = float(value.detach()) if isinstance(value, Tensor) else float(value)
    return value if math.isfinite(value) else None


def _json_line(record: dict) -> str:
    return json.dumps(record, allow_nan=False) + "\n"


def _norms(tensors: list[Tensor]) -> Tensor:
    """The Frobenius norm of each tensor, (n,) on their device (no host sync)."""
    if not tensors:
        return torch.zeros(0)
    return torch.stack([torch.linalg.vector_norm(t.detach()).float() for t in tensors])


def _grad_norms(params: list[Tensor], zero: Tensor) -> Tensor:
    """The Frobenius norm of each parameter's gradient, `zero` for a parameter without one:
    (n,) with one entry per parameter, so the vector has the same length every step."""
    norms = [
        zero if p.grad is None else torch.linalg.vector_norm(p.grad.detach()).float()
        for p in params
    ]
    return torch.stack(norms)


def _checks_every_step(device: torch.device) -> bool:
    """Whether the host reads the divergence flag after every update (see the module docstring):
    on CPU, where reading it costs nothing; elsewhere only where the loop syncs anyway."""
    return device.type == "cpu"


@contextlib.contextmanager
def _recompile_limit(at_least: int) -> Iterator[None]:
    """Raise dynamo's recompile limit (per code object) for the block."""
    import torch._dynamo.config as dynamo_config

    name = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"
    before = getattr(dynamo_config, name)
    setattr(dynamo_config, name, max(before, at_least))
    try:
        yield
    finally:
        setattr(dynamo_config, name, before)


def _what_diverged(
    loss: Tensor, grad_names: list[str], checked: Tensor, param_names: list[str], lr: float
) -> str:
    """Name the first non-finite quantity of a step that failed the check: the loss, a gradient
    (before clipping), or a weight after the update. `checked` = [loss, gradient norms (one per
    name of `grad_names`), weight norms (one per name of `param_names`)]."""
    if not math.isfinite(loss.item()):
        return f"the training loss is {loss.item()}"
    finite = torch.isfinite(checked[1:]).tolist()
    names = grad_names + param_names
    i = finite.index(False)
    if i < len(grad_names):
        return f"the gradient of {names[i]!r} is non-finite"
    return f"the update made {names[i]!r} non-finite (lr {lr:g})"


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C until the block ends, then raise KeyboardInterrupt (main thread only).

    Used around the two checkpoint writes so an interrupt cannot fall between them.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        restore = previous if previous is not None else signal.default_int_handler
        signal.signal(signal.SIGINT, restore)
    if received:
        raise KeyboardInterrupt


@contextlib.contextmanager
def _metrics_writer(run_dir: Path | None, records: list[dict]) -> Iterator[Callable[[dict], None]]:
    """`write(record)`: append to `records` and, with a run folder, one line to metrics.jsonl.

    The file is first (atomically) rewritten to hold exactly `records`: empty for a fresh run,
    the checkpoint's records on resume.
    """
    if run_dir is None:
        yield records.append
        return
    path = run_dir / METRICS_FILE
    atomic_write_text(path, "".join(_json_line(r) for r in records))
    with open(path, "a", encoding="utf-8") as handle:

        def write(record: dict) -> None:
            records.append(record)
            handle.write(_json_line(record))
            handle.flush()

        yield write


def _check_resumable(state: dict, config: TrainConfig, file: Path, step: int) -> None:
    if state.get("format") != STATE_FORMAT:
        raise InputError(str(file), f"unknown training-state format {state.get('format')!r}")
    try:
        saved = TrainConfig.model_validate_json(state["config"]).model_dump()
    except Exception:
        raise InputError(str(file), "training state holds no valid training config") from None
    now = config.model_dump()
    for key in now:
        if key not in _RESUME_MAY_CHANGE and saved.get(key) != now[key]:
            raise InputError(
                str(file),
                f"cannot resume with a different training config: {key} was {saved.get(key)!r}, "
                f"now {now[key]!r}",
            )
    if step > config.steps:
        raise InputError(str(file), f"checkpoint is at step {step}, past steps={config.steps}")


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
            detects it; see the module docstring.)
        compile: run the training steps' `loss_fn(model, batch)` through
            `torch.compile(loss_fn, dynamic=False)`; eval stays eager. Ignored by a seed of a
            stacked ensemble (`icgd.training.ensemble`), which trains eagerly under `vmap`.
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
    from icgd.training.rendezvous import seat_of_this_thread  # late: it imports this module

    if (seat := seat_of_this_thread()) is not None:  # a seed of an ensemble: train stacked
        kw = {"generator": generator, "eval_batch": eval_batch, "run_dir": run_dir}
        kw |= {"resume": resume, "on_eval": on_eval, "progress": progress}
        kw |= {"tensorboard": tensorboard}
        return seat.train(model, sample_batch, loss_fn, config, **kw)
    run_dir = Path(run_dir) if run_dir is not None else None
    if resume and run_dir is None:
        raise InputError("resume", "resuming needs a run folder (run_dir)")
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("model has no parameters that require grad")
    params = [p for _, p in named]
    optimizer = make_optimizer(params, config.optimizer)
    scheduler = make_scheduler(optimizer, config.schedule, config.steps)
    total, every_k = config.steps, config.resample_every
    log_every = max(1, total // 200)

    records: list[dict] = []
    step = 0
    batch: Any = None
    batch_state: Tensor | None = None  # generator state just before `batch` was drawn
    checkpoint_step: int | None = None
    if resume:
        assert run_dir is not None
        step = load_checkpoint(run_dir, model)
        state = load_training_state(run_dir, expected_step=step)
        _check_resumable(state, config, run_dir / STATE_FILE, step)
        try:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            records = [dict(r) for r in state["records"]]
            batch_state = state["batch_generator_state"]
            if step < total and step % every_k != 0:
                # Mid-window: re-draw the batch in use from the state it was drawn with.
                generator.set_state(batch_state)
                batch = sample_batch(config.batch_size, generator)
            generator.set_state(state["generator_state"])
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            text = " ".join(str(exc).split())[:200]
            raise InputError(
                str(run_dir / STATE_FILE), f"cannot restore training state ({text})"
            ) from None
        checkpoint_step = step

    def current_lr() -> float:
        return float(optimizer.param_groups[0]["lr"])

    def evaluate(at: int) -> dict:
        with torch.no_grad():
            value = loss_fn(model, eval_batch)
        record: dict[str, Any] = {
            "step": at,
            "kind": "eval",
            "loss": _clean(value),
            "lr": current_lr(),
        }
        if on_eval is not None:
            extra = on_eval(at, model)
            clash = _RESERVED_KEYS & set(extra)
            if clash:
                raise ValueError(f"on_eval may not return the reserved keys {sorted(clash)}")
            record.update({k: _clean(v) for k, v in extra.items()})
        return record

    def training_state() -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "config": config.model_dump_json(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "generator_state": generator.get_state(),
            "batch_generator_state": batch_state,
            "records": records,
        }

    def diverged(done: int, what: str) -> TrainResult:
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            final = float(loss_fn(model, eval_batch))
        on_disk = f"step {checkpoint_step}" if checkpoint_step is not None else "none"
        message = (
            f"diverged at step {done + 1}: {what}; the update was not kept; the model holds "
            f"the weights of step {done} (last checkpoint on disk: {on_disk})"
        )
        history = [r for r in records if r["kind"] == "eval"]
        return TrainResult("diverged", done, history, final, message)

    # Sync-free divergence check (module docstring).
    device = params[0].device
    names = [n for n, _ in named]
    guard = DivergenceGuard(params, next_update=step)
    zero = torch.zeros((), dtype=torch.float32, device=device)  # norm of a missing gradient
    every_step = _checks_every_step(device)
    step_loss = torch.compile(loss_fn, dynamic=False) if compile else loss_fn

    def diverged_update() -> TrainResult:
        """`diverged` for the first bad update, once the host has read `good` as false."""
        checked = guard.bad_checked
        assert checked is not None
        t = int(guard.bad_at)  # 0-based: t updates were good
        what = _what_diverged(checked[0], names, checked, names, guard.lr_of(t, step))
        return diverged(t, what)

    limit = _recompile_limit(64) if compile else contextlib.nullcontext()
    board = None
    if tensorboard is not None:
        from icgd.training.tensorboard import TensorBoardLog  # optional package: import late

        board = TensorBoardLog(tensorboard, resume_step=step if resume else None)
    board_open = board if board is not None else contextlib.nullcontext()
    with board_open, _metrics_writer(run_dir, records) as write_line, limit, interrupt.training():

        def write(record: dict) -> None:
            write_line(record)
            if board is not None:
                board.record(record)

        latest: dict = records[-1] if records else {}
        if step == 0:
            latest = evaluate(0)
            write(latest)
            if latest["loss"] is None:
                return diverged(0, "the eval loss of the initial weights is non-finite")
            if board is not None:
                board.weights(0, model)
        while step < total:
            if step % every_k == 0:
                batch_state = generator.get_state()
                batch = sample_batch(config.batch_size, generator)
            optimizer.zero_grad(set_to_none=True)
            loss = step_loss(model, batch)
            if loss.ndim != 0:
                raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
            loss.backward()
            grad_norms = _grad_norms(params, zero)  # (n,), before clipping; no sync
            if config.clip_norm:
                clip_per_matrix_(params, config.clip_norm)
            lr = current_lr()
            optimizer.step()
            with torch.no_grad():
                checked = torch.cat([loss.detach().reshape(1), grad_norms, _norms(params)])
            guard.update(checked, lr)
            scheduler.step()
            step += 1
            logs = step % log_every == 0
            evals = step % config.eval_every == 0 or step == total
            at_checkpoint = step % config.checkpoint_every == 0 or step == total
            stop = interrupt.pending()  # a signal: checkpoint this step, then stop
            saves = run_dir is not None and (at_checkpoint or stop is not None)
            draws = board is not None and at_checkpoint  # weight heat maps
            if every_step or logs or evals or saves or draws:
                if not bool(guard.good):  # the host sync; never before a log, eval or checkpoint
                    return diverged_update()
                guard.verified()

            if logs:
                grad_norm = torch.linalg.vector_norm(grad_norms)
                latest = {
                    "step": step,
                    "kind": "train",
                    "loss": _clean(loss.detach()),
                    "lr": lr,
                    "grad_norm": _clean(grad_norm),
                }
                write(latest)
            if evals:
                latest = evaluate(step)
                if latest["loss"] is None:
                    return diverged(step, "the eval loss is non-finite")  # weights of `step` kept
                write(latest)
            if draws:  # before the checkpoint: a resume purges what follows its step
                assert board is not None
                board.weights(step, model)
            if saves:
                with _sigint_deferred():
                    save_checkpoint(run_dir, model, step, training_state())
                checkpoint_step = step
            if stop is not None:
                raise interrupt.StopRequested(stop)
            if progress is not None:
                progress(step, total, latest)

    history = [r for r in records if r["kind"] == "eval"]
    ended = history and history[-1]["step"] == step
    final = history[-1]["loss"] if ended else evaluate(step)["loss"]
    return TrainResult("completed", step, history, math.nan if final is None else final)


__all__ = ["TrainResult", "train", "CHECKPOINT_FILE", "STATE_FILE", "METRICS_FILE"]
