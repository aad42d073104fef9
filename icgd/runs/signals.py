"""SIGINT, SIGTERM and SIGHUP stop a run the same way: checkpoint at the current step, record
`interrupted`, exit 128 + signal (130, 143, 129).

`stop_on_signals()` installs one handler for the three (main thread only; elsewhere, e.g. inside
a Ray worker thread, it does nothing) that hands the signal to `icgd.training.interrupt`: inside
a training loop the loop checkpoints its current step and raises `StopRequested`; elsewhere
`StopRequested` is raised at once. The previous handlers come back when the block ends.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from icgd.training.interrupt import StopRequested, request_stop

__all__ = ["STOP_SIGNALS", "StopRequested", "exit_code", "stop_on_signals"]

STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def exit_code(exc: BaseException) -> int:
    """128 + the signal number of a `StopRequested` (SIGINT 130, SIGTERM 143, SIGHUP 129); a
    plain KeyboardInterrupt is Ctrl-C: 130."""
    return 128 + (exc.signum if isinstance(exc, StopRequested) else int(signal.SIGINT))


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Route SIGINT/SIGTERM/SIGHUP to `icgd.training.interrupt.request_stop` for the block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    for s in STOP_SIGNALS:
        signal.signal(s, lambda signum, frame: request_stop(signum))
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
