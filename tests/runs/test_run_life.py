"""A run folder's life: a crash is `error` (error.log, exit 3, `--resume` retries it), SIGTERM and
SIGHUP checkpoint the current step and record `interrupted` (exit 143 / 129) and the resumed run
reaches the numbers of an uninterrupted one, memory is checked before anything is written, and
the Python API (`icgd.run`, `icgd.load_run`) gives what the CLI gives."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import icgd
from icgd.analysis import effective_preconditioners
from icgd.cli import main
from icgd.core.errors import InputError
from icgd.core.results import read_result
from icgd.experiments.api import EXPERIMENTS
from icgd.experiments.looped_gd import LoopedGDConfig
from icgd.runs.memory import check_memory
from icgd.training.checkpoint import load_checkpoint, read_checkpoint_metadata

SMOKE = list(EXPERIMENTS.get("looped-gd").presets["smoke"])


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    """One uninterrupted smoke run of looped-gd through the Python API."""
    out = tmp_path_factory.mktemp("smoke") / "run"
    run = icgd.run("looped-gd", preset="smoke", out=out)
    assert run.status in ("passed", "failed")
    return out


def test_load_run_gives_typed_config_claims_arrays_and_models(smoke_run):
    run = icgd.load_run(smoke_run)
    assert isinstance(run.config, LoopedGDConfig) and run.config.train.steps == 30
    assert [c.name for c in run.claims][0] == "u_vanishes"
    assert set(run.models) == {"", "stacked"}
    # the rebuilt model holds the checkpoint's weights and predicts like the saved preconditioner
    reference = type(run.model)(run.model.config)
    load_checkpoint(smoke_run, reference)
    saved, rebuilt = run.model.state_dict(), reference.state_dict()
    assert saved.keys() == rebuilt.keys()
    assert all(torch.equal(saved[k], rebuilt[k]) for k in saved)
    gamma = effective_preconditioners(*run.model.layer_matrices())[0].detach()
    torch.testing.assert_close(run.arrays["A"], gamma.T, rtol=0, atol=0)
    assert run.history[0]["step"] == 0 and run.seeds == []


def test_python_api_equals_the_cli(smoke_run, tmp_path, capsys):
    code = main(["run", "looped-gd", "--preset", "smoke", "--out", str(tmp_path / "cli")])
    capsys.readouterr()
    assert code in (0, 1)
    assert read_result(tmp_path / "cli" / "result.json").metrics == icgd.load_run(smoke_run).metrics


# --- a crash is an error ------------------------------------------------------------------------


def _crash(config, ctx):
    raise ZeroDivisionError("boom in the analysis")


def test_a_crash_records_error_and_the_traceback(monkeypatch, tmp_path, capsys):
    experiment = EXPERIMENTS.get("looped-gd")
    monkeypatch.setattr(experiment, "run", _crash)
    folder = tmp_path / "run"
    code = main(["run", "looped-gd", "--preset", "smoke", "--out", str(folder)])
    err = capsys.readouterr().err
    assert code == 3
    assert len(err.strip().splitlines()) == 1 and str(folder) in err and "Traceback" not in err
    result = read_result(folder / "result.json")
    assert result.status == "error"
    assert result.error.type == "ZeroDivisionError" and "boom" in result.error.message
    assert "ZeroDivisionError: boom in the analysis" in (folder / "error.log").read_text()

    with pytest.raises(ZeroDivisionError):  # --debug re-raises the crash itself
        main(["--debug", "run", "looped-gd", "--resume", str(folder)])

    monkeypatch.undo()  # fixed: --resume retries the errored run, and says so
    code = main(["run", "looped-gd", "--resume", str(folder)])
    out = capsys.readouterr().out
    assert code in (0, 1) and "retrying a run that crashed" in out
    assert read_result(folder / "result.json").status in ("passed", "failed")
    assert not (folder / "error.log").exists()


# --- signals: checkpoint at the current step, interrupted, resume to the same numbers ----------

_SIGNALLING_CLI = textwrap.dedent(
    """
    import os, signal, sys
    import icgd.experiments.common as common
    from icgd.cli import main

    plain = common.train

    def train(*args, **kwargs):  # send the signal once, during the first model's step 15
        user = kwargs.get("progress")

        def progress(step, total, record):
            if step == 15 and not os.environ.get("SENT"):
                os.environ["SENT"] = "1"
                os.kill(os.getpid(), getattr(signal, sys.argv[1]))
            if user is not None:
                user(step, total, record)

        kwargs["progress"] = progress
        return plain(*args, **kwargs)

    common.train = train
    sys.exit(main(sys.argv[2:]))
    """
)


@pytest.mark.parametrize("name, code", [("SIGTERM", 143), ("SIGHUP", 129)])
def test_a_signal_checkpoints_the_current_step_and_resumes_exactly(smoke_run, tmp_path, name, code):
    folder = tmp_path / "run"
    args = [sys.executable, "-c", _SIGNALLING_CLI, name, "run", "looped-gd", "--preset", "smoke"]
    done = subprocess.run([*args, "--out", str(folder)], capture_output=True, text=True)
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    result = read_result(folder / "result.json")
    assert result.status == "interrupted" and name in result.message
    # the step after the signal, not the last multiple of checkpoint_every (10)
    assert read_checkpoint_metadata(folder)["step"] == "16"

    env = dict(os.environ, SENT="1")  # no second signal
    resumed = subprocess.run(
        [*args[:4], "run", "looped-gd", "--resume", str(folder)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert resumed.returncode in (0, 1), resumed.stderr
    full = read_result(smoke_run / "result.json")
    again = read_result(folder / "result.json")
    assert again.metrics == full.metrics and again.claims == full.claims
    assert (folder / "metrics.jsonl").read_bytes() == (smoke_run / "metrics.jsonl").read_bytes()


# --- memory is checked before it is spent ---------------------------------------------------


def test_sizes_too_big_for_memory_exit_2_and_write_nothing(tmp_path, capsys):
    folder = tmp_path / "huge"
    code = main(["run", "looped-gd", "--set", "n=100000", "d=1024", "--out", str(folder)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: memory:") and len(err.strip().splitlines()) == 1
    assert "TB" in err and "train.batch_size" in err and "test_batch_size" in err
    assert not folder.exists()


def test_memory_check_scales_with_seeds():
    experiment = EXPERIMENTS.get("looped-gd")
    config = LoopedGDConfig()
    need = check_memory(experiment, config, available=10**15)
    assert need == experiment.memory(config).total > 0
    with pytest.raises(InputError, match="for 4 seeds"):
        check_memory(experiment, LoopedGDConfig(seeds=[0, 1, 2, 3]), available=3 * need)


def test_compile_with_seeds_is_refused(tmp_path, capsys):
    folder = tmp_path / "ens"
    code = main(
        [
            "run",
            "looped-gd",
            "--preset",
            "smoke",
            "--seeds",
            "0,1",
            "--compile",
            "--out",
            str(folder),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: compile:") and len(err.strip().splitlines()) == 1
    assert not folder.exists()
