"""What the training loop records: its result, the lines of `metrics.jsonl`, and the training
state that makes a checkpoint resumable.

`metrics.jsonl` is appended line by line (one JSON object a line, non-finite numbers as null:
JSON has no NaN); on resume it is first rewritten from the records stored in the checkpoint,
dropping lines written after it, so it equals the file of an uninterrupted run. A checkpoint is
two files (weights, then training state), each written atomically; `sigint_deferred` holds Ctrl-C
until both are written, so a plain Ctrl-C (no handler installed) never leaves a mismatched pair.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from icgd.core.errors import InputError
from icgd.core.io import atomic_write_text
from icgd.training.checkpoint import (
    METRICS_FILE,
    STATE_FILE,
    load_checkpoint,
    load_training_state,
)
from icgd.training.config import TrainConfig

__all__ = [
    "RESERVED_KEYS",
    "STATE_FORMAT",
    "SeedLogs",
    "TrainResult",
    "check_resumable",
    "clean",
    "load_checkpoints",
    "metrics_writer",
    "sigint_deferred",
    "training_state",
]

STATE_FORMAT = 1
# Config fields that may change between a run and its resumption: they change what is logged or
# saved, not the trajectory of the weights (for `steps`, only under a cosine schedule does it).
_RESUME_MAY_CHANGE = {"steps", "eval_every", "eval_batch_size", "checkpoint_every"}
RESERVED_KEYS = {"step", "kind", "loss", "lr"}  # the keys `on_eval` may not return


@dataclass(frozen=True)
class TrainResult:
    """What `train` did (for one model, or for one seed of a stack).

    `history` holds the eval records (the `kind == "eval"` lines of `metrics.jsonl`), starting
    with step 0 of a fresh run. `final_eval_loss` is the held-out loss of the model as returned
    (after a divergence: of the restored last finite weights). `message` says, for a diverged run,
    at which step which quantity was non-finite.
    """

    status: Literal["completed", "diverged"]
    steps_done: int
    history: list[dict] = field(default_factory=list)
    final_eval_loss: float = math.nan
    message: str = ""


def clean(value: Any) -> Any:
    """A JSON-safe number: Python float, non-finite as None (JSON has no NaN)."""
    value = float(value.detach()) if isinstance(value, Tensor) else float(value)
    return value if math.isfinite(value) else None


def _json_line(record: dict) -> str:
    return json.dumps(record, allow_nan=False) + "\n"


@contextlib.contextmanager
def metrics_writer(run_dir: Path | None, records: list[dict]) -> Iterator[Callable[[dict], None]]:
    """`write(record)`: append to `records` and, with a run folder, one line to metrics.jsonl.

    The file is first (atomically) rewritten to hold exactly `records`: empty for a fresh run,
    the checkpoint's records on resume.
    """
    if run_dir is None:
        yield records.append
        return
    path = run_dir / METRICS_FILE
    atomic_write_text(path, "".join(_json_line(r) for r in records))
    with open(path, "a", encoding="utf-8") as handle:

        def write(record: dict) -> None:
            records.append(record)
            handle.write(_json_line(record))
            handle.flush()

        yield write


class SeedLogs:
    """Where each seed's records go: its `metrics.jsonl` (`metrics_writer`; `records[k]` holds
    them) and, with a folder in `tensorboards[k]`, its TensorBoard log (`boards[k]`: the records
    as scalars, and the weight heat maps the loop draws); all entered on `stack`.
    `resume_step`: the checkpoint step a resumed run starts from (later events are purged)."""

    def __init__(
        self,
        stack: contextlib.ExitStack,
        run_dirs: list[Path | None],
        records: list[list[dict]],
        tensorboards: list[str | Path | None],
        resume_step: int | None,
    ) -> None:
        self.boards: list[Any] = [None] * len(run_dirs)
        for k, folder in enumerate(tensorboards):
            if folder is not None:
                from icgd.training.tensorboard import TensorBoardLog  # optional: import late

                self.boards[k] = stack.enter_context(
                    TensorBoardLog(folder, resume_step=resume_step)
                )
        self.lines = [
            stack.enter_context(metrics_writer(d, r))
            for d, r in zip(run_dirs, records, strict=True)
        ]

    def write(self, k: int, record: dict) -> None:
        """Seed k's record: to its metrics.jsonl and TensorBoard log."""
        self.lines[k](record)
        if self.boards[k] is not None:
            self.boards[k].record(record)


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C until the block ends, then raise KeyboardInterrupt (main thread only).

    Used around the two checkpoint writes so an interrupt cannot fall between them.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        restore = previous if previous is not None else signal.default_int_handler
        signal.signal(signal.SIGINT, restore)
    if received:
        raise KeyboardInterrupt


def check_resumable(state: dict, config: TrainConfig, file: Path, step: int) -> None:
    """Refuse (`InputError` naming `file`) a training state of another format, or of a training
    config that differs from `config` in a field that changes the trajectory of the weights."""
    if state.get("format") != STATE_FORMAT:
        raise InputError(str(file), f"unknown training-state format {state.get('format')!r}")
    try:
        saved = TrainConfig.model_validate_json(state["config"]).model_dump()
    except Exception:
        raise InputError(str(file), "training state holds no valid training config") from None
    now = config.model_dump()
    for key in now:
        if key not in _RESUME_MAY_CHANGE and saved.get(key) != now[key]:
            raise InputError(
                str(file),
                f"cannot resume with a different training config: {key} was {saved.get(key)!r}, "
                f"now {now[key]!r}",
            )
    if step > config.steps:
        raise InputError(str(file), f"checkpoint is at step {step}, past steps={config.steps}")


def training_state(
    config: TrainConfig,
    optimizer: dict,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    batch_state: Tensor | None,
    records: list[dict],
) -> dict[str, Any]:
    """What a checkpoint stores beside the weights: everything the remaining updates depend on
    (`optimizer`: the optimizer's `state_dict` of this seed; `batch_state`: the generator state
    just before the batch in use was drawn; `records`: the lines of metrics.jsonl so far)."""
    return {
        "format": STATE_FORMAT,
        "config": config.model_dump_json(),
        "optimizer": optimizer,
        "scheduler": scheduler.state_dict(),
        "generator_state": generator.get_state(),
        "batch_generator_state": batch_state,
        "records": records,
    }


def load_checkpoints(
    run_dirs: list[Path | None], models: list[nn.Module], config: TrainConfig
) -> tuple[int, list[dict]]:
    """Load each seed's checkpoint from its run folder into its model: `(step, training
    states)`, each state checked against `config` (`check_resumable`); the seeds must be at one
    step."""
    states, steps = [], set()
    for run_dir, model in zip(run_dirs, models, strict=True):
        assert run_dir is not None
        step = load_checkpoint(run_dir, model)
        state = load_training_state(run_dir, expected_step=step)
        check_resumable(state, config, run_dir / STATE_FILE, step)
        states.append(state)
        steps.add(step)
    if len(steps) > 1:
        raise ValueError(f"the seeds' checkpoints are at different steps {sorted(steps)}")
    return steps.pop(), states
