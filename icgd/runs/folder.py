"""A run folder's life, in one place: `running → passed | failed | diverged | interrupted | error`.

Layout of a run folder:

    config.yaml            the fully resolved config (written first)
    result.json            status/metrics/claims/provenance; "running" until the run ends
    error.log              the traceback, when the run crashed (status "error")
    arrays.safetensors     tensors the figures and later analysis need
    checkpoint.safetensors + training_state.pt + metrics.jsonl   written by the trainer
    figures/               drawn by icgd.reporting from the files above

Every write is atomic (temporary file, then rename), so a kill at any moment leaves the previous
version of each file. How each ending is recorded:

- the experiment returned: `passed`/`failed` from its claims, or `diverged` (last good weights
  kept by the trainer);
- a signal (`StopRequested`, or a plain KeyboardInterrupt): `interrupted`, the message naming the
  signal; the trainer has checkpointed the step it was at; `--resume` continues it;
- any other exception: `error` with its type and message in result.json and the traceback in
  error.log; checkpoints are left as they are; `--resume` retries it (and says so);
- a hard kill (SIGKILL, power loss): the folder still says `running`; `--resume` continues it.
"""

from __future__ import annotations

import os
import subprocess
import time
import traceback
from datetime import datetime
from pathlib import Path

import torch

from icgd.core.config import config_to_yaml, load_config
from icgd.core.errors import InputError
from icgd.core.io import atomic_write_text
from icgd.core.results import Claim, ErrorInfo, Provenance, Result, read_result, write_result
from icgd.core.version import __version__
from icgd.experiments.api import EXPERIMENTS, ExperimentConfig

ERROR_LOG = "error.log"
RESULT_FILE = "result.json"
RESUMABLE = ("running", "interrupted", "error")


def _empty_or_new(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def prepare_run_dir(name: str, config: ExperimentConfig, out: str | Path | None) -> Path:
    """Create the run folder; never reuse a folder that already holds something.

    Default `runs/NAME/STAMP-seed{seed}` (an ensemble: `STAMP-seeds{first}-{last}`).
    """
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        tail = f"seed{config.seed}"
        if config.seeds:
            tail = f"seeds{config.seeds[0]}-{config.seeds[-1]}"
        out = Path("runs") / name / f"{stamp}-{tail}"
        while out.exists():  # two runs in the same second
            out = out.with_name(out.name + "x")
    run_dir = Path(out)
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError("--out", f"{run_dir} is a file; give a folder")
    if not _empty_or_new(run_dir):
        raise InputError(
            "--out", f"{run_dir} is not empty; give a new folder, or continue it with --resume"
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise InputError("--out", f"cannot write to {run_dir} ({exc.strerror or exc})") from None
    return run_dir


def resumable(name: str, run_dir: str | Path) -> tuple[ExperimentConfig, Result]:
    """The saved config and last result of a run folder of experiment `name` that can be resumed
    (status running, interrupted or error); a finished run is refused."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError("--resume", f"{run_dir} is not a folder")
    previous = read_result(run_dir / RESULT_FILE)
    if previous.experiment != name:
        raise InputError("--resume", f"{run_dir} is a run of {previous.experiment!r}, not {name!r}")
    if previous.status not in RESUMABLE:
        # Resuming rewrites result.json; never put a finished run's verdict at risk.
        raise InputError(
            "--resume",
            f"{run_dir} is a finished run (status {previous.status!r}); only a running, "
            "interrupted or errored run can be resumed",
        )
    if not os.access(run_dir, os.W_OK):
        raise InputError("--resume", f"cannot write to {run_dir}")
    return load_config(EXPERIMENTS.get(name).Config, run_dir / "config.yaml"), previous


def git_commit() -> str | None:
    """The commit of the icgd source tree, when it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


class RunFolder:
    """Writes one run's `config.yaml`, `result.json` and `error.log` as the run goes."""

    def __init__(self, name: str, config: ExperimentConfig, run_dir: str | Path) -> None:
        self.name, self.config, self.path = name, config, Path(run_dir)
        self.started = time.perf_counter()
        self._commit = git_commit()

    def result(self, status: str, metrics=None, claims: list[Claim] = (), **extra) -> Result:
        """A `Result` of this run with the provenance filled in (wall time so far)."""
        config = self.config
        provenance = Provenance(
            icgd=__version__,
            git_commit=self._commit,
            torch=torch.__version__,
            device=config.device,
            dtype=config.dtype,
            seed=config.seed,
            wall_seconds=round(time.perf_counter() - self.started, 3),
        )
        return Result(
            experiment=self.name,
            status=status,
            config=config.model_dump(mode="json"),
            metrics=metrics or {},
            claims=list(claims),
            provenance=provenance,
            **extra,
        )

    def write(self, result: Result) -> Result:
        write_result(self.path / RESULT_FILE, result)
        return result

    def start(self, resume: bool = False, retrying: str = "") -> None:
        """`config.yaml` (a fresh run) and `result.json` with status "running"."""
        if not resume:
            atomic_write_text(self.path / "config.yaml", config_to_yaml(self.config))
        (self.path / ERROR_LOG).unlink(missing_ok=True)
        self.write(self.result("running", message=retrying or "started; not finished"))

    def interrupted(self, exc: BaseException) -> Result:
        """Status "interrupted", naming the signal (a plain KeyboardInterrupt: Ctrl-C)."""
        what = str(exc) if str(exc) else "interrupted by the user"
        return self.write(self.result("interrupted", message=f"{what}; continue with --resume"))

    def errored(self, exc: BaseException) -> Result:
        """Status "error" with the exception's type and message; the traceback to error.log.

        An `InputError` met during the run (e.g. a damaged checkpoint on resume) is the user's
        input, not a bug: its one line is the whole story, so it gets no error.log."""
        message = " ".join(str(exc).split())[:1000]
        info = ErrorInfo(type=type(exc).__name__, message=message)
        if isinstance(exc, InputError):
            return self.write(self.result("error", message="bad input during the run", error=info))
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        atomic_write_text(self.path / ERROR_LOG, text)
        return self.write(
            self.result("error", message=f"crashed; traceback in {ERROR_LOG}", error=info)
        )
