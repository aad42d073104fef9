"""The `Task` protocol: what every registered task provides (icgd's own and plugins').

A task is a sampler of in-context problems, built from a typed config (`icgd.core.config.Config`):

- `config`: the config it was built from;
- `sample(batch_size, generator) -> batch`: B problems at once, every random number drawn from
  `generator` (never the global RNG): the same generator state gives the same batch. A task may
  take more arguments (a context length `n`, a `dtype`, ...), all with defaults;
- `layout`: the name of the batch's layout (a class attribute), documented in the task's module
  docstring: what each tensor holds and how prompts are laid out from it;
- `shapes(batch_size) -> {name: shape}`: the shape of every tensor of `sample(batch_size, g)`
  under the default arguments, named as `batch_tensors` reads them;
- `example()` (a classmethod): a tiny instance (seconds to sample, on the CPU), for tests and the
  contract suite.

The layouts of the built-in tasks:

| task                | `layout`           | batch                                                |
|---------------------|--------------------|------------------------------------------------------|
| `linear-regression` | `regression`       | `LinearRegressionBatch`; `.prompt()` (B, d+1, n+1)   |
| `function-classes`  | `next-point`       | `FunctionClassBatch`: X (B, n, d), y (B, n), queries |
| `decision-lists`    | `token-sequence`   | seqs (B, n) int64; `one_hot` gives X (B, L, n)       |
| `markov-reward`     | `reward-process`   | `MarkovRewardBatch`; TD prompts by `sliding_prompts` |
| `point-clouds`      | `point-cloud-pair` | (X, Y), each (B, n, d)                               |

Imports only `icgd.core` (and torch).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = ["Task", "batch_tensors"]


@runtime_checkable
class Task(Protocol):
    """A sampler of in-context problems (module docstring). `isinstance(obj, Task)` checks that
    every member is present (not their signatures; the contract suite checks the behaviour)."""

    config: Any
    layout: ClassVar[str]

    def sample(self, batch_size: int, generator: torch.Generator) -> Any:
        """B problems, all randomness from `generator`."""
        ...

    def shapes(self, batch_size: int) -> dict[str, tuple[int, ...]]:
        """The shape of every tensor of `sample(batch_size, g)`, by name (`batch_tensors`)."""
        ...

    @classmethod
    def example(cls) -> Task:
        """A tiny instance, for tests."""
        ...


def batch_tensors(batch: Any, names: Sequence[str]) -> dict[str, Tensor]:
    """The tensors of a sampled batch by name, the names of `Task.shapes`.

    A dataclass batch: its tensor fields by field name, a dict field's tensors as `field.key`
    (fields holding None or a number are left out; `names` is not used). A tuple batch: its
    entries, named by `names` in order. A tensor batch: the one name of `names`.
    """
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        out: dict[str, Tensor] = {}
        for field in dataclasses.fields(batch):
            value = getattr(batch, field.name)
            if isinstance(value, Tensor):
                out[field.name] = value
            elif isinstance(value, dict):
                out.update(
                    {f"{field.name}.{k}": v for k, v in value.items() if isinstance(v, Tensor)}
                )
        return out
    entries = (batch,) if isinstance(batch, Tensor) else tuple(batch)
    if len(entries) != len(names):
        raise ValueError(f"the batch holds {len(entries)} tensors, the names are {list(names)}")
    return dict(zip(names, entries, strict=True))
