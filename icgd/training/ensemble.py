"""Seed ensembles: K structurally identical models trained as one stacked model.

`train_stacked(calls)` runs K `train(...)` calls (one per seed: each with its own model, sampler,
generator, eval batch, run folder and callbacks) with the parameters of all K models stacked along a
new leading axis and the math batched over it:

    params  = torch.func.stack_module_state(models)          # {name: (K, *shape)}
    losses  = vmap(λ θ, batch: functional_call(wrapper, θ, (batch,)))(params, batches)   # (K,)
    losses.sum().backward()                                   # ∂/∂θ_k of seed k's loss only

where `wrapper.forward(batch) = loss_fn(wrapper.inner, batch)` so a loss that calls model methods
(`model.predict`) works. The semantics are those of `icgd.training.loop.train`, seed by seed:

- one torch optimizer over the stacked leaves: Adam, AdamW and SGD (with momentum, with weight
  decay) are elementwise, so this is exactly K per-seed optimizers; the schedule is shared (one
  config). Per-matrix clipping is done per seed (one norm per seed and matrix, not per stack);
- every seed draws its batches from its own sampler and generator (`resample_every` honoured;
  the K draws run in a thread pool of torch's thread count, as sampling kernels use one core) and
  the batches are stacked (pytrees of tensors; non-tensor leaves, e.g. a loop count, must be equal
  across seeds and are passed through);
- eval records, `on_eval`, train records, `progress`, `metrics.jsonl` and checkpoints are written
  per seed into each seed's own `run_dir`, in the single-run format: the optimizer state is sliced
  per seed, so every seed folder resumes and loads like a normal run (also with plain `train`);
- TensorBoard events (`train(..., tensorboard=folder)`) go per seed into each call's own folder:
  the same scalars at the same steps and the weight heat maps at step 0 and checkpoint steps;
- divergence is per seed: a seed whose loss, gradients or weights go non-finite has its update
  undone and is frozen (its weights are put back after every later update) with the same
  `status="diverged"` result and message as a single run, while the other seeds continue. The
  check runs on the device, as in `train`: per-seed flags the host reads every step on CPU and
  only at log, eval and checkpoint steps elsewhere (no host sync per step on a GPU).

Each seed's numbers equal a single-seed run's up to floating-point reassociation (float64: ~1e-12
relative after a few dozen steps; `tests/training/test_ensemble.py`).

Fallback. When the calls cannot be stacked — models or training configs differ, the loss
functions differ (different code or different captured values), resumed seeds sit at different
steps, or a probe `vmap` of the loss on the eval batches fails (data-dependent control flow,
`.item()`) — the calls run one after the other through plain `train`, and the outcome says so
(`EnsembleOutcome.batched = False`, with the reason).

`icgd.training.rendezvous.Rendezvous` lets unmodified experiments use this: each seed's experiment
runs in its own thread, and `train` hands its arguments to the thread's rendezvous seat, which
collects one call from every seed still running and trains them here together.

Buffers are stacked and passed through `functional_call`, but a model that updates its buffers in
`forward` (batch-norm statistics) is not supported: the updates are not copied back.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from torch.utils._pytree import tree_flatten, tree_unflatten

from icgd.training import interrupt
from icgd.training.checkpoint import (
    STATE_FILE,
    load_checkpoint,
    load_training_state,
    save_checkpoint,
)
from icgd.training.config import TrainConfig
from icgd.training.guard import DivergenceGuard
from icgd.training.loop import (
    _RESERVED_KEYS,
    STATE_FORMAT,
    TrainResult,
    _check_resumable,
    _checks_every_step,
    _clean,
    _metrics_writer,
    _sigint_deferred,
    _what_diverged,
    train,
)
from icgd.training.optim import make_optimizer, make_scheduler

__all__ = ["EnsembleOutcome", "TrainCall", "signature", "train_stacked"]


@dataclass
class TrainCall:
    """The arguments of one `train(...)` call (see `icgd.training.loop.train`)."""

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
        """This call through the plain single-model loop."""
        return train(
            self.model,
            self.sample_batch,
            self.loss_fn,
            self.config,
            generator=self.generator,
            eval_batch=self.eval_batch,
            run_dir=self.run_dir,
            resume=self.resume,
            on_eval=self.on_eval,
            progress=self.progress,
            tensorboard=self.tensorboard,
        )


@dataclass(frozen=True)
class EnsembleOutcome:
    """The K results of `train_stacked`, in call order; `batched` False when they ran one after
    the other, `reason` saying why."""

    results: list[TrainResult]
    batched: bool
    reason: str = ""


# ----------------------------------------------------------------------- can the calls stack?


def _simple_equal(a: Any, b: Any) -> bool:
    """Equality for captured values: identical objects, or equal plain values (no tensors)."""
    if a is b:
        return True
    plain = (int, float, str, bool, type(None), tuple, frozenset)
    if isinstance(a, plain) and type(a) is type(b):
        try:
            return bool(a == b)
        except Exception:
            return False
    if hasattr(a, "model_dump") and type(a) is type(b):  # pydantic configs
        return bool(a == b)
    return False


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
        if not _simple_equal(f.__defaults__, first.__defaults__):
            return False
        cells_a, cells_b = first.__closure__ or (), f.__closure__ or ()
        if len(cells_a) != len(cells_b):
            return False
        for ca, cb in zip(cells_a, cells_b, strict=True):
            try:
                va, vb = ca.cell_contents, cb.cell_contents
            except ValueError:  # an empty cell
                return False
            if not (_simple_equal(va, vb) or (callable(va) and _same_function([va, vb]))):
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


def signature(call: TrainCall) -> tuple:
    """Calls with equal signatures may be stacked (the remaining checks are in `train_stacked`)."""
    return (
        _structure(call.model),
        call.config.model_dump_json(),
        bool(call.resume),
        getattr(call.loss_fn, "__code__", id(call.loss_fn)),
    )


def _why_not_stackable(calls: list[TrainCall]) -> str:
    if len({signature(c)[:3] for c in calls}) > 1:
        return "the models, training configs or resume flags differ"
    if not _same_function([c.loss_fn for c in calls]):
        return "the loss functions differ (different code or captured values)"
    if any(c.run_dir is None for c in calls) and any(c.run_dir is not None for c in calls):
        return "some calls have a run folder and some do not"
    if calls[0].resume and any(c.run_dir is None for c in calls):
        return "resuming needs a run folder"
    return ""


# ------------------------------------------------------------------------ batches as pytrees


def _stack_batches(batches: list[Any]) -> tuple[list[Tensor], Callable[[list[Tensor]], Any]]:
    """Stack K batches leafwise: `(tensors, rebuild)`, `tensors` the stacked tensor leaves (K, ...)
    and `rebuild(leaves)` the batch pytree around (unbatched) tensor leaves. Non-tensor leaves must
    be equal across the K batches."""
    flat = [tree_flatten(b) for b in batches]
    leaves0, spec = flat[0]
    for _leaves, s in flat[1:]:
        if s != spec:
            raise ValueError("the seeds' samplers returned batches of different structure")
    slots: list[int] = []
    tensors: list[Tensor] = []
    for i, leaf in enumerate(leaves0):
        column = [leaves[i] for leaves, _ in flat]
        if isinstance(leaf, Tensor):
            shapes = {tuple(t.shape) for t in column}
            if len(shapes) > 1:
                raise ValueError(f"batch tensors of different shapes across seeds: {shapes}")
            tensors.append(torch.stack(column))
            slots.append(i)
        elif not all(_simple_equal(leaf, other) for other in column[1:]):
            raise ValueError(
                f"a non-tensor batch entry differs across seeds ({column[0]!r} vs others); "
                "only tensors may differ between the seeds' batches"
            )

    def rebuild(tensor_leaves: list[Tensor]) -> Any:
        leaves = list(leaves0)
        for slot, t in zip(slots, tensor_leaves, strict=True):
            leaves[slot] = t
        return tree_unflatten(leaves, spec)

    return tensors, rebuild


class _LossModule(nn.Module):
    """`forward(batch) = loss_fn(self.inner, batch)`: the loss as a module for functional_call."""

    def __init__(self, inner: nn.Module, loss_fn: Callable[[nn.Module, Any], Tensor]) -> None:
        super().__init__()
        self.inner = inner
        self.loss_fn = loss_fn

    def forward(self, batch: Any) -> Tensor:
        return self.loss_fn(self.inner, batch)


def _template(model: nn.Module) -> nn.Module:
    """A private copy of `model` for functional_call (so no seed's own module is touched)."""
    try:
        return copy.deepcopy(model)
    except Exception:  # an attribute that cannot be copied: swap into the first model itself
        return model


# ---------------------------------------------------------------------- optimizer state slicing


def _slice_optimizer_state(state: dict, stacked: list[Tensor], k: int) -> dict:
    """Seed k's optimizer `state_dict` from the stacked one: tensors shaped like a stacked
    parameter are sliced (cloned, so a saved slice does not drag the whole stack along); the step
    count and hyper-parameters are shared."""
    per_param = {}
    for index, entry in state["state"].items():
        shape = stacked[index].shape
        per_param[index] = {
            key: (
                value[k].clone()
                if key != "step" and isinstance(value, Tensor) and value.shape == shape
                else value
            )
            for key, value in entry.items()
        }
    return {"state": per_param, "param_groups": copy.deepcopy(state["param_groups"])}


def _stack_optimizer_states(states: list[dict], params: list[Tensor]) -> dict:
    """The inverse of `_slice_optimizer_state`: K single-run optimizer states → one stacked."""
    stacked = {}
    for index in states[0]["state"]:
        entries = [s["state"][index] for s in states]
        shape = params[index].shape[1:]
        stacked[index] = {
            key: (
                torch.stack([e[key] for e in entries])
                if key != "step" and isinstance(value, Tensor) and value.shape == shape
                else value
            )
            for key, value in entries[0].items()
        }
    return {"state": stacked, "param_groups": copy.deepcopy(states[0]["param_groups"])}


# ------------------------------------------------------------------------------ the stacked loop


def train_stacked(calls: list[TrainCall]) -> EnsembleOutcome:
    """Train the K calls' models together (stacked and vmapped), or one after the other when
    they cannot be stacked; see the module docstring. Raises what `train` raises."""
    if not calls:
        return EnsembleOutcome([], batched=False, reason="no calls")
    if len(calls) == 1:
        return EnsembleOutcome([calls[0].run_alone()], batched=False, reason="a single call")
    reason = _why_not_stackable(calls)
    if not reason:
        try:
            steps = _resume_steps(calls)
        except _CannotStack as exc:
            reason = str(exc)
    if not reason:
        reason = _probe(calls)
    if reason:
        return EnsembleOutcome([c.run_alone() for c in calls], batched=False, reason=reason)
    return EnsembleOutcome(_StackedRun(calls, steps).run(), batched=True)


class _CannotStack(Exception):
    pass


def _resume_steps(calls: list[TrainCall]) -> list[int] | None:
    """On resume, the checkpoint step of each seed; they must be equal to stack."""
    if not calls[0].resume:
        return None
    from icgd.training.checkpoint import read_checkpoint_metadata

    steps = []
    for c in calls:
        try:
            steps.append(int(read_checkpoint_metadata(Path(c.run_dir)).get("step", -1)))
        except Exception:
            raise _CannotStack("a checkpoint to resume from is unreadable") from None
    if len(set(steps)) > 1:
        raise _CannotStack(f"the seeds' checkpoints are at different steps {sorted(set(steps))}")
    return steps


def _probe(calls: list[TrainCall]) -> str:
    """'' if the vmapped loss (and its gradient) runs on the stacked eval batches, else why not."""
    try:
        params, buffers = stack_module_state([c.model for c in calls])
        wrapper = _LossModule(_template(calls[0].model), calls[0].loss_fn)
        tensors, rebuild = _stack_batches([c.eval_batch for c in calls])
        leaves = {f"inner.{n}": p for n, p in params.items()}
        bufs = {f"inner.{n}": b for n, b in buffers.items()}

        def one(p, b, t):
            return functional_call(wrapper, (p, b), (rebuild(t),))

        losses = vmap(one)(leaves, bufs, tensors)
        if losses.shape != (len(calls),):
            return f"the loss is not a scalar per seed (stacked shape {tuple(losses.shape)})"
        grad_leaves = [p for p in leaves.values() if p.requires_grad]
        torch.autograd.grad(losses.sum(), grad_leaves, allow_unused=True)
    except Exception as exc:
        text = " ".join(str(exc).split())[:160]
        return f"vmap of the loss failed ({type(exc).__name__}: {text})"
    return ""


class _StackedRun:
    """One stacked training run of K seeds (state shared by the helpers of `run`)."""

    def __init__(self, calls: list[TrainCall], resume_steps: list[int] | None) -> None:
        self.calls = calls
        self.K = len(calls)
        self.config = calls[0].config
        self.models = [c.model for c in calls]
        self.run_dirs = [Path(c.run_dir) if c.run_dir is not None else None for c in calls]
        self.resume = calls[0].resume and resume_steps is not None
        named = [(n, p) for n, p in self.models[0].named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("model has no parameters that require grad")
        self.names = [n for n, _ in named]

    # -- weights between the stack and the seeds' own modules

    def _sync(self, k: int) -> nn.Module:
        """Copy seed k's slice of the stack into its own model; return that model."""
        model = self.models[k]
        own = dict(model.named_parameters())
        with torch.no_grad():
            for name, p in self.all_params.items():
                own[name].copy_(p[k])
        return model

    def _board(self, stack: contextlib.ExitStack, k: int) -> Any:
        """Seed k's `TensorBoardLog` (entered on `stack`), or None without a folder."""
        folder = self.calls[k].tensorboard
        if folder is None:
            return None
        from icgd.training.tensorboard import TensorBoardLog  # optional package: import late

        step = self.resume_step if self.resume else None
        return stack.enter_context(TensorBoardLog(folder, resume_step=step))

    def run(self) -> list[TrainResult]:
        K, config, calls = self.K, self.config, self.calls
        records: list[list[dict]] = [[] for _ in range(K)]
        step = 0
        batches: list[Any] = [None] * K
        batch_states: list[Tensor | None] = [None] * K
        checkpoint_step: int | None = None
        states = []
        if self.resume:
            for k, c in enumerate(calls):
                run_dir = self.run_dirs[k]
                assert run_dir is not None
                step = load_checkpoint(run_dir, c.model)
                state = load_training_state(run_dir, expected_step=step)
                _check_resumable(state, config, run_dir / STATE_FILE, step)
                states.append(state)
            checkpoint_step = step
        self.resume_step = step

        self.all_params, buffers = stack_module_state(self.models)
        params = [self.all_params[n] for n in self.names]
        optimizer = make_optimizer(params, config.optimizer)
        scheduler = make_scheduler(optimizer, config.schedule, config.steps)
        total, every_k = config.steps, config.resample_every
        log_every = max(1, total // 200)
        if self.resume:
            from icgd.core.errors import InputError

            try:
                optimizer.load_state_dict(
                    _stack_optimizer_states([s["optimizer"] for s in states], params)
                )
                scheduler.load_state_dict(states[0]["scheduler"])
                for k, (c, s) in enumerate(zip(calls, states, strict=True)):
                    records[k] = [dict(r) for r in s["records"]]
                    batch_states[k] = s["batch_generator_state"]
                    if step < total and step % every_k != 0:
                        c.generator.set_state(batch_states[k])
                        batches[k] = c.sample_batch(config.batch_size, c.generator)
                    c.generator.set_state(s["generator_state"])
            except (KeyError, ValueError, TypeError, RuntimeError) as exc:
                text = " ".join(str(exc).split())[:200]
                raise InputError(
                    str(self.run_dirs[0] / STATE_FILE), f"cannot restore training state ({text})"
                ) from None

        wrapper = _LossModule(_template(self.models[0]), calls[0].loss_fn)
        leaves = {f"inner.{n}": p for n, p in self.all_params.items()}
        bufs = {f"inner.{n}": b for n, b in buffers.items()}
        param_names = self.names
        results: list[TrainResult | None] = [None] * K  # set when a seed stops (diverged)

        def current_lr() -> float:
            return float(optimizer.param_groups[0]["lr"])

        def evaluate(k: int, at: int) -> dict:
            c = calls[k]
            model = self._sync(k)
            with torch.no_grad():
                value = c.loss_fn(model, c.eval_batch)
            record: dict[str, Any] = {
                "step": at,
                "kind": "eval",
                "loss": _clean(value),
                "lr": current_lr(),
            }
            if c.on_eval is not None:
                extra = c.on_eval(at, model)
                clash = _RESERVED_KEYS & set(extra)
                if clash:
                    raise ValueError(f"on_eval may not return the reserved keys {sorted(clash)}")
                record.update({key: _clean(v) for key, v in extra.items()})
            return record

        def training_state(k: int) -> dict[str, Any]:
            return {
                "format": STATE_FORMAT,
                "config": config.model_dump_json(),
                "optimizer": _slice_optimizer_state(optimizer.state_dict(), params, k),
                "scheduler": scheduler.state_dict(),
                "generator_state": calls[k].generator.get_state(),
                "batch_generator_state": batch_states[k],
                "records": records[k],
            }

        def diverged(k: int, done: int, what: str) -> TrainResult:
            c = calls[k]
            model = self._sync(k)
            with torch.no_grad():
                final = float(c.loss_fn(model, c.eval_batch))
            on_disk = f"step {checkpoint_step}" if checkpoint_step is not None else "none"
            message = (
                f"diverged at step {done + 1}: {what}; the update was not kept; the model holds "
                f"the weights of step {done} (last checkpoint on disk: {on_disk})"
            )
            history = [r for r in records[k] if r["kind"] == "eval"]
            return TrainResult("diverged", done, history, final, message)

        # Sync-free divergence check, per seed (as `train`; module docstring).
        device = params[0].device
        guard = DivergenceGuard(params, next_update=step, seeds=K)
        frozen = [False] * K  # host view: seeds that stopped (kept at their weights)
        every_step = _checks_every_step(device)
        grad_names: list[str] = []
        batched_loss: Callable | None = None

        def freeze(k: int) -> None:
            """Stop seed k at its current weights (every later update of it is undone)."""
            frozen[k] = True
            guard.stop(k)

        def read_good(active: list[int]) -> list[int]:
            """The host sync: stop the seeds whose updates since the last read went non-finite;
            return those seeds."""
            good = guard.good.tolist()
            newly = [k for k in active if not good[k]]
            if newly:
                assert guard.bad_checked is not None
                at = guard.bad_at.tolist()
            for k in newly:
                t = at[k]  # 0-based: t updates of seed k were good
                checked = guard.bad_checked[k]  # type: ignore[index]
                lr = guard.lr_of(t, step)
                what = _what_diverged(checked[0], grad_names, checked, param_names, lr)
                frozen[k] = True
                results[k] = diverged(k, t, what)
            guard.verified()
            return newly

        with contextlib.ExitStack() as stack:
            draw = stack.enter_context(_BatchDrawer(calls, config.batch_size))
            stack.enter_context(interrupt.training())
            boards = [self._board(stack, k) for k in range(K)]
            lines = [
                stack.enter_context(_metrics_writer(self.run_dirs[k], records[k])) for k in range(K)
            ]

            def writer(k: int) -> Callable[[dict], None]:
                def write(record: dict) -> None:
                    lines[k](record)
                    if boards[k] is not None:
                        boards[k].record(record)

                return write

            writers = [writer(k) for k in range(K)]
            latest: list[dict] = [r[-1] if r else {} for r in records]
            if step == 0:
                for k in range(K):
                    latest[k] = evaluate(k, 0)
                    writers[k](latest[k])
                    if latest[k]["loss"] is None:
                        results[k] = diverged(
                            k, 0, "the eval loss of the initial weights is non-finite"
                        )
                        freeze(k)
                    elif boards[k] is not None:
                        boards[k].weights(0, self._sync(k))
            while step < total and not all(frozen):
                active = [k for k in range(K) if results[k] is None]
                if step % every_k == 0:
                    # stopped seeds draw too: same shapes to stack
                    batch_states, batches = draw()
                    batched_loss = None
                if batched_loss is None:  # new batches (or the resumed window's batches)
                    tensors, rebuild = _stack_batches(batches)

                    def one(p, b, t, rebuild=rebuild):
                        return functional_call(wrapper, (p, b), (rebuild(t),))

                    batched_loss = vmap(one)
                optimizer.zero_grad(set_to_none=True)
                loss = batched_loss(leaves, bufs, tensors)  # (K,)
                if loss.shape != (K,):
                    raise ValueError(
                        f"loss_fn must return a scalar, got shape {tuple(loss.shape[1:])}"
                    )
                loss.sum().backward()
                grads = [p.grad for p in params if p.grad is not None]
                grad_names = [
                    n for n, p in zip(self.names, params, strict=True) if p.grad is not None
                ]
                grad_norms = _seed_norms(grads, K, device)  # (K, n_grads), before clipping
                if config.clip_norm:
                    _clip_per_seed_(grads, grad_norms, config.clip_norm)
                lr = current_lr()
                optimizer.step()
                with torch.no_grad():
                    checked = torch.cat(
                        [
                            loss.detach().reshape(K, 1).float(),
                            grad_norms.float(),
                            _seed_norms(params, K, device).float(),
                        ],
                        dim=1,
                    )
                guard.update(checked, lr)
                scheduler.step()
                step += 1
                logs = step % log_every == 0
                evals = step % config.eval_every == 0 or step == total
                at_checkpoint = step % config.checkpoint_every == 0 or step == total
                stop = interrupt.pending()  # a signal: checkpoint this step, then stop
                # the host sync; never later than a log, eval or checkpoint
                if every_step or logs or evals or at_checkpoint or stop is not None:
                    newly = read_good(active)
                    active = [k for k in active if k not in newly]

                if step % log_every == 0:
                    for k in active:
                        grad_norm = torch.linalg.vector_norm(grad_norms[k].float())  # as `train`
                        latest[k] = {
                            "step": step,
                            "kind": "train",
                            "loss": _clean(loss[k].detach()),
                            "lr": lr,
                            "grad_norm": _clean(grad_norm),
                        }
                        writers[k](latest[k])
                if step % config.eval_every == 0 or step == total:
                    for k in list(active):
                        latest[k] = evaluate(k, step)
                        if latest[k]["loss"] is None:
                            results[k] = diverged(k, step, "the eval loss is non-finite")
                            freeze(k)
                            active.remove(k)
                            continue
                        writers[k](latest[k])
                if at_checkpoint or stop is not None:
                    for k in active if at_checkpoint else ():  # before the checkpoint, as `train`
                        if boards[k] is not None:
                            boards[k].weights(step, self._sync(k))
                    with _sigint_deferred():
                        for k in active:
                            if self.run_dirs[k] is not None:
                                model = self._sync(k)
                                save_checkpoint(self.run_dirs[k], model, step, training_state(k))
                    if any(d is not None for d in self.run_dirs):
                        checkpoint_step = step
                if stop is not None:
                    raise interrupt.StopRequested(stop)
                for k in active:
                    if calls[k].progress is not None:
                        calls[k].progress(step, total, latest[k])

        out: list[TrainResult] = []
        for k in range(K):
            if results[k] is not None:
                out.append(results[k])  # type: ignore[arg-type]
                continue
            self._sync(k)
            history = [r for r in records[k] if r["kind"] == "eval"]
            ended = history and history[-1]["step"] == step
            final = history[-1]["loss"] if ended else evaluate(k, step)["loss"]
            out.append(
                TrainResult("completed", step, history, math.nan if final is None else final)
            )
        for k in range(K):
            self._sync(k)
        return out


class _BatchDrawer:
    """Draw every seed's next batch, the seeds in parallel threads.

    Sampling is a large share of a step (`benchmarks/bench_seeds.py`: ≈ 40 % for looped-gd) and
    its kernels (`normal_`) run on one core, so the K draws are spread over as many threads as
    torch uses. Each seed samples from its own generator, so its numbers do not depend on the
    thread that draws them. Returns `(generator states before the draws, batches)`.
    """

    def __init__(self, calls: list[TrainCall], batch_size: int) -> None:
        self.calls, self.batch_size = calls, batch_size
        workers = min(len(calls), torch.get_num_threads())
        self.pool = ThreadPoolExecutor(workers) if workers > 1 else None

    def __enter__(self) -> _BatchDrawer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)

    def _one(self, call: TrainCall) -> tuple[Tensor, Any]:
        state = call.generator.get_state()
        return state, call.sample_batch(self.batch_size, call.generator)

    def __call__(self) -> tuple[list[Tensor | None], list[Any]]:
        if self.pool is None:
            drawn = [self._one(c) for c in self.calls]
        else:
            drawn = list(self.pool.map(self._one, self.calls))
        return [s for s, _ in drawn], [b for _, b in drawn]


def _seed_norms(tensors: list[Tensor], K: int, device: torch.device) -> Tensor:
    """Per-seed Frobenius norms of stacked tensors: (K, n), in the tensors' dtype (no host sync)."""
    if not tensors:
        return torch.zeros(K, 0, device=device)
    return torch.stack(
        [torch.linalg.vector_norm(t.detach().reshape(K, -1), dim=1) for t in tensors], dim=1
    )


@torch.no_grad()
def _clip_per_seed_(grads: list[Tensor], norms: Tensor, max_norm: float) -> None:
    """`clip_per_matrix_` seed by seed: g_k ← g_k · min(1, c/‖g_k‖_F) for every matrix and seed."""
    for i, g in enumerate(grads):
        scale = (max_norm / norms[:, i]).clamp(max=1.0).to(g.dtype)  # (K,)
        g.mul_(scale.reshape(-1, *([1] * (g.ndim - 1))))
