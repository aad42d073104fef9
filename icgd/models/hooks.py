"""Named hook points on activations, in the style of TransformerLens' `HookPoint`.

A model owns one `HookPoints` object and passes every interesting activation through it by name:

    Z = self.hook_points("hook_z.3", Z)

That call is the identity unless a hook is attached for that name, and hooks are attached only
inside the `attach` context manager, which always removes them on exit (exceptions included).
Names are plain strings made at call time, so a looped model can expose `hook_z.{t}` for any
number of loops; a hook is matched by an exact name or by a predicate `name -> bool`.

A hook is `fn(tensor, name) -> tensor | None`: returning a tensor replaces the activation
(activation patching); returning `None` keeps it (observation, e.g. caching).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from torch import Tensor

HookFn = Callable[[Tensor, str], Tensor | None]
NameMatcher = str | Callable[[str], bool]
NamesFilter = str | Sequence[str] | Callable[[str], bool] | None


def _matches(matcher: NameMatcher, name: str) -> bool:
    return matcher == name if isinstance(matcher, str) else bool(matcher(name))


def names_filter_to_predicate(names_filter: NamesFilter) -> Callable[[str], bool]:
    """`None` → every name; a string → that name; a list → those names; a callable as is."""
    if names_filter is None:
        return lambda name: True
    if isinstance(names_filter, str):
        return lambda name: name == names_filter
    if callable(names_filter):
        return names_filter
    allowed = frozenset(names_filter)
    return lambda name: name in allowed


class HookPoints:
    """The registry of hooks currently attached to one model (empty outside `attach`)."""

    def __init__(self) -> None:
        self._hooks: list[tuple[NameMatcher, HookFn]] = []

    def active(self, name: str) -> bool:
        """Whether some hook wants `name`; lets a model skip computing inspection-only tensors."""
        return any(_matches(matcher, name) for matcher, _ in self._hooks)

    def __call__(self, name: str, tensor: Tensor) -> Tensor:
        """Run the hooks attached to `name` in order; identity when there are none."""
        for matcher, fn in self._hooks:
            if _matches(matcher, name):
                out = fn(tensor, name)
                if out is not None:
                    tensor = out
        return tensor

    @contextmanager
    def attach(self, fwd_hooks: Sequence[tuple[NameMatcher, HookFn]]) -> Iterator[None]:
        """Attach `[(name or predicate, fn), ...]` for the duration of the `with` block."""
        added = [(matcher, fn) for matcher, fn in fwd_hooks]
        for matcher, fn in added:
            if not (isinstance(matcher, str) or callable(matcher)) or not callable(fn):
                raise TypeError("fwd_hooks must be a list of (name or predicate, callable) pairs")
        self._hooks.extend(added)
        try:
            yield
        finally:
            for entry in added:
                # remove by identity, so nested `attach` blocks with equal hooks stay independent
                for i in range(len(self._hooks) - 1, -1, -1):
                    if self._hooks[i] is entry:
                        del self._hooks[i]
                        break

    def __len__(self) -> int:
        return len(self._hooks)


def caching_hook(cache: dict[str, Tensor]) -> HookFn:
    """A hook that stores every activation it sees, detached from the graph, it sees in `cache`."""

    def hook(tensor: Tensor, name: str) -> None:
        cache[name] = tensor.detach()
        return None

    return hook


class HookedMixin:
    """`hooks` and the caching run shared by the models that hold a `hook_points: HookPoints`.

    `hooks(fwd_hooks)`: attach `[(name or predicate, fn(tensor, name) -> tensor | None)]` inside a
    `with` block; always removed on exit. `_run_cached(names_filter, *args, **kwargs)`:
    `(forward(*args, **kwargs), cache)`, cache mapping hook name → detached activation for the
    names passing the filter (None: all; a name; a list of names; a predicate). Each model keeps
    its own `run_with_cache` signature and calls `_run_cached`.
    """

    hook_points: HookPoints

    @contextmanager
    def hooks(self, fwd_hooks: Sequence[tuple[NameMatcher, HookFn]]) -> Iterator[Any]:
        with self.hook_points.attach(fwd_hooks):
            yield self

    def _run_cached(self, names_filter: NamesFilter, *args: Any, **kwargs: Any) -> tuple[Any, dict]:
        cache: dict[str, Tensor] = {}
        with self.hooks([(names_filter_to_predicate(names_filter), caching_hook(cache))]):
            out = self.forward(*args, **kwargs)  # type: ignore[attr-defined]
        return out, cache
