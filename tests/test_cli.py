"""The `icgd` command line: a tiny run end to end, and the robustness contract.

Bad input (config, CLI flag, file) gets exit code 2 and exactly one line on stderr,
`error: <field>: <message>`, never a traceback, and nothing already written is lost. An interrupted
run resumes to the same numbers as an uninterrupted one.

The CLI runs in-process through `icgd.cli.main` (which returns the exit code), and as a subprocess
for a few cases to show what a user sees. One tiny completed run is shared by the module.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from icgd.cli import main
from icgd.core.results import Provenance, Result, read_result, write_result
from icgd.experiments.api import RunContext

TINY = [
    "--set",
    "train.steps=30",
    "train.batch_size=256",
    "train.eval_batch_size=256",
    "train.eval_every=10",
    "train.checkpoint_every=10",
    "theory_samples=2000",
    "test_batch_size=1024",
]
RUN_FILES = [
    "result.json",
    "config.yaml",
    "checkpoint.safetensors",
    "training_state.pt",
    "metrics.jsonl",
    "arrays.safetensors",
]


def cli(argv: list, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def quiet_main(argv: list) -> tuple[int, str, str]:
    """`main` with stdout/stderr captured, for module-scoped fixtures (no capsys there)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def assert_input_error(code: int, err: str, *words: str) -> str:
    """Exit 2, one non-empty stderr line starting with 'error:', naming every word; no traceback."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, by relative path, with its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, int, str]:
    """One completed tiny looped-gd run (seed 0): (folder, exit code, stdout)."""
    folder = tmp_path_factory.mktemp("tiny") / "run"
    code, out, err = quiet_main(["run", "looped-gd", "--out", folder, *TINY])
    assert "Traceback" not in err
    return folder, code, out


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory) -> Path:
    """The same tiny run, stopped by Ctrl-C at step 15 of the looped model (checkpoint at 10)."""
    folder = tmp_path_factory.mktemp("interrupted") / "run"
    original = RunContext.progress_for

    def interrupting(self, task):
        inner = original(self, task)

        def progress(step, total, record):
            if task == "looped" and step == 15:
                raise KeyboardInterrupt
            if inner is not None:
                inner(step, total, record)

        return progress

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RunContext, "progress_for", interrupting)
        code, _, err = quiet_main(["run", "looped-gd", "--out", folder, *TINY])
    assert code == 130, err
    assert "interrupted" in err and "Traceback" not in err
    return folder


# --- a tiny run end to end ---------------------------------------------------------------------


def test_list(capsys):
    code, out, _ = cli(["list"], capsys)
    assert code == 0
    assert "looped-gd" in out


def test_tiny_run_writes_a_complete_folder(tiny_run):
    folder, code, out = tiny_run
    result = read_result(folder / "result.json")
    assert result.status in ("passed", "failed")
    assert code == (0 if result.status == "passed" else 1)  # the exit code follows the verdict
    for name in RUN_FILES:
        assert (folder / name).is_file(), name
    assert len(list((folder / "figures").glob("*.png"))) >= 1
    # the verdict table and the status line were printed
    assert f"looped-gd: {result.status.upper()}" in out
    assert "claim" in out and "verdict" in out
    assert f"status: {result.status}" in out
    assert len(result.claims) >= 5
    assert records(folder / "metrics.jsonl")[-1]["step"] == 30
    assert result.config["train"]["steps"] == 30 and result.provenance.seed == 0


def test_show_prints_claims(tiny_run, capsys):
    folder, _, _ = tiny_run
    before = snapshot(folder)
    code, out, err = cli(["show", folder], capsys)
    assert code == 0, err
    result = read_result(folder / "result.json")
    assert f"looped-gd: {result.status.upper()}" in out
    assert "u → 0" in out  # a claim statement
    assert snapshot(folder) == before


def test_show_on_a_folder_that_is_not_a_run(tmp_path, capsys):
    code, _, err = cli(["show", tmp_path], capsys)
    assert_input_error(code, err, str(tmp_path / "result.json"))
    code, _, err = cli(["show", tmp_path / "missing"], capsys)
    assert_input_error(code, err, "missing", "not a folder")


def test_show_on_a_corrupted_result(tmp_path, capsys):
    (tmp_path / "result.json").write_text('{"experiment": "looped-gd"')
    code, _, err = cli(["show", tmp_path], capsys)
    assert_input_error(code, err, "result.json")


# --- bad input: exit 2, one line naming the field, nothing written -----------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["run", "nope"], ["experiment", "'nope'", "looped-gd"]),
        (["run", "looped-gd", "--set", "lopps=3"], ["lopps", "allowed keys", "loops"]),
        (["run", "looped-gd", "--set", "train.stpes=3"], ["train.stpes", "steps"]),
        (["run", "looped-gd", "--set", "d=abc"], ["error: d:", "integer", "abc"]),
        (["run", "looped-gd", "--set", "d=true"], ["error: d:", "number"]),
        (["run", "looped-gd", "--set", "d=0"], ["error: d:", "greater than 0"]),
        (["run", "looped-gd", "--set", "loops=-1"], ["error: loops:", "greater than 0"]),
        (["run", "looped-gd", "--set", "noise_std=-0.5"], ["error: noise_std:"]),
        (["run", "looped-gd", "--set", "eigenvalues=[1,2]"], ["eigenvalues", "length d=5"]),
        (
            ["run", "looped-gd", "--set", "eigenvalues=[1,1,0,1,1]"],
            ["eigenvalues", "greater than 0"],
        ),
        (["run", "looped-gd", "--set", "covariance=banana"], ["covariance", "'rotated'", "banana"]),
        (["run", "looped-gd", "--set", "d"], ["--set", "key=value"]),
        (["run", "looped-gd", "--set", "d=3", "loops"], ["--set", "key=value"]),
        (["run", "looped-gd", "--device", "tpu"], ["--device", "cpu", "cuda"]),
        (["run", "looped-gd", "--dtype", "float16"], ["--dtype", "float32", "float64"]),
        (["sweep", "looped-gd", "--dtype", "half"], ["--dtype", "float32", "float64"]),
        (["run", "optimal-transport", "--dtype", "float32"], ["dtype", "float64"]),
        (["run", "looped-gd", "--seed", "-1"], ["--seed", "non-negative"]),
        (["run", "looped-gd", "--seed", "abc"], ["--seed"]),
        (["run", "looped-gd", "--bogus"], ["--bogus"]),
        (["run"], ["Missing argument", "name"]),
        (["frobnicate"], ["frobnicate"]),
    ],
)
def test_bad_input_is_one_line_exit_2(args, words, tmp_path, capsys):
    out = tmp_path / "never"
    code, _, err = cli([*args, "--out", out], capsys)
    assert_input_error(code, err, *words)
    assert not out.exists()  # nothing is written on bad input


def test_config_file_errors(tmp_path, capsys):
    out = tmp_path / "never"
    missing = tmp_path / "missing.yaml"
    code, _, err = cli(["run", "looped-gd", "--config", missing, "--out", out], capsys)
    assert_input_error(code, err, str(missing), "cannot read")

    malformed = tmp_path / "malformed.yaml"
    malformed.write_text("d: 3\ntrain: [1, 2\n")
    code, _, err = cli(["run", "looped-gd", "--config", malformed, "--out", out], capsys)
    assert_input_error(code, err, str(malformed), "YAML")

    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("d: 3\ntrain:\n  optimizer:\n    lrr: 0.1\n")
    code, _, err = cli(["run", "looped-gd", "--config", unknown, "--out", out], capsys)
    assert_input_error(code, err, "train.optimizer.lrr", "allowed keys", "lr")

    not_a_mapping = tmp_path / "list.yaml"
    not_a_mapping.write_text("- 1\n- 2\n")
    code, _, err = cli(["run", "looped-gd", "--config", not_a_mapping, "--out", out], capsys)
    assert_input_error(code, err, str(not_a_mapping), "mapping")

    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x80garbage")
    code, _, err = cli(["run", "looped-gd", "--config", binary, "--out", out], capsys)
    assert_input_error(code, err, str(binary))

    code, _, err = cli(["run", "looped-gd", "--config", tmp_path, "--out", out], capsys)
    assert_input_error(code, err, str(tmp_path))
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_cpu_machine(tmp_path, capsys):
    code, _, err = cli(["run", "looped-gd", "--device", "cuda", "--out", tmp_path / "x"], capsys)
    assert_input_error(code, err, "device", "cuda", "cpu")
    code, _, err = cli(
        ["run", "looped-gd", "--set", "device=cuda", "--out", tmp_path / "x"], capsys
    )
    assert_input_error(code, err, "device", "cpu")
    assert not (tmp_path / "x").exists()


def test_out_folder_that_is_not_empty_is_left_alone(tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_bytes(b"precious\x00bytes")
    (out / "sub").mkdir()
    (out / "sub" / "result.json").write_text("{}")
    before = snapshot(out)
    code, _, err = cli(["run", "looped-gd", "--out", out, *TINY], capsys)
    assert_input_error(code, err, "--out", "not empty", "--resume")
    assert snapshot(out) == before
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "sub"]


def test_out_unwritable(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    code, _, err = cli(["run", "looped-gd", "--out", afile / "sub", *TINY], capsys)
    assert_input_error(code, err, "--out", "cannot write")
    code, _, err = cli(["run", "looped-gd", "--out", afile, *TINY], capsys)
    assert_input_error(code, err, "--out", "is a file")
    assert afile.read_text() == "keep me"


def fake_result(experiment: str, status: str = "interrupted") -> Result:
    provenance = Provenance(
        icgd="0.1.0", torch="x", device="cpu", dtype="float32", seed=0, wall_seconds=0.0
    )
    return Result(
        experiment=experiment,
        status=status,
        config={},
        metrics={"loss": 1.0},
        claims=[],
        provenance=provenance,
    )


def test_resume_of_another_experiment(tmp_path, capsys):
    folder = tmp_path / "other"
    write_result(folder / "result.json", fake_result("other"))
    (folder / "config.yaml").write_text("whatever: 1\n")
    before = snapshot(folder)
    code, _, err = cli(["run", "looped-gd", "--resume", folder], capsys)
    assert_input_error(code, err, "--resume", "'other'", "'looped-gd'")
    assert snapshot(folder) == before


def test_resume_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    code, _, err = cli(["run", "looped-gd", "--resume", tmp_path], capsys)
    assert_input_error(code, err, "result.json")
    code, _, err = cli(["run", "looped-gd", "--resume", tmp_path / "missing"], capsys)
    assert_input_error(code, err, "--resume", "not a folder")
    assert list(tmp_path.iterdir()) == []


def test_resume_of_a_finished_run_keeps_it(tiny_run, capsys):
    folder, _, _ = tiny_run
    before = snapshot(folder)
    code, _, err = cli(["run", "looped-gd", "--resume", folder], capsys)
    assert_input_error(code, err, "--resume", "finished")
    assert snapshot(folder) == before


def test_resume_with_other_flags(tiny_run, capsys):
    folder, _, _ = tiny_run
    before = snapshot(folder)
    for extra in (
        ["--set", "d=3"],
        ["--seed", "1"],
        ["--out", folder],
        ["d=3"],
        ["--dtype", "float64"],
        ["--compile"],
    ):
        code, _, err = cli(["run", "looped-gd", "--resume", folder, *extra], capsys)
        assert_input_error(code, err, "--resume")
    assert snapshot(folder) == before


def test_resume_with_a_corrupted_checkpoint(interrupted_run, tmp_path, capsys):
    folder = tmp_path / "run"
    shutil.copytree(interrupted_run, folder)
    checkpoint = folder / "checkpoint.safetensors"
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    before = snapshot(folder)
    code, _, err = cli(["run", "looped-gd", "--resume", folder], capsys)
    assert_input_error(code, err, "checkpoint.safetensors")
    after = snapshot(folder)
    # everything but result.json is byte for byte what it was (no error.log for bad input)
    assert {k: v for k, v in after.items() if k != "result.json"} == {
        k: v for k, v in before.items() if k != "result.json"
    }
    result = read_result(folder / "result.json")
    assert result.status == "error" and result.error.type == "InputError"
    assert "checkpoint.safetensors" in result.error.message


def test_resume_with_a_missing_training_state(interrupted_run, tmp_path, capsys):
    folder = tmp_path / "run"
    shutil.copytree(interrupted_run, folder)
    (folder / "training_state.pt").unlink()
    code, _, err = cli(["run", "looped-gd", "--resume", folder], capsys)
    assert_input_error(code, err, "training_state.pt")


# --- interruption, resumption and determinism --------------------------------------------------


def test_interrupted_folder_says_so(interrupted_run):
    result = read_result(interrupted_run / "result.json")
    assert result.status == "interrupted" and result.metrics == {}
    assert result.config["train"]["steps"] == 30
    assert (interrupted_run / "config.yaml").is_file()
    assert max(r["step"] for r in records(interrupted_run / "metrics.jsonl")) == 15
    assert not (interrupted_run / "arrays.safetensors").exists()


def test_resume_continues_to_the_same_numbers(tiny_run, interrupted_run, tmp_path, capsys):
    full, _, _ = tiny_run
    folder = tmp_path / "run"
    shutil.copytree(interrupted_run, folder)  # keep the interrupted fixture for other tests
    code, out, err = cli(["run", "looped-gd", "--resume", folder], capsys)
    assert code in (0, 1), err
    assert "Traceback" not in err
    a, b = read_result(full / "result.json"), read_result(folder / "result.json")
    assert b.status == a.status
    assert b.metrics == a.metrics  # exactly, every metric
    assert b.claims == a.claims and b.config == a.config
    assert (folder / "metrics.jsonl").read_bytes() == (full / "metrics.jsonl").read_bytes()
    assert (folder / "stacked" / "metrics.jsonl").read_bytes() == (
        full / "stacked" / "metrics.jsonl"
    ).read_bytes()
    assert (folder / "config.yaml").read_bytes() == (full / "config.yaml").read_bytes()
    for name in RUN_FILES:
        assert (folder / name).is_file(), name


def test_same_seed_same_numbers_other_seed_other_numbers(tiny_run, tmp_path):
    full, _, _ = tiny_run
    code, _, err = quiet_main(["run", "looped-gd", "--out", tmp_path / "again", *TINY])
    assert code in (0, 1), err
    again = read_result(tmp_path / "again" / "result.json")
    assert again.metrics == read_result(full / "result.json").metrics

    code, _, err = quiet_main(["run", "looped-gd", "--seed", "1", "--out", tmp_path / "s1", *TINY])
    assert code in (0, 1), err
    other = read_result(tmp_path / "s1" / "result.json")
    assert other.provenance.seed == 1
    assert other.metrics["loss"] != again.metrics["loss"]
    assert other.metrics["alpha"] != again.metrics["alpha"]


# --- what a user sees in a terminal ------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["run", "looped-gd", "--set", "lopps=3"], ["lopps", "loops"]),
        (["run", "looped-gd", "--set", "eigenvalues=[1,1,0,1,1]"], ["eigenvalues"]),
    ],
)
def test_subprocess_bad_input_has_no_traceback(args, words, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "icgd.cli", *args, "--out", str(tmp_path / "never")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_input_error(proc.returncode, proc.stderr, *words)
    assert proc.stdout == ""
    assert not (tmp_path / "never").exists()


# --- --dtype and --compile ---------------------------------------------------------------------

ONE_STEP_TINY = [
    "--set",
    "train.steps=20",
    "train.batch_size=256",
    "train.eval_batch_size=256",
    "train.eval_every=10",
    "train.checkpoint_every=10",
    "test_batch_size=1024",
]


def test_dtype_float64_reaches_the_run(tmp_path, capsys):
    folder = tmp_path / "run"
    code, _, err = cli(
        ["run", "one-step-gd", "--dtype", "float64", "--out", folder, *ONE_STEP_TINY], capsys
    )
    assert code in (0, 1) and "Traceback" not in err, err
    result = read_result(folder / "result.json")
    assert result.provenance.dtype == "float64" and result.config["dtype"] == "float64"
    assert "dtype: float64" in (folder / "config.yaml").read_text()


def test_compile_flag_reaches_the_trainer(tmp_path, capsys, monkeypatch):
    """`--compile` sets `compile: true` in the config, and `fit_model` hands it to `train`."""
    import icgd.experiments.common as common

    seen: list[bool] = []
    real_train = common.train

    def spy(*args, compile: bool = False, **kwargs):
        seen.append(compile)
        return real_train(*args, **kwargs)  # eager: the compiled path is tested (slow) below

    monkeypatch.setattr(common, "train", spy)
    folder = tmp_path / "run"
    code, _, err = cli(["run", "one-step-gd", "--compile", "--out", folder, *ONE_STEP_TINY], capsys)
    assert code in (0, 1) and "Traceback" not in err, err
    assert read_result(folder / "result.json").config["compile"] is True
    assert seen == [True]


@pytest.mark.slow  # torch.compile with a cold inductor cache: ~25 s on 2 cores
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit warnings on inductor import
def test_compile_gives_the_eager_numbers(tmp_path, capsys):
    results = {}
    for flags in ([], ["--compile"]):
        folder = tmp_path / ("compiled" if flags else "eager")
        code, _, err = cli(["run", "one-step-gd", *flags, "--out", folder, *ONE_STEP_TINY], capsys)
        assert code in (0, 1) and "Traceback" not in err, err
        results[bool(flags)] = read_result(folder / "result.json")
    eager, compiled = results[False], results[True]
    assert compiled.status == eager.status
    for key, value in eager.metrics.items():
        if isinstance(value, float):
            assert compiled.metrics[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    eager_log = records(tmp_path / "eager" / "metrics.jsonl")
    compiled_log = records(tmp_path / "compiled" / "metrics.jsonl")
    assert [r["step"] for r in compiled_log] == [r["step"] for r in eager_log]
    for a, b in zip(eager_log, compiled_log, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4), a["step"]
