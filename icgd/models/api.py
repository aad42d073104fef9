"""The `Model` protocol: what every registered model provides (icgd's own and plugins').

A model is an `nn.Module` whose architecture is its pydantic `config`, with named hook points on
its activations (`icgd.models.hooks`, in the style of TransformerLens):

- `config`: everything needed to rebuild it (a checkpoint stores it beside the weights);
- `hook_names()`: the hook names one forward pass fires, in firing order;
- `hooks(fwd_hooks)`: a context manager attaching `[(name or predicate, fn(tensor, name))]`,
  always removed on exit; `fn` returning a tensor replaces the activation;
- `run_with_cache(*inputs, names_filter=None) -> (output, cache)`: the forward pass and the
  activations (detached) of the hook names passing the filter;
- `example(dtype=...)` (a classmethod): a tiny instance with generic weights (a fixed seed);
- `example_inputs(batch_size, generator)`: a tuple of positional inputs of `forward` for B
  prompts, random from `generator`, in the model's dtype and on its device.

`example` and `example_inputs` serve tests and the contract suite: a forward pass in float64
gives float64, hooks see every name of `hook_names()`, and so on.

Imports only `icgd.core` and `icgd.models.hooks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from icgd.core.prompts import build_prompt
from icgd.models.hooks import HookFn, NameMatcher, NamesFilter

__all__ = ["Model", "example_normal", "example_regression_prompt"]


@runtime_checkable
class Model(Protocol):
    """An `nn.Module` with a config and hook points (module docstring). `isinstance(obj, Model)`
    checks that every member is present (not their signatures; the contract suite checks the
    behaviour)."""

    config: Any

    def hook_names(self) -> list[str]:
        """The hook names a forward pass fires, in order."""
        ...

    def hooks(self, fwd_hooks: Sequence[tuple[NameMatcher, HookFn]]) -> AbstractContextManager:
        """Attach hooks for the duration of a `with` block."""
        ...

    def run_with_cache(
        self, *inputs: Any, names_filter: NamesFilter = None
    ) -> tuple[Any, dict[str, Tensor]]:
        """`(forward(*inputs), cache)`."""
        ...

    def example_inputs(self, batch_size: int, generator: torch.Generator) -> tuple[Any, ...]:
        """Positional inputs of `forward` for B prompts."""
        ...

    @classmethod
    def example(cls, *, dtype: torch.dtype = torch.float32) -> Model:
        """A tiny instance, for tests."""
        ...


def layer_steps(n_loops: int | None, n_layers: int, looped: bool) -> int:
    """How many layer applications a forward pass runs: `n_layers` by default; a looped model
    may run any `n_loops ≥ 0`, a stacked one only its own `n_layers` (else a ValueError)."""
    if n_loops is None:
        return n_layers
    if isinstance(n_loops, bool) or not isinstance(n_loops, int) or n_loops < 0:
        raise ValueError(f"n_loops must be a non-negative integer, got {n_loops!r}")
    if not looped and n_loops != n_layers:
        raise ValueError(
            f"n_loops={n_loops} given to a stacked model with n_layers={n_layers}; "
            "only a looped model (config.looped=True) can run a different number of steps"
        )
    return n_loops


def register_normal_parameters(
    module: nn.Module,
    shapes: dict[str, tuple[int, ...]],
    std: float,
    generator: torch.Generator | None,
    *,
    dtype: torch.dtype,
    device: str | torch.device,
) -> None:
    """Register one parameter per `shapes` entry, in order, drawn from N(0, std²).

    Drawn in float64 on the generator's device, then cast: the same seed gives the same initial
    point for every dtype and device. Randomness is an argument: without a generator, a fixed
    seed (0) rather than the global RNG state.
    """
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    for name, shape in shapes.items():
        init = torch.randn(shape, generator=generator, dtype=torch.float64, device=generator.device)
        module.register_parameter(name, nn.Parameter((init * std).to(device=device, dtype=dtype)))


def example_normal(generator: torch.Generator, *shape: int, like: nn.Module) -> Tensor:
    """N(0, 1) numbers of `shape`, drawn in float64 on the generator's device, then cast to the
    dtype and device of `like`'s parameters (the same numbers in every dtype)."""
    p = next(like.parameters())
    z = torch.randn(*shape, generator=generator, dtype=torch.float64, device=generator.device)
    return z.to(device=p.device, dtype=p.dtype)


def example_regression_prompt(
    generator: torch.Generator, batch_size: int, d: int, n: int, *, like: nn.Module
) -> Tensor:
    """Regression prompts `Z` (B, d+1, n+1) (`icgd.core.prompts.build_prompt`) of standard normal
    points x_i, labels y_i and query x_q, in `like`'s dtype and on its device."""
    data = example_normal(generator, batch_size, n + 1, d + 1, like=like)  # (B, n+1, d+1)
    return build_prompt(data[:, :n, :d], data[:, :n, d], data[:, n, :d])  # (B, d+1, n+1)
