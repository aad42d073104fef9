"""How the one training loop holds its models: one model, or K seeds stacked along a seed axis.

`icgd.training.loop` is written once for K ≥ 1 seeds. What differs between training one model and
training K structurally identical models at once sits behind two classes with the same methods:

                      `SingleModel` (K = 1)                `StackedSeeds` (K > 1)
    parameters        the model's own                      `stack_module_state(models)`: (K, *shape)
    losses            `loss_fn(model, batch)`, ()           `vmap(functional_call)`, (K,)
    backward          `loss.backward()`                    `losses.sum().backward()`
    clipping          per matrix                           per seed and matrix
    a seed's weights  the model itself                     slice k copied into seed k's module
    optimizer state   as it is                             sliced per seed / stacked from K

The stacked loss is `vmap(λ θ, batch: functional_call(wrapper, θ, (batch,)))(params, batches)`
with `wrapper.forward(batch) = loss_fn(wrapper.inner, batch)`, so a loss that calls model
methods (`model.predict`) works, and the sum's gradient w.r.t. θ_k is ∂ of seed k's loss only.
One torch optimizer over the stacked leaves is exactly K per-seed optimizers, since Adam, AdamW
and SGD (with momentum, with weight decay) are elementwise; and the optimizer state of seed k,
sliced out, is a single run's, so each seed folder resumes and loads like a normal run. Each
seed's numbers equal a single run's up to floating-point reassociation (float64: ~1e-12 relative
after a few dozen steps). Buffers are stacked and passed through `functional_call`, but a model
that updates its buffers in `forward` (batch-norm statistics) is not supported: the updates are
not copied back.

Compilation (`SingleModel` only): `compile=True` runs the training steps' `loss_fn(model, batch)`
through `torch.compile(loss_fn, dynamic=False)` (forward and backward compiled; the optimizer step,
the checks and eval stay eager). A new batch shape or a new Python value in the batch (a loop
count that a curriculum changes) recompiles, so the recompile limit is raised to 64 meanwhile. A
stack trains eagerly under `vmap` (`icgd run --seeds` refuses `--compile`).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from icgd.training.batches import stack_batches
from icgd.training.guard import DivergenceGuard
from icgd.training.optim import clip_per_matrix_

__all__ = ["SingleModel", "StackedSeeds", "probe_stacking", "trained_names"]
__all__ += ["slice_optimizer_state", "stack_optimizer_states"]

Loss = Callable[[nn.Module, Any], Tensor]


def trained_names(model: nn.Module) -> list[str]:
    """The names of the parameters the loop optimizes (those with `requires_grad`)."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if not names:
        raise ValueError("model has no parameters that require grad")
    return names


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


class SingleModel:
    """K = 1: train `model`'s own parameters with plain autograd (module docstring)."""

    seeds = 1

    def __init__(self, model: nn.Module, loss_fn: Loss, compile: bool = False) -> None:
        self.module, self.compile = model, compile
        self.names = trained_names(model)
        own = dict(model.named_parameters())
        self.params = [own[n] for n in self.names]
        self.step_loss = torch.compile(loss_fn, dynamic=False) if compile else loss_fn
        self.batch: Any = None
        # the norm of a missing gradient
        self.zero = torch.zeros((), dtype=torch.float32, device=self.params[0].device)

    def running(self) -> contextlib.AbstractContextManager:
        return _recompile_limit(64) if self.compile else contextlib.nullcontext()

    def guard(self, next_update: int) -> DivergenceGuard:
        return DivergenceGuard(self.params, next_update=next_update)

    def use(self, batches: list[Any]) -> None:
        """The batches of the next updates, one per seed."""
        (self.batch,) = batches

    def losses(self) -> Tensor:
        """The training loss on the current batch, () (with its graph)."""
        loss = self.step_loss(self.module, self.batch)
        if loss.ndim != 0:
            raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
        return loss

    def backward(self, loss: Tensor) -> Tensor:
        """Backpropagate; the Frobenius norm of each gradient before clipping, (n,) as float32,
        zero for a parameter without one (no host sync)."""
        loss.backward()
        norms = [
            self.zero if p.grad is None else torch.linalg.vector_norm(p.grad.detach()).float()
            for p in self.params
        ]
        return torch.stack(norms)

    def clip_(self, grad_norms: Tensor, max_norm: float) -> None:
        clip_per_matrix_(self.params, max_norm)

    @torch.no_grad()
    def checked(self, loss: Tensor, grad_norms: Tensor) -> Tensor:
        """[loss, gradient norms, weight norms] after the update, (1 + 2n,): the guard's input."""
        weights = torch.stack([torch.linalg.vector_norm(p.detach()).float() for p in self.params])
        return torch.cat([loss.detach().reshape(1), grad_norms, weights])

    def seed_loss(self, loss: Tensor, k: int) -> Tensor:
        return loss.detach()

    def seed_grad_norm(self, grad_norms: Tensor, k: int) -> Tensor:
        """The global pre-clip gradient norm of seed k's update."""
        return torch.linalg.vector_norm(grad_norms)

    def model(self, k: int) -> nn.Module:
        """Seed k's module, holding its current weights."""
        return self.module

    def optimizer_state(self, optimizer: torch.optim.Optimizer, k: int) -> dict:
        """Seed k's optimizer `state_dict`, as a single run stores it."""
        return optimizer.state_dict()

    def load_optimizer_states(self, optimizer: torch.optim.Optimizer, states: list[dict]) -> None:
        """Restore the optimizer from the seeds' single-run `state_dict`s."""
        optimizer.load_state_dict(states[0])

    def finish(self) -> None:
        """Leave every seed's final weights in its own module (already there)."""


class _LossModule(nn.Module):
    """`forward(batch) = loss_fn(self.inner, batch)`: the loss as a module for functional_call."""

    def __init__(self, inner: nn.Module, loss_fn: Loss) -> None:
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


class StackedSeeds:
    """K > 1: the K models' parameters stacked along a leading seed axis, the K losses computed
    by one `vmap` of `functional_call` (module docstring). The models must be structurally
    identical and share `loss_fn` (`icgd.training.ensemble` checks that)."""

    def __init__(self, models: list[nn.Module], loss_fn: Loss) -> None:
        self.modules, self.seeds = models, len(models)
        self.names = trained_names(models[0])
        self.all_params, buffers = stack_module_state(models)
        self.params = [self.all_params[n] for n in self.names]
        self.wrapper = _LossModule(_template(models[0]), loss_fn)
        self.leaves = {f"inner.{n}": p for n, p in self.all_params.items()}
        self.buffers = {f"inner.{n}": b for n, b in buffers.items()}
        self.batched: Callable | None = None
        self.tensors: list[Tensor] = []

    def running(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def guard(self, next_update: int) -> DivergenceGuard:
        return DivergenceGuard(self.params, next_update=next_update, seeds=self.seeds)

    def use(self, batches: list[Any]) -> None:
        """The batches of the next updates, one per seed: stacked, and the vmapped loss built
        around their structure."""
        self.tensors, rebuild = stack_batches(batches)

        def one(p, b, t):
            return functional_call(self.wrapper, (p, b), (rebuild(t),))

        self.batched = vmap(one)

    def losses(self) -> Tensor:
        """The K training losses on the current batches, (K,) (with their graph)."""
        assert self.batched is not None
        loss = self.batched(self.leaves, self.buffers, self.tensors)
        if loss.shape != (self.seeds,):
            raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape[1:])}")
        return loss

    def backward(self, loss: Tensor) -> Tensor:
        """Backpropagate the K losses; per-seed pre-clip gradient norms (K, n) in the gradients'
        dtype, zero for a parameter without a gradient (no host sync)."""
        loss.sum().backward()
        K = self.seeds
        return torch.stack(
            [
                torch.zeros(K, dtype=p.dtype, device=p.device)
                if p.grad is None
                else torch.linalg.vector_norm(p.grad.detach().reshape(K, -1), dim=1)
                for p in self.params
            ],
            dim=1,
        )

    @torch.no_grad()
    def clip_(self, grad_norms: Tensor, max_norm: float) -> None:
        """`clip_per_matrix_` seed by seed: g_k ← g_k · min(1, c/‖g_k‖_F) for every matrix."""
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            scale = (max_norm / grad_norms[:, i]).clamp(max=1.0).to(p.grad.dtype)  # (K,)
            p.grad.mul_(scale.reshape(-1, *([1] * (p.grad.ndim - 1))))

    @torch.no_grad()
    def checked(self, loss: Tensor, grad_norms: Tensor) -> Tensor:
        """Per seed [loss, gradient norms, weight norms] after the update, (K, 1 + 2n)."""
        K = self.seeds
        weights = torch.stack(
            [torch.linalg.vector_norm(p.detach().reshape(K, -1), dim=1) for p in self.params],
            dim=1,
        )
        return torch.cat(
            [loss.detach().reshape(K, 1).float(), grad_norms.float(), weights.float()], dim=1
        )

    def seed_loss(self, loss: Tensor, k: int) -> Tensor:
        return loss[k].detach()

    def seed_grad_norm(self, grad_norms: Tensor, k: int) -> Tensor:
        """The global pre-clip gradient norm of seed k's update (float32, as a single run's)."""
        return torch.linalg.vector_norm(grad_norms[k].float())

    @torch.no_grad()
    def model(self, k: int) -> nn.Module:
        """Seed k's module, with its slice of the stack copied in."""
        module = self.modules[k]
        own = dict(module.named_parameters())
        for name, p in self.all_params.items():
            own[name].copy_(p[k])
        return module

    def optimizer_state(self, optimizer: torch.optim.Optimizer, k: int) -> dict:
        """Seed k's optimizer `state_dict`, as a single run stores it."""
        return slice_optimizer_state(optimizer.state_dict(), self.params, k)

    def load_optimizer_states(self, optimizer: torch.optim.Optimizer, states: list[dict]) -> None:
        """Restore the optimizer from the seeds' single-run `state_dict`s."""
        optimizer.load_state_dict(stack_optimizer_states(states, self.params))

    def finish(self) -> None:
        """Copy every seed's final weights into its own module."""
        for k in range(self.seeds):
            self.model(k)


def probe_stacking(models: list[nn.Module], loss_fn: Loss, eval_batches: list[Any]) -> str:
    """'' if the vmapped loss of `models` and its gradient run on the stacked `eval_batches`,
    else why not (`icgd.training.ensemble` then trains the seeds one after the other)."""
    try:
        stack = StackedSeeds(models, loss_fn)
        stack.use(eval_batches)
        assert stack.batched is not None
        losses = stack.batched(stack.leaves, stack.buffers, stack.tensors)
        if losses.shape != (len(models),):
            return f"the loss is not a scalar per seed (stacked shape {tuple(losses.shape)})"
        grad_leaves = [p for p in stack.leaves.values() if p.requires_grad]
        torch.autograd.grad(losses.sum(), grad_leaves, allow_unused=True)
    except Exception as exc:
        text = " ".join(str(exc).split())[:160]
        return f"vmap of the loss failed ({type(exc).__name__}: {text})"
    return ""


def slice_optimizer_state(state: dict, stacked: list[Tensor], k: int) -> dict:
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


def stack_optimizer_states(states: list[dict], params: list[Tensor]) -> dict:
    """The inverse of `slice_optimizer_state`: K single-run optimizer states → one stacked."""
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
