"""Stop requests: a signal asks the training loop to checkpoint at its current step and stop.

A run is stopped by SIGINT (Ctrl-C), SIGTERM (what Slurm and Kubernetes send on preemption) or
SIGHUP (a closed terminal). `icgd.runs` installs one handler for the three, which calls
`request_stop(signum)`:

- inside a training loop (`training()` is active), the request is only recorded; the loop reads
  it after each update, writes a checkpoint at that step and raises `StopRequested`, so a resumed
  run loses no work and continues to the same numbers;
- anywhere else (analysis, theory, baselines) `request_stop` raises `StopRequested` at once:
  there is no state worth saving there, the run resumes from its last checkpoint;
- a second signal while a request is pending raises at once (an impatient second Ctrl-C).

`StopRequested` derives from `KeyboardInterrupt`, so code that already treats Ctrl-C as "stop
and record `interrupted`" treats every signal the same. Its `signum` gives the exit code
(128 + signum: 130, 143, 129).

Module state, not a thread-local: signals are delivered to the main thread, where the trainer of
a single run and the coordinator of a seed ensemble both run.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

__all__ = ["StopRequested", "pending", "request_stop", "training"]

_state = {"pending": None, "depth": 0}


class StopRequested(KeyboardInterrupt):
    """Raised to stop a run on a signal; `signum` is the signal's number."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = int(signum)


def request_stop(signum: int) -> None:
    """Record a stop request (inside `training()`), or raise `StopRequested` (module docstring)."""
    if _state["depth"] > 0 and _state["pending"] is None:
        _state["pending"] = int(signum)
        return
    _state["pending"] = None
    raise StopRequested(signum)


def pending() -> int | None:
    """The signal number of a recorded stop request, or None."""
    return _state["pending"]


@contextlib.contextmanager
def training() -> Iterator[None]:
    """Mark a training loop: stop requests inside are recorded for the loop to act on."""
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        if _state["depth"] == 0:
            _state["pending"] = None
