"""The rendezvous: K seed threads hand their `train` calls to one coordinator that trains them
stacked (`icgd.training.ensemble.train_stacked`).

Each seed's experiment runs unmodified in its own thread and trains through the trainer its run
context gives it (`RunContext.trainer`, see `icgd.runs.seeds`): for seed k of an ensemble, the
`Seat` k of one rendezvous, a callable with `train`'s signature that hands its arguments to the
coordinating thread instead of training, and returns that call's `TrainResult` once the
coordinator has trained it together with the other seeds' calls. The seat is an explicit object,
not a thread-local, so `train` itself never looks for one.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from icgd.core.errors import InputError
from icgd.training.ensemble import TrainCall, signature, train_stacked
from icgd.training.loop import TrainResult

__all__ = ["EnsembleAborted", "Rendezvous", "Seat"]


class EnsembleAborted(RuntimeError):
    """Raised in a seed's thread when the ensemble stops because of another seed's failure."""


@dataclass(frozen=True)
class Seat:
    """Seed `index`'s trainer at `rendezvous`: called as `train` is, it submits the call and
    waits for its result. `compile` is refused (a stack trains eagerly under `vmap`)."""

    rendezvous: Rendezvous
    index: int

    def __call__(
        self, model, sample_batch, loss_fn, config, *, compile: bool = False, **kwargs: Any
    ) -> TrainResult:
        if compile:
            raise InputError("compile", "a seed ensemble trains under vmap, which is not compiled")
        call = TrainCall(model, sample_batch, loss_fn, config, **kwargs)
        return self.rendezvous.submit(self.index, call)


class Rendezvous:
    """Collects the `train` calls of K seed threads and runs them together.

    Protocol: seed thread k runs `with rendezvous.seated(k) as trainer: <the experiment, training
    with trainer>`; every call of the trainer becomes `submit(k, call)`, which blocks until the
    coordinator has run it. The coordinating thread runs `serve()`: whenever every seat still
    occupied has a pending call, it takes them all, groups them by `signature` (structurally
    different models run one group after another) and runs each group with `train_stacked`. A
    seat is left when its experiment returns or raises, so a seed that trains fewer models (or
    none) never blocks the others. `abort(exc)` makes every waiting and later `submit` raise.
    """

    def __init__(self, n_seats: int) -> None:
        self._cond = threading.Condition()
        self._seated = set(range(n_seats))
        self._pending: dict[int, TrainCall] = {}
        self._results: dict[int, TrainResult | BaseException] = {}
        self._abort: BaseException | None = None
        self.batched_calls = [0] * n_seats  # per seat: calls trained stacked
        self.sequential_calls = [0] * n_seats  # per seat: calls trained one after another
        self.reasons: list[str] = []  # why some calls were not stacked

    @contextlib.contextmanager
    def seated(self, index: int) -> Iterator[Seat]:
        """Seat `index` for the block: yields its trainer; leaves the seat when the block ends."""
        try:
            yield Seat(self, index)
        finally:
            with self._cond:
                self._seated.discard(index)
                self._cond.notify_all()

    def submit(self, index: int, call: TrainCall) -> TrainResult:
        with self._cond:
            if self._abort is not None:
                raise self._abort
            self._pending[index] = call
            self._cond.notify_all()
            while index not in self._results:
                self._cond.wait()
            result = self._results.pop(index)
        if isinstance(result, BaseException):
            raise result
        return result

    def abort(self, exc: BaseException) -> None:
        with self._cond:
            if self._abort is None:
                self._abort = exc
            for index in self._pending:
                self._results[index] = exc
            self._pending.clear()
            self._cond.notify_all()

    def serve(self, poll_seconds: float = 0.1) -> None:
        """Run the seats' train calls until every seat is left (call from the coordinating
        thread; with a timeout on each wait so that Ctrl-C reaches it)."""
        while True:
            with self._cond:
                while self._seated and set(self._pending) != self._seated:
                    self._cond.wait(poll_seconds)
                if not self._seated:
                    return
                group = dict(sorted(self._pending.items()))
                self._pending.clear()
            self._run(group)

    def _run(self, group: dict[int, TrainCall]) -> None:
        buckets: dict[tuple, list[int]] = {}
        for index, call in group.items():
            buckets.setdefault(signature(call), []).append(index)
        for indices in buckets.values():
            try:
                outcome = train_stacked([group[i] for i in indices])
            except BaseException as exc:
                with self._cond:
                    for i in group:
                        if i not in self._results:
                            self._results[i] = exc
                    self._cond.notify_all()
                raise
            for i in indices:
                if outcome.batched:
                    self.batched_calls[i] += 1
                else:
                    self.sequential_calls[i] += 1
            if not outcome.batched and len(indices) > 1:
                self.reasons.append(outcome.reason)
            with self._cond:
                for i, result in zip(indices, outcome.results, strict=True):
                    self._results[i] = result
                self._cond.notify_all()
