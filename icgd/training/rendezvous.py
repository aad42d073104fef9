"""The rendezvous: K seed threads hand their `train` calls to one coordinator that trains them
stacked (`icgd.training.ensemble.train_stacked`).

Each seed's experiment runs unmodified in its own thread, seated at the rendezvous; `train` (a
few lines at its top) hands its arguments to the thread's seat instead of training; the
coordinating thread collects one call from every seed still running, trains them together, and
hands each thread its `TrainResult` (see `icgd.runs.seeds`).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

from icgd.training.ensemble import TrainCall, signature, train_stacked
from icgd.training.loop import TrainResult

__all__ = ["EnsembleAborted", "Rendezvous", "seat_of_this_thread"]


class EnsembleAborted(RuntimeError):
    """Raised in a seed's thread when the ensemble stops because of another seed's failure."""


_local = threading.local()


@dataclass(frozen=True)
class _Seat:
    rendezvous: Rendezvous
    index: int

    def train(self, model, sample_batch, loss_fn, config, **kwargs) -> TrainResult:
        call = TrainCall(model, sample_batch, loss_fn, config, **kwargs)
        return self.rendezvous.submit(self.index, call)


def seat_of_this_thread() -> _Seat | None:
    """The rendezvous seat of the current thread, if it is a seed of an active ensemble."""
    return getattr(_local, "seat", None)


class Rendezvous:
    """Collects the `train` calls of K seed threads and runs them together.

    Protocol: seed thread k runs `with rendezvous.seated(k): <the experiment>`; every `train`
    call inside becomes `submit(k, call)`, which blocks until the coordinator has run it. The
    coordinating thread runs `serve()`: whenever every seat still occupied has a pending call,
    it takes them all, groups them by `signature` (structurally different models run one group
    after another) and runs each group with `train_stacked`. A seat is left when its experiment
    returns or raises, so a seed that trains fewer models (or none) never blocks the others.
    `abort(exc)` makes every waiting and later `submit` raise (the seeds then stop).
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
    def seated(self, index: int):
        _local.seat = _Seat(self, index)
        try:
            yield
        finally:
            _local.seat = None
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
