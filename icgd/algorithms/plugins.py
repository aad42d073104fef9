"""The registry of algorithms: icgd's own and those of installed plugins (entry-point group
`icgd.algorithms`), by name. Each built-in registers itself at the bottom of the module that defines
it (`ALGORITHMS.register("name", obj)`); a plugin declares an entry point in its `pyproject.toml`:

    [project.entry-points."icgd.algorithms"]
    my-algorithm = "my_package.module:object"

`icgd list algorithms` prints them.

What is registered keeps the `Algorithm` protocol: a plain function, batched over prompts (B
prompts at once give, prompt by prompt, what each prompt alone gives), that carries an `example`
attribute, `example(batch_size, generator) -> AlgorithmExample`: its arguments for B prompts
(float64) and where the prompt axis of its inputs and outputs is. The contract suite runs every
registered algorithm on an example of B prompts and on each prompt alone, and compares. Attach one
with `with_example(algorithm, example)` (icgd's own: `icgd/algorithms/__init__.py`), e.g.

    def _example(batch_size, generator):
        x = torch.randn(batch_size, 8, generator=generator, dtype=torch.float64)  # (B, n)
        return AlgorithmExample({"x": x}, {"prior_std": 1.0, "noise_std": 2.0})

    with_example(posterior_mean, _example)
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch
from torch import Tensor

from icgd.core.registry import Registry

__all__ = ["ALGORITHMS", "Algorithm", "AlgorithmExample", "output_tensors", "with_example"]

F = TypeVar("F", bound=Callable[..., Any])


def _builtins() -> None:
    importlib.import_module("icgd.algorithms")  # every module registers its own algorithms


ALGORITHMS: Registry[Any] = Registry("algorithm", "icgd.algorithms", builtins=_builtins)


@dataclass(frozen=True)
class AlgorithmExample:
    """The arguments of an algorithm for B prompts, and the prompt axis of its inputs and outputs.

    inputs: keyword arguments of B prompts, the prompt axis first: tensors (B, …), or dicts of
    such tensors (e.g. initial weights). options: keyword arguments shared by every prompt
    (hyper-parameters, a shared prior, ...). out_axis: the prompt axis of the output's tensors
    (`output_tensors`), e.g. 1 for GD's iterates (L+1, B, d); out_axes: per output tensor where
    it differs, e.g. `{"iterates": 1}`.
    """

    inputs: Mapping[str, Any]
    options: Mapping[str, Any] = field(default_factory=dict)
    out_axis: int = 0
    out_axes: Mapping[str, int] = field(default_factory=dict)

    def prompt(self, b: int) -> AlgorithmExample:
        """The same example restricted to prompt b: a batch of one (inputs sliced `b : b+1`)."""

        def one(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: one(v) for k, v in value.items()}
            return value[b : b + 1]

        return dataclasses.replace(self, inputs={k: one(v) for k, v in self.inputs.items()})

    def run(self, algorithm: Callable[..., Any]) -> Any:
        """`algorithm(**inputs, **options)`."""
        return algorithm(**self.inputs, **self.options)

    def axis(self, name: str) -> int:
        """The prompt axis of the output tensor `name` (`output_tensors`)."""
        return self.out_axes.get(name, self.out_axis)


@runtime_checkable
class Algorithm(Protocol):
    """A registered algorithm (module docstring): callable, with an `example` attribute."""

    example: Callable[[int, torch.Generator], AlgorithmExample]

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


def with_example(algorithm: F, example: Callable[[int, torch.Generator], AlgorithmExample]) -> F:
    """Attach `example(batch_size, generator) -> AlgorithmExample` to `algorithm`; returns it."""
    algorithm.example = example  # type: ignore[attr-defined]
    return algorithm


def output_tensors(output: Any) -> dict[str, Tensor]:
    """An algorithm's output tensors by name: a tensor is `""`; a dataclass (a result object) its
    tensor fields by field name (None left out); a dict its tensor values by key; a tuple its
    entries by position ("0", "1", ...)."""
    if isinstance(output, Tensor):
        return {"": output}
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        items = [(f.name, getattr(output, f.name)) for f in dataclasses.fields(output)]
    elif isinstance(output, dict):
        items = list(output.items())
    elif isinstance(output, tuple):
        items = [(str(i), v) for i, v in enumerate(output)]
    else:
        raise TypeError(f"cannot read the tensors of an output of type {type(output).__name__}")
    return {str(k): v for k, v in items if isinstance(v, Tensor)}
