"""`optimal-transport`: claims on synthetic metrics, the helpers, a tiny run (folder, figures,
determinism), bad input at the CLI, and the default run (slow)."""

from __future__ import annotations

import math

import pytest
import torch

from icgd.core.results import read_result
from icgd.experiments.optimal_transport import (
    EXPERIMENT,
    OptimalTransportConfig,
    OptimalTransportExperiment,
    entropic_objective,
    eval_depths,
    plan_of,
)
from icgd.runs.figures import draw_figures
from icgd.runs.runner import prepare_run_dir, resolve_config, run_experiment

TINY = list(EXPERIMENT.presets["smoke"])


def good_metrics(config: OptimalTransportConfig) -> dict:
    m = {"max_dual_difference": 1e-14}
    for n in config.ns:
        for e in config.epsilons:
            m[f"plan_error_drop_n{n}_eps{e:g}"] = 0.001
    for n in config.sort_ns:
        for e in config.sort_epsilons:
            m[f"sort_error_n{n}_eps{e:g}"] = [5.0, 1.0, e * 10]
            m[f"sort_floor_n{n}_eps{e:g}"] = e * 10
    return m


def test_claims_pass_on_good_metrics_and_fail_one_by_one():
    config = OptimalTransportConfig()
    exp = OptimalTransportExperiment()
    good = good_metrics(config)
    claims = exp.claims(config, good)
    assert [c.name for c in claims] == [
        "transformer_equals_dual_ascent",
        "plan_error_falls_with_depth",
        "sorting_improves_with_depth",
        "sorting_floor_shrinks_with_eps",
    ]
    assert all(c.passed for c in claims)
    n, e = config.sort_ns[0], min(config.sort_epsilons)
    broken = {
        "max_dual_difference": 1e-6,
        "plan_error_drop_n8_eps0.1": 0.5,
        f"sort_error_n{n}_eps{e:g}": [1.0, 2.0],
        f"sort_floor_n{n}_eps{e:g}": 100.0,
    }
    for key, value in broken.items():
        failed = [c.name for c in exp.claims(config, good | {key: value}) if not c.passed]
        assert len(failed) == 1, (key, failed)
    # a missing measurement fails, never passes vacuously
    assert not any(c.passed for c in exp.claims(config, {}))


def test_eval_depths_and_plan_helpers():
    assert eval_depths(200) == [1, 2, 4, 8, 16, 32, 64, 128, 200]
    assert eval_depths(8) == [1, 2, 4, 8]
    C = torch.rand(3, 5, 5, dtype=torch.float64)
    P = plan_of(torch.zeros(3, 5, dtype=torch.float64), C, 0.3)
    torch.testing.assert_close(P.sum(-1), torch.full((3, 5), 0.2, dtype=torch.float64))
    # J = <C, P> + ε Σ P (log P − 1), by hand for the independent plan
    Q = torch.full((1, 2, 2), 0.25, dtype=torch.float64)
    C2 = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]], dtype=torch.float64)
    expected = 0.5 + 0.1 * (4 * 0.25 * (math.log(0.25) - 1))
    assert entropic_objective(Q, C2, 0.1).item() == pytest.approx(expected, abs=1e-14)


def run(tmp_path, overrides=(), name="run"):
    config = resolve_config("optimal-transport", overrides=TINY + list(overrides))
    run_dir = prepare_run_dir("optimal-transport", config, tmp_path / name)
    return config, run_dir, run_experiment("optimal-transport", config, run_dir)


def test_tiny_run_writes_a_complete_folder_and_repeats_exactly(tmp_path):
    config, run_dir, result = run(tmp_path)
    assert read_result(run_dir / "result.json") == result
    m = result.metrics
    assert m["max_dual_difference"] < 1e-10  # the construction is dual ascent, exactly
    for n in config.ns:
        errs = m[f"plan_error_n{n}_eps0.5"]
        assert len(errs) == len(m["depths"]) and errs[-1] < errs[0]
        assert all(v >= 0 for v in m[f"marginal_error_n{n}_eps0.5"])
    for n in config.sort_ns:
        assert len(m[f"sort_error_n{n}_eps0.1"]) == len(m["sort_depths"])
        assert all(0 <= v <= 1 for v in m[f"sort_argmax_n{n}_eps0.1"])
    assert result.claims[0].passed
    figures = {p.name for p in draw_figures(run_dir)}
    assert {"error_vs_depth.png", "plans_n4_eps0.5.png", "sorting_error.png"} <= figures
    _, _, again = run(tmp_path, name="again")
    assert again.metrics == result.metrics


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("dtype=float32", "dtype"),
        ("ns=[]", "ns"),
        ("epsilons=[0.1, 0.1]", "epsilons"),
        ("sort_epsilons=[0.1]", "sort_epsilons"),
        ("kappa=3", "kappa"),
        ("depth=0", "depth"),
    ],
)
def test_bad_config_is_one_line_exit_2(assert_bad_config, override, field):
    assert_bad_config("optimal-transport", override, field)


@pytest.mark.slow
def test_default_run_passes_every_claim(tmp_path):
    config = resolve_config("optimal-transport", overrides=[])
    run_dir = prepare_run_dir("optimal-transport", config, tmp_path / "default")
    result = run_experiment("optimal-transport", config, run_dir)
    assert result.status == "passed", [c for c in result.claims if not c.passed]


def test_memory_estimate_grows_with_the_sizes():
    """Positive by default; grows with the problems per (n, ε), the point-cloud size and the
    sorting sizes."""
    config = OptimalTransportConfig()
    base = EXPERIMENT.memory(config)
    assert base.total > 0 and {"ns", "batch", "sort_ns", "sort_depth"} <= set(base.fields)
    for update in ({"batch": 64}, {"ns": (8, 32, 512)}, {"sort_ns": (8, 32, 128, 2048)}):
        bigger = EXPERIMENT.memory(config.model_copy(update=update))
        assert bigger.total >= 2 * base.total, update
