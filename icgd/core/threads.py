"""`torch_threads(n)`: run a block on n torch threads and restore the count after.

Why: code made of many small batched linear-algebra calls (eigendecompositions, solves and
products of d × d matrices over thousands of prompts) stalls on a second thread when the other
core is busy. On this project's 2-core machine at load ≈ 3, `identify` on 8192 prompts took 17.8 s
on one thread and 153 s on two. The count changes speed only: every reduction here is per prompt.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Set ``torch.set_num_threads(n)`` inside the block; the previous count after it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def single_threaded(fn: F) -> F:
    """Decorator: run `fn` under ``torch_threads(1)`` (module docstring)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with torch_threads(1):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
