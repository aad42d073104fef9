"""Every script in `examples/` runs at its tiny size and returns what it claims to compute.

The scripts are loaded from their files (examples/ is not a package) and their `main(tiny=True)`
is called in a temporary working directory, so nothing is written into the repository.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str):
    """Import `examples/<name>.py` as a module named `icgd_example_<name>`."""
    spec = importlib.util.spec_from_file_location(f"icgd_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def test_every_example_is_tested():
    tested = {
        "construction_vs_algorithm",
        "train_looped_read_preconditioner",
        "sweep_from_python",
        "seed_ensemble_from_python",
    }
    assert {p.stem for p in EXAMPLES.glob("*.py")} == tested


def test_construction_vs_algorithm():
    diffs = load("construction_vs_algorithm").main(tiny=True)
    assert set(diffs) == {"gd", "td0"}
    for name, diff in diffs.items():
        assert diff < 1e-10, f"{name}: construction and algorithm differ by {diff:.2e}"


def test_train_looped_read_preconditioner():
    out = load("train_looped_read_preconditioner").main(tiny=True)
    assert all(math.isfinite(v) for v in out.values()), out
    # a*(3, 20, 5) ≈ 0.716 (README); the tiny run uses 20k Wishart draws, SE ≈ 0.002.
    assert abs(out["a_star"] - 0.716) < 0.02, out["a_star"]
    assert 0.0 <= out["dist_whitened"] <= 1.0
    # 30 steps from init_std 1e-4 move α off zero toward a*, without overshooting it.
    assert 0.0 < out["alpha"] < out["a_star"], out


def test_sweep_from_python(tmp_path):
    rows = load("sweep_from_python").main(tiny=True, out=tmp_path / "sweep")
    assert [(r["n"], r["train.optimizer.lr"]) for r in rows] == [
        (10, 0.05),
        (10, 0.1),
        (20, 0.05),
        (20, 0.1),
    ]
    assert all(r["status"] in ("passed", "failed") for r in rows), rows
    assert all(math.isfinite(r["metrics.loss"]) for r in rows)
    assert (tmp_path / "sweep" / "sweep.csv").is_file()
    assert (tmp_path / "sweep" / "sweep.json").is_file()


def test_seed_ensemble_from_python(tmp_path):
    out = load("seed_ensemble_from_python").main(tiny=True, out=tmp_path / "ens", seeds=(0, 1))
    assert out["status"] in ("passed", "failed")
    assert {"leak_vanishes", "gamma_is_optimal", "loss_is_optimal", "step_is_optimal"} <= set(
        out["pass_rate"]
    )
    assert all(0 <= rate <= 1 for rate in out["pass_rate"].values())
    assert all(rate in (0.0, 0.5, 1.0) for rate in out["pass_rate"].values())
    assert math.isfinite(out["loss"][0]) and out["loss"][1] >= 0
    assert (tmp_path / "ens" / "seed0" / "result.json").is_file()
    assert (tmp_path / "ens" / "seed1" / "result.json").is_file()
