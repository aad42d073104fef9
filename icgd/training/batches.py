"""The seeds' batches: drawing each seed's next batch, and stacking K batches along a seed axis.

Every seed draws from its own sampler and generator, so its data stream is the one of a single
run with its seed, whatever the other seeds do. A batch is any pytree (tuple, dict, ...) of
tensors and plain values; stacked, its tensors gain a leading seed axis (K, ...) while its plain
values (a loop count, a curriculum stage) must be equal across the seeds and pass through.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import torch
from torch import Tensor
from torch.utils._pytree import tree_flatten, tree_unflatten

__all__ = ["BatchDrawer", "same_value", "stack_batches"]


class _Sampled(Protocol):
    """What a drawer needs of a seed: its sampler and its generator (a `TrainCall`)."""

    sample_batch: Callable[[int, torch.Generator], Any]
    generator: torch.Generator


def same_value(a: Any, b: Any) -> bool:
    """Equality for values that may stand for each other across seeds: the same object, or equal
    plain values (numbers, strings, tuples; pydantic configs), never tensors."""
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


class BatchDrawer:
    """Draw every seed's next batch, the seeds in parallel threads.

    Sampling is a large share of a step (`benchmarks/bench_seeds.py`: ≈ 40 % for looped-gd) and
    its kernels (`normal_`) run on one core, so K > 1 draws are spread over as many threads as
    torch uses. Each seed samples from its own generator, so its numbers do not depend on the
    thread that draws them; one seed draws in the calling thread. Calling the drawer returns
    `(each generator's state just before its draw, the batches)`.
    """

    def __init__(self, seeds: list[_Sampled], batch_size: int) -> None:
        self.seeds, self.batch_size = seeds, batch_size
        workers = min(len(seeds), torch.get_num_threads())
        self.pool = ThreadPoolExecutor(workers) if workers > 1 else None

    def __enter__(self) -> BatchDrawer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)

    def _one(self, seed: _Sampled) -> tuple[Tensor, Any]:
        state = seed.generator.get_state()
        return state, seed.sample_batch(self.batch_size, seed.generator)

    def __call__(self) -> tuple[list[Tensor | None], list[Any]]:
        if self.pool is None:
            drawn = [self._one(s) for s in self.seeds]
        else:
            drawn = list(self.pool.map(self._one, self.seeds))
        return [s for s, _ in drawn], [b for _, b in drawn]


def stack_batches(batches: list[Any]) -> tuple[list[Tensor], Callable[[list[Tensor]], Any]]:
    """Stack K batches leafwise: `(tensors, rebuild)`, `tensors` the stacked tensor leaves (K, ...)
    and `rebuild(leaves)` the batch pytree around (unbatched) tensor leaves. Non-tensor leaves must
    be equal across the K batches (`ValueError` naming the first that is not)."""
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
        elif not all(same_value(leaf, other) for other in column[1:]):
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
