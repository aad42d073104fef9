"""The example plugin (`examples/plugin/`) installed for real, in isolation, and driven through the
`icgd` command line: its four entry points are found, its experiment runs, its run folder is read
back (show, report, sweep, `icgd.load_run(...).model`) like a built-in one.

The plugin is built and installed once per module with `pip install --no-deps
--no-build-isolation --no-index --target <tmp>` from a copy of its folder (so the build leaves no
`build/` or `*.egg-info` in the repository, and setuptools comes from this environment: no
network). The install is non-editable, so `<tmp>` holds a `dist-info` with `entry_points.txt`;
every command then runs in a subprocess with `PYTHONPATH=<tmp>`, so this test process's registries
never see the plugin.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from icgd.core.results import make_claim

PLUGIN = Path(__file__).resolve().parents[2] / "examples" / "plugin"
SCRIPT = Path(sys.executable).parent / "icgd"
ICGD = [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-m", "icgd.cli"]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The folder the plugin is installed into (`--target`)."""
    root = tmp_path_factory.mktemp("plugin")
    source = root / "source"
    shutil.copytree(
        PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    target = root / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    pip += ["--no-deps", "--no-build-isolation", "--no-index", "--target", str(target)]
    done = subprocess.run([*pip, str(source)], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, (
        "pip could not build the plugin offline (setuptools must be importable in this "
        f"environment, since the build runs with --no-build-isolation):\n{done.stderr[-3000:]}"
    )
    points = target / "icgd_toy_plugin-0.1.0.dist-info" / "entry_points.txt"
    assert points.is_file(), f"no entry_points.txt in {sorted(p.name for p in target.iterdir())}"
    return target


def icgd(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`icgd ARGS` in a subprocess that sees the plugin (wide terminal: no wrapped lines)."""
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "250"}
    return subprocess.run(
        [*ICGD, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=180
    )


def line_of(text: str, name: str) -> str:
    """The line of `icgd list` output that lists `name`."""
    lines = [line for line in text.splitlines() if line.split()[:1] == [name]]
    assert len(lines) == 1, text
    return lines[0]


@pytest.fixture(scope="module")
def smoke_run(site, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """`icgd run toy-mean --preset smoke --out D`, once for the module."""
    cwd = tmp_path_factory.mktemp("smoke")
    done = icgd(site, "run", "toy-mean", "--preset", "smoke", "--out", "D", cwd=cwd)
    return cwd / "D", done


def test_list_marks_the_experiment_as_a_plugin(site, tmp_path):
    done = icgd(site, "list", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "[plugin: icgd-toy-plugin]" in line_of(done.stdout, "toy-mean")
    assert "[plugin" not in line_of(done.stdout, "looped-gd")  # the built-ins are still there


@pytest.mark.parametrize(
    "kind, name, obj",
    [
        ("tasks", "toy-mean", "icgd_toy.task.MeanTask"),
        ("models", "toy-shrinkage", "icgd_toy.model.ShrinkageMean"),
        ("algorithms", "toy-posterior-mean", "icgd_toy.baseline.posterior_mean"),
    ],
)
def test_list_shows_the_plugins_task_model_and_baseline(site, tmp_path, kind, name, obj):
    done = icgd(site, "list", kind, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    line = line_of(done.stdout, name)
    assert obj in line and "[plugin: icgd-toy-plugin]" in line


def test_smoke_run_writes_a_result_whose_claims_recompute(smoke_run):
    folder, done = smoke_run
    assert done.returncode in (0, 1), done.stderr
    result = json.loads((folder / "result.json").read_text())
    assert result["experiment"] == "toy-mean" and result["status"] in ("passed", "failed")
    assert result["config"]["train"]["steps"] == 20  # the smoke preset was applied
    assert done.returncode == (0 if result["status"] == "passed" else 1)
    claims = {c["name"]: c for c in result["claims"]}
    assert set(claims) == {"weight_is_bayes", "loss_is_bayes"}
    for claim in claims.values():
        fields = ("measured", "expected", "tolerance", "comparison")
        again = make_claim(claim["name"], claim["statement"], *(claim[k] for k in fields))
        assert again.passed == claim["passed"], claim
    # The expected weight is the formula's, from the saved config: n τ²/(n τ² + σ²) = 2/3.
    config = result["config"]
    n, tau2, sigma2 = config["n"], config["prior_std"] ** 2, config["noise_std"] ** 2
    assert claims["weight_is_bayes"]["expected"] == pytest.approx(n * tau2 / (n * tau2 + sigma2))
    assert (folder / "checkpoint.safetensors").is_file()
    assert (folder / "figures" / "weight_and_loss.png").is_file()


def test_show_prints_the_verdict_table(site, smoke_run, tmp_path):
    folder, _ = smoke_run
    done = icgd(site, "show", str(folder), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "toy-mean" in done.stdout
    assert "learned w vs the Bayes weight" in done.stdout and "weight_bayes" in done.stdout


def test_report_writes_the_html(site, smoke_run, tmp_path):
    folder, _ = smoke_run
    done = icgd(site, "report", str(folder), "--out", "r.html", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "toy-mean" in page and "learned w vs the Bayes weight" in page


def test_load_run_rebuilds_the_plugins_model(site, smoke_run, tmp_path):
    folder, _ = smoke_run
    code = (
        "import sys, icgd; run = icgd.load_run(sys.argv[1]); model = run.model; "
        "print(type(model).__module__, type(model).__qualname__, float(model.w), "
        "run.metrics['weight'])"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-c", code, str(folder)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    module, cls, weight, measured = done.stdout.split()
    assert (module, cls) == ("icgd_toy.model", "ShrinkageMean")
    assert float(weight) == pytest.approx(float(measured), abs=1e-6)


def test_an_unknown_field_is_one_line_naming_it(site, tmp_path):
    done = icgd(site, "run", "toy-mean", "--set", "no_such_field=1", cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no_such_field" in lines[0], done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "runs").exists()


def test_sweep_runs_one_folder_per_point(site, tmp_path):
    args = ["sweep", "toy-mean", "--preset", "smoke", "--grid", "n=4,16", "--out", "S"]
    done = icgd(site, *args, cwd=tmp_path)
    assert done.returncode in (0, 1), done.stderr
    root = tmp_path / "S"
    assert (root / "sweep.json").is_file() and (root / "sweep.csv").is_file()
    points = sorted(p for p in root.iterdir() if (p / "result.json").is_file())
    configs = [json.loads((p / "result.json").read_text())["config"] for p in points]
    assert [c["n"] for c in configs] == [4, 16]


def test_default_run_learns_the_bayes_weight(site, tmp_path):
    """The experiment's own claim at its defaults: w = n τ²/(n τ² + σ²) = 8/(8 + 4) within 0.01."""
    done = icgd(site, "run", "toy-mean", "--out", "D", cwd=tmp_path)
    result = json.loads((tmp_path / "D" / "result.json").read_text())
    assert done.returncode == 0 and result["status"] == "passed", done.stdout + done.stderr
    assert abs(result["metrics"]["weight"] - 2 / 3) <= 0.01, result["metrics"]
    # Shrinking beats the plain sample mean, whose risk is σ²/n = 0.5 (the Bayes risk is 1/3).
    assert result["metrics"]["loss"] < result["metrics"]["loss_sample_mean"]


def test_the_contract_suites_hold_for_the_plugin(site, tmp_path):
    """tests/test_contracts.py and tests/test_contracts_components.py, parametrised over the
    registries, include the plugin's experiment, task, model and baseline when it is installed:
    run their cases for the plugin's names in a process that sees the plugin."""
    env = {**os.environ, "PYTHONPATH": str(site)}
    tests = Path(__file__).resolve().parents[1]
    args = [sys.executable, "-m", "pytest", "-o", "addopts=", "-q", "-p", "no:cacheprovider"]
    args += [str(tests / "test_contracts.py"), str(tests / "test_contracts_components.py")]
    done = subprocess.run(
        [*args, "-k", "toy"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:]
    ran = done.stdout.strip().splitlines()[-1]
    assert "passed" in ran and "failed" not in ran and "skipped" not in ran, ran
    for name in ("toy-mean", "toy-shrinkage", "toy-posterior-mean"):  # every kind was checked
        listed = subprocess.run(
            [*args, "-k", name, "--co"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=300,
        )
        assert name in listed.stdout, listed.stdout[-1000:]
