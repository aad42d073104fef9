"""`decision-lists`: claims on synthetic metrics, the GD machinery on a tiny exact population,
the sampled preset, tiny runs (folder, figures, determinism), bad input at the CLI, and the
default run (slow)."""

from __future__ import annotations

import math

import pytest
import torch

from icgd.core.results import read_result
from icgd.core.rng import make_generator
from icgd.experiments.decision_lists import (
    EXPERIMENT,
    DecisionListsExperiment,
    DecisionListsExperimentConfig,
)
from icgd.experiments.decision_lists.fits import Curvature, Population, run_adam, run_gd
from icgd.models import DecisionListAttention, DecisionListAttentionConfig
from icgd.runs.figures import draw_figures
from icgd.runs.runner import prepare_run_dir, resolve_config, run_experiment
from icgd.tasks import DecisionLists

TINY = list(EXPERIMENT.presets["smoke"])

GOOD = {
    "perfect_a": 1.0,
    "time_to_perfect_a": 12.0,
    "time_bound": 180.0,
    "steps_to_perfect_b": 500,
    "time_to_perfect_b": 5.0,
    "window_b": 20000,
    "cos_V_P_rise": 0.3,
    "attention_on_determining": 0.8,
}
BAD = {
    "perfect_a": 0.99,
    "time_to_perfect_b": math.nan,
    "cos_V_P_rise": -0.01,
    "attention_on_determining": 0.4,
}


def test_claims_pass_on_good_metrics_and_fail_one_by_one():
    config = DecisionListsExperimentConfig()
    exp = DecisionListsExperiment()
    claims = exp.claims(config, GOOD)
    assert [c.name for c in claims] == [
        "mode_a_perfect",
        "mode_b_perfect_within_window",
        "uniform_attention_aligns_V",
        "attention_on_determining_token",
    ]
    assert all(c.passed for c in claims)
    for key, value in BAD.items():
        failed = [c.name for c in exp.claims(config, GOOD | {key: value}) if not c.passed]
        assert len(failed) == 1, (key, failed)
    late = exp.claims(config, GOOD | {"time_to_perfect_b": 180.5})
    assert not late[1].passed
    # Adam has no gradient-flow time: its first perfect step is held against GD's window.
    adam = DecisionListsExperimentConfig(optimizer="adam")
    assert exp.claims(adam, GOOD | {"time_to_perfect_b": math.nan})[1].passed
    assert not exp.claims(adam, GOOD | {"steps_to_perfect_b": 20001})[1].passed


def tiny_mode_a() -> tuple[DecisionLists, Population, DecisionListAttention, dict]:
    """Mode (a) on the exact population of L = 4, n = 3, M = 2 in float64: the task, the
    population, the model with V = 20·P fixed, and W = 0."""
    config = DecisionListsExperimentConfig(L=4, n=3, M=2)
    task = DecisionLists(config.task_config(), dtype=torch.float64)
    model = DecisionListAttention(DecisionListAttentionConfig(L=4), dtype=torch.float64)
    model.requires_grad_(False).set_weights(V=20.0 * task.P)
    return task, Population(task), model, {"W": torch.zeros(4, 4, dtype=torch.float64)}


def test_gd_on_w_only_learns_a_tiny_exact_population():
    """Mode (a) by hand: V = cP fixed, GD on W from 0 reaches perfect classification, and the
    recorded loss decreases."""
    task, pop, model, W0 = tiny_mode_a()
    assert pop.weights.sum().item() == pytest.approx(1.0)
    out = run_gd(model, W0, pop, 0.05, 600, 100)
    losses = out["curve"]["loss"]
    assert losses[-1] < losses[0]
    assert out["first_perfect"] is not None and out["curve"]["perfect"][-1] == 1.0


@pytest.mark.parametrize("bad_step", [None, 0, 4, 12])
def test_reading_the_device_state_late_changes_nothing(bad_step, monkeypatch):
    """Off CPU, GD and Adam read the loss check and the first perfect step only at log steps:
    the curve, the first perfect step and the weights equal those of reading every step (the CPU
    rule), also when the loss of step `bad_step` is NaN (the curve stops there, with the weights
    of that step). Forced here on CPU."""
    import icgd.experiments.decision_lists.fits as fits

    task, pop, model, W0 = tiny_mode_a()
    loss = fits.sequence_loss

    def both(every_step: bool) -> list[dict]:
        monkeypatch.setattr(fits, "checks_every_step", lambda d: every_step)
        outs = []
        for run in ("gd", "adam"):
            calls = [0]

            def poisoned(*args, calls=calls, **kwargs):
                calls[0] += 1
                value = loss(*args, **kwargs)
                return value * float("nan") if calls[0] - 1 == bad_step else value

            monkeypatch.setattr(fits, "sequence_loss", poisoned)
            if run == "gd":
                track = lambda p: float(p["W"].sum())  # noqa: E731
                outs.append(run_gd(model, W0, pop, 0.05, 40, 7, track=track))
            else:
                outs.append(run_adam(model, W0, task, pop, 0.1, 40, 64, 7, make_generator(3)))
        return outs

    for late, now in zip(both(False), both(True), strict=True):
        steps = now["curve"]["step"]
        assert late["curve"]["step"] == steps
        end = 40 if bad_step is None else bad_step
        assert steps == [t for t in range(0, end, 7)] + [end]  # every 7 steps, then the last
        for key in ("loss", "perfect", "time", "track"):
            assert late["curve"][key] == pytest.approx(now["curve"][key], rel=0, nan_ok=True)
        assert late["first_perfect"] == now["first_perfect"]
        assert late["time_to_perfect"] == pytest.approx(now["time_to_perfect"], nan_ok=True)
        torch.testing.assert_close(late["params"]["W"], now["params"]["W"], rtol=0, atol=0)


def test_local_step_rule_follows_the_curvature_and_sums_the_time():
    """The local rule re-measures λ_max every `every` steps and steps with 1/λ_max(θ_t): the
    gradient-flow time is the sum of the steps actually taken, the steps grow as the loss
    flattens (λ_max falls from the steep start), and the largest η·λ_max met is reported."""
    task, pop, model, W0 = tiny_mode_a()
    curvature = Curvature(model, pop, iters=200, seed=0, tag="test")
    lam0 = curvature(W0)
    out = run_gd(model, W0, pop, 1 / lam0, 200, 10, curvature=curvature, every=50)
    time, steps = out["curve"]["time"], out["curve"]["step"]
    assert time[0] == 0.0 and steps[-1] == 200
    assert out["eta_final"] > 1 / lam0  # the landscape flattened, so the step grew
    assert time[-1] > 200 / lam0  # more gradient-flow time than the fixed step gives
    assert math.isfinite(out["eta_lambda"]) and out["eta_lambda"] > 0
    fixed = run_gd(model, W0, pop, 1 / lam0, 200, 10)
    assert math.isnan(fixed["eta_lambda"])
    assert fixed["curve"]["time"][-1] == pytest.approx(200 / lam0, rel=1e-12)
    if fixed["first_perfect"] is not None:
        assert fixed["time_to_perfect"] == pytest.approx(fixed["first_perfect"] / lam0)


def test_sampled_preset_sizes_and_overrides():
    sampled = resolve_config("decision-lists", overrides=["preset=sampled"])
    assert (sampled.L, sampled.n, sampled.M, sampled.population) == (16, 6, 3, 5000)
    assert sampled.eta_rule == "local" and sampled.steps_a == sampled.steps_b == 4000
    again = resolve_config("decision-lists", overrides=["preset=sampled", "n=8", "L=32"])
    assert (again.n, again.L, again.M) == (8, 32, 3)


def run(tmp_path, overrides=(), name="run"):
    config = resolve_config("decision-lists", overrides=TINY + list(overrides))
    run_dir = prepare_run_dir("decision-lists", config, tmp_path / name)
    return config, run_dir, run_experiment("decision-lists", config, run_dir)


def test_tiny_run_writes_a_complete_folder_and_repeats_exactly(tmp_path):
    config, run_dir, result = run(tmp_path)
    assert result.status in ("passed", "failed")
    assert read_result(run_dir / "result.json") == result
    m = result.metrics
    assert m["n_sequences"] == 4**3
    for key in ("delta", "gamma", "c_required", "time_bound", "eta_a", "eta_b", "lambda_max_a"):
        assert math.isfinite(m[key]) and m[key] > 0, key
    assert m["c"] == m["c_required"]  # c defaults to the theory's
    assert m["perfect_heldout_a"] == m["perfect_a"]  # exact: the test sequences are the population
    assert len(m["curve_a_step"]) == len(m["curve_a_loss"]) == len(m["curve_a_perfect"])
    assert len(m["v_cos"]) == config.steps_v + 1
    assert 0 <= m["attention_on_determining"] <= 1
    assert m["mode_c_success_rate"] in (0.0, 1.0)
    assert m["mode_c_factored_success_rate"] in (0.0, 1.0)
    assert len(m["curve_mode_c0_perfect"]) == config.steps_c // config.log_every + 1
    assert len(result.claims) == 4
    figures = {p.name for p in draw_figures(run_dir)}
    assert {"training_curves.png", "alignment.png", "weights.png", "attention.png"} <= figures
    _, _, again = run(tmp_path, name="again")
    assert again.metrics == result.metrics


def test_tiny_sampled_run_has_standard_errors(tmp_path):
    _, _, result = run(
        tmp_path, ["preset=sampled", "L=6", "n=3", "M=2", "population=300"], name="sampled"
    )
    m = result.metrics
    assert m["n_sequences"] == 300
    assert m["delta_se"] > 0 and m["gamma_se"] > 0
    # claims read the fixed sample; the held-out sample's perfect mass is reported beside it
    for tag in ("a", "b"):
        assert 0 <= m[f"perfect_heldout_{tag}"] <= 1 and 0 <= m[f"perfect_{tag}"] <= 1


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("M=9", "M"),
        ("L=1", "L"),
        ("n=0", "n"),
        ("preset=huge", "preset"),
        ("eta_factor=2", "eta_factor"),
        ("c=-1", "c"),
        ("tolerances.attention_mass=2", "attention_mass"),
    ],
)
def test_bad_config_is_one_line_exit_2(assert_bad_config, override, field):
    assert_bad_config("decision-lists", override, field)


def test_subset_sampler_needs_n_at_most_l():
    with pytest.raises(Exception, match="n: must be <= L"):
        resolve_config("decision-lists", overrides=["sequence_sampler=subset", "n=9"])


@pytest.mark.slow
def test_default_run_passes_every_claim(tmp_path):
    config = resolve_config("decision-lists", overrides=[])
    run_dir = prepare_run_dir("decision-lists", config, tmp_path / "default")
    result = run_experiment("decision-lists", config, run_dir)
    assert result.status == "passed", [c for c in result.claims if not c.passed]


def test_tiny_run_with_adam_on_fresh_samples(tmp_path):
    _, _, result = run(tmp_path, ["optimizer=adam", "lr_adam=0.05", "batch_c=16"], name="adam")
    m = result.metrics
    assert math.isnan(m["time_to_perfect_a"])  # gradient-flow time is GD's only
    assert len(m["curve_a_loss"]) == len(m["curve_a_perfect"]) and m["curve_a_loss"][0] > 0
    assert 0 <= m["perfect_b"] <= 1


def test_weighted_perfect_is_exactly_one_when_every_sequence_is_perfect():
    from icgd.experiments.decision_lists.fits import weighted_perfect

    labels = torch.zeros(5000, 2, dtype=torch.int64)
    Z = torch.zeros(5000, 3, 2)
    Z[:, 0] = 1.0  # every position predicts class 0, its label
    weights = torch.full((5000,), 1 / 5000, dtype=torch.float64)
    assert weights.sum().item() != 1.0  # the rounding this guards against
    assert weighted_perfect(Z, labels, weights) == 1.0
    Z[7, 1, 0] = 5.0  # one sequence wrong
    assert weighted_perfect(Z, labels, weights) == pytest.approx(1 - 1 / 5000)


def test_memory_estimate_grows_with_the_sizes():
    """The estimate is positive by default and grows with the number of sequences (n: L^n of
    them in the exact preset; `population` in the sampled one) and with L."""
    config = DecisionListsExperimentConfig()
    base = EXPERIMENT.memory(config)
    assert base.total > 0 and {"L", "n", "population"} <= set(base.fields)
    assert EXPERIMENT.memory(config.model_copy(update={"n": 5})).total >= 2 * base.total
    assert EXPERIMENT.memory(config.model_copy(update={"L": 16})).total >= 2 * base.total
    sampled = resolve_config("decision-lists", overrides=["preset=sampled"])
    bigger = resolve_config("decision-lists", overrides=["preset=sampled", "population=40000"])
    assert EXPERIMENT.memory(bigger).total >= 2 * EXPERIMENT.memory(sampled).total
